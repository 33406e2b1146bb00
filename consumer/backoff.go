package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// retryPolicy is how the engine retries a call that failed: exponential
// delays from initial up to max, each randomised by ±50% so that workers
// that failed together do not retry together. Every retry loop of the
// engine is [retry] with one of the policies below.
type retryPolicy struct {
	initial, max time.Duration
}

var (
	// storeRetry is for the idempotency store and the rate limiter: claims,
	// completions, reservations. The store is fleet's own, close and fast;
	// a handler waits on it, so it is asked again soon.
	storeRetry = retryPolicy{initial: 50 * time.Millisecond, max: 2 * time.Second}
	// kafkaRetry is for the cluster: fetches, dead-letter and retry-topic
	// writes, reading and creating topics at start-up.
	kafkaRetry = retryPolicy{initial: 100 * time.Millisecond, max: 5 * time.Second}
)

// backOff is the policy as a fresh schedule.
func (p retryPolicy) backOff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     p.initial,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         p.max,
	}
}

// delay is the policy's wait before retry number n (0-based) of something
// whose count is kept elsewhere (an event's attempts live in its record).
func (p retryPolicy) delay(n int) time.Duration {
	interval := p.initial << min(n, 30)
	if interval <= 0 || interval > p.max {
		interval = p.max
	}
	b := retryPolicy{initial: interval, max: p.max}.backOff()
	return b.NextBackOff()
}

// retry calls op until it succeeds, op returns an error wrapped with
// backoff.Permanent (retry returns the error inside), or ctx ends (retry
// returns ctx's cause). Before each wait, failed (if not nil) gets the
// error: to log it, count it, mark a component unavailable.
//
// The waits are the policy's backoff.ExponentialBackOff; the loop is not
// backoff.Retry, whose options keep op and failed on the heap: fetch calls
// retry once per message, and a first call that succeeds must cost no more
// than the call itself.
func retry[T any](ctx context.Context, p retryPolicy, op func() (T, error), failed func(error)) (T, error) {
	v, err := op()
	if err == nil {
		return v, nil
	}
	return retryFailed(ctx, p, op, failed, v, err)
}

// retryFailed goes on where retry's first call failed with err.
func retryFailed[T any](ctx context.Context, p retryPolicy, op func() (T, error), failed func(error), v T, err error) (T, error) {
	b := p.backOff()
	for {
		if perm := (*backoff.PermanentError)(nil); errors.As(err, &perm) {
			return v, perm.Err
		}
		if ctx.Err() != nil {
			return v, context.Cause(ctx)
		}
		if failed != nil {
			failed(err)
		}
		if !sleep(ctx, b.NextBackOff()) {
			return v, context.Cause(ctx)
		}
		if v, err = op(); err == nil {
			return v, nil
		}
	}
}

// sleep waits d or until ctx is done, and reports whether it waited fully.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
