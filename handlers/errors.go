package handlers

import (
	"errors"
	"fmt"
)

// ErrUnknownType is returned by a [Router] for an event type no handler is
// registered for. The engine dead-letters such events without retrying.
var ErrUnknownType = errors.New("unknown event type")

// PermanentError marks a failure that no retry can fix: bad data, a broken
// invariant. The engine sends the event to the dead-letter topic at once.
type PermanentError struct {
	Err error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the engine does not retry it. Permanent(nil)
// returns nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Permanentf is Permanent(fmt.Errorf(format, args...)).
func Permanentf(format string, args ...any) error {
	return Permanent(fmt.Errorf(format, args...))
}

// Kind classifies a handler error for the engine and for dead-letter headers.
type Kind string

const (
	KindRetryable   Kind = "retryable"
	KindPermanent   Kind = "permanent"
	KindUnknownType Kind = "unknown_type"
)

// KindOf tells how the engine treats err: unknown types and permanent errors
// are not retried, anything else is.
func KindOf(err error) Kind {
	var p *PermanentError
	switch {
	case errors.Is(err, ErrUnknownType):
		return KindUnknownType
	case errors.As(err, &p):
		return KindPermanent
	default:
		return KindRetryable
	}
}
