// Command weft compiles a mesh written in CUE into Envoy configuration.
// It holds flags only: the logic lives in schema, compiler and the packages
// below them, so the CLI, CI and the reconciler run the same code.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		var ex exitError
		if errors.As(err, &ex) {
			os.Exit(ex.code)
		}
		fmt.Fprintln(os.Stderr, "weft:", err)
		os.Exit(1)
	}
}

// exitError ends the command with a code after its output is printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }
