// Package tooltest finds the real external tools (envoy, cue, opa) that
// tests run. `make tools` installs them into <repo>/.tools/bin; WEFT_TOOLS_BIN
// overrides that folder. A test that needs a missing tool fails with the
// command that installs it: weft's tests never silently skip the real thing.
// Weft builds the weft binary itself once per test binary, for tests that
// run the command as a user or a pod does.
package tooltest
