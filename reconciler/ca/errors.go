package ca

import (
	"fmt"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

// ForbiddenError: the CSR asks for an identity its credential does not own.
type ForbiddenError struct {
	Owner     cav1.Identity // what the credential is
	Requested string        // what the CSR asks for
	Reason    string        // optional detail
}

func (e *ForbiddenError) Error() string {
	msg := fmt.Sprintf("credential of %s may not request a certificate for %s", e.Owner, e.Requested)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// BadRequestError: the CSR is malformed, badly signed or uses a weak key.
type BadRequestError struct{ Msg string }

func (e *BadRequestError) Error() string { return e.Msg }

func badRequest(format string, args ...any) error {
	return &BadRequestError{Msg: fmt.Sprintf(format, args...)}
}
