package effects

import (
	"errors"
	"fmt"
)

var (
	// ErrUnbound is an effect on a key that a handler may not write: see
	// CheckBound.
	ErrUnbound = errors.New("effect on a key the handler may not write")
	// ErrRefused is an effect that Redis refuses: see Space.Apply.
	ErrRefused = errors.New("effect that Redis refuses")
)

// Error is one effect of a run that cannot apply; nothing of the run was
// applied. It wraps ErrUnbound or ErrRefused.
type Error struct {
	// Index is the effect's place in its run, from 0.
	Index int
	// Reason names the effect and why, as in "INCRBY {acct}n: value is not
	// an integer".
	Reason string
	// Err is ErrUnbound or ErrRefused.
	Err error
}

func (e *Error) Error() string { return fmt.Sprintf("effect %d: %s", e.Index, e.Reason) }

// Unwrap returns ErrUnbound or ErrRefused.
func (e *Error) Unwrap() error { return e.Err }
