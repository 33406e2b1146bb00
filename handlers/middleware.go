package handlers

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"
)

// Middleware wraps a handler with cross-cutting behaviour.
type Middleware func(Handler) Handler

// Chain applies middleware so that the first one is the outermost:
// Chain(h, a, b) is a(b(h)).
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}

// PanicError is what [Recover] returns for a handler that panicked. It is
// retryable: a panic is a bug, and the attempt budget bounds the retries.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }

// Recover turns a panic in the wrapped handler into a [*PanicError].
func Recover() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, ev Event, tx *Tx) (err error) {
			defer func() {
				if v := recover(); v != nil {
					err = &PanicError{Value: v, Stack: debug.Stack()}
				}
			}()
			return next.Handle(ctx, ev, tx)
		})
	}
}

// Timeout bounds one attempt of the wrapped handler: its context is cancelled
// after d. A d of zero or less means no bound.
func Timeout(d time.Duration) Middleware {
	return func(next Handler) Handler {
		if d <= 0 {
			return next
		}
		return HandlerFunc(func(ctx context.Context, ev Event, tx *Tx) error {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next.Handle(ctx, ev, tx)
		})
	}
}
