package main

import (
	"errors"
	"fmt"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/schema"
)

// compileEnv compiles an environment that loaded, with its static
// endpoints. The compiler's acceptance gate refuses what Envoy would
// reject; its findings join the environment's definition errors, so that
// weft vet and weft build report them like the loader's, with file:line.
// Other compile failures (ports that collide) are the environment's Err.
func compileEnv(e *policies.EnvReport) *compiler.Result {
	if e.Model == nil || len(e.Schema) > 0 || e.Err != nil {
		return nil
	}
	res, err := compiler.Compile(e.Model, nil, compiler.Options{})
	var es schema.Errors
	switch {
	case errors.As(err, &es):
		e.Schema = append(e.Schema, es...)
	case err != nil:
		e.Err = fmt.Errorf("compile: %w", err)
	}
	return res
}

// gateReport compiles every environment of a vet report (compileEnv).
func gateReport(rep *policies.Report) {
	for i := range rep.Envs {
		compileEnv(&rep.Envs[i])
	}
}
