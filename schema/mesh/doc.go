// Package mesh holds the typed Go model of a weft mesh definition: what the
// loader in package schema decodes a CUE value into, and what the policy
// engine and the compiler consume.
//
// The model is plain data. It carries, for every field, the CUE source
// position it came from (see Positions), so that later stages can report
// findings at file:line without going back to CUE. It must not import any
// other weft package.
package mesh
