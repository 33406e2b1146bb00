package handlers

import (
	"errors"
	"fmt"
	"time"
)

// ErrUnknownType is returned by a [Router] for an event type no handler is
// registered for. The engine dead-letters such events without retrying.
var ErrUnknownType = errors.New("unknown event type")

// ErrInvalidEffect marks a handler's effects that cannot be applied as
// given: an effect of a kind fleet does not have, or without the fields its
// kind needs (an HTTP handler's response). The engine dead-letters the
// event as invalid_effect, as it does when Redis refuses an effect.
var ErrInvalidEffect = errors.New("invalid effect")

// RetryAfterError is a retryable failure that asks to be retried no sooner
// than After (an HTTP handler's Retry-After).
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err so that the engine retries it no sooner than after
// d. RetryAfter(nil, d) returns nil.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &RetryAfterError{Err: err, After: d}
}

// RetryDelay is the delay err asks for with [RetryAfter]; 0 when none.
func RetryDelay(err error) time.Duration {
	var r *RetryAfterError
	if errors.As(err, &r) {
		return max(r.After, 0)
	}
	return 0
}

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
	// KindInvalidEffect: effects that cannot be applied ([ErrInvalidEffect]).
	KindInvalidEffect Kind = "invalid_effect"
)

// KindOf tells how the engine treats err: unknown types, invalid effects
// and permanent errors are not retried, anything else is.
func KindOf(err error) Kind {
	var p *PermanentError
	switch {
	case errors.Is(err, ErrUnknownType):
		return KindUnknownType
	case errors.Is(err, ErrInvalidEffect):
		return KindInvalidEffect
	case errors.As(err, &p):
		return KindPermanent
	default:
		return KindRetryable
	}
}
