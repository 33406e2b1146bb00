package consumer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
)

func TestRetryPolicyDelay(t *testing.T) {
	p := retryPolicy{initial: 100 * time.Millisecond, max: 2 * time.Second}
	tests := []struct {
		n        int
		interval time.Duration
	}{
		{0, 100 * time.Millisecond},
		{1, 200 * time.Millisecond},
		{4, 1600 * time.Millisecond},
		{5, 2 * time.Second},
		{62, 2 * time.Second}, // no overflow
		{1 << 20, 2 * time.Second},
	}
	for _, tt := range tests {
		lo, hi := tt.interval/2, tt.interval*3/2+1
		seen := map[time.Duration]bool{}
		for range 50 {
			d := p.delay(tt.n)
			if d < lo || d > hi {
				t.Fatalf("delay(%d) = %v, want within [%v, %v]", tt.n, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("delay(%d) has no jitter: always %v", tt.n, p.delay(tt.n))
		}
	}
}

var fast = retryPolicy{initial: time.Millisecond, max: 4 * time.Millisecond}

func TestRetryUntilSuccess(t *testing.T) {
	calls, failures := 0, 0
	v, err := retry(context.Background(), fast, func() (int, error) {
		calls++
		if calls < 4 {
			return 0, errors.New("not yet")
		}
		return calls, nil
	}, func(error) { failures++ })
	if err != nil || v != 4 {
		t.Fatalf("retry = %d, %v; want 4, nil", v, err)
	}
	if failures != 3 {
		t.Errorf("failed told %d times, want once per failure (3)", failures)
	}
}

func TestRetryFirstSuccessTellsNothing(t *testing.T) {
	v, err := retry(context.Background(), fast, func() (string, error) { return "ok", nil },
		func(error) { t.Error("failed told of a success") })
	if v != "ok" || err != nil {
		t.Fatalf("retry = %q, %v", v, err)
	}
}

func TestRetryStopsOnPermanent(t *testing.T) {
	refused := errors.New("refused")
	for _, after := range []int{1, 3} {
		calls := 0
		_, err := retry(context.Background(), fast, func() (int, error) {
			calls++
			if calls == after {
				return 0, backoff.Permanent(refused)
			}
			return 0, errors.New("not yet")
		}, nil)
		if err != refused || calls != after {
			t.Errorf("permanent at call %d: err %v after %d calls, want the error itself at once", after, err, calls)
		}
	}
}

func TestRetryStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := retry(ctx, fast, func() (int, error) {
		calls++
		if calls == 3 {
			cancel()
		}
		return 0, errors.New("down")
	}, nil)
	if !errors.Is(err, context.Canceled) || calls != 3 {
		t.Fatalf("retry = %v after %d calls; want context.Canceled after 3", err, calls)
	}
	// Already cancelled: one call, no wait.
	_, err = retry(ctx, retryPolicy{initial: time.Hour, max: time.Hour}, func() (int, error) { return 0, errors.New("down") }, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("retry on a cancelled context = %v", err)
	}
}

// TestRetrySuccessAllocatesNothing: fetch calls retry once per message, so a
// first call that succeeds must not put op or failed on the heap.
func TestRetrySuccessAllocatesNothing(t *testing.T) {
	ctx := context.Background()
	n := 0
	op := func() (int, error) {
		n++
		return n, nil
	}
	failed := func(error) { t.Error("failed told of a success") }
	if allocs := testing.AllocsPerRun(100, func() { _, _ = retry(ctx, kafkaRetry, op, failed) }); allocs != 0 {
		t.Errorf("a retry whose first call succeeds allocates %v times", allocs)
	}
}
