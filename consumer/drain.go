package consumer

import (
	"context"
	"sync"
	"time"
)

// drain is a generation's stop signal, in two steps. stopping ends when the
// generation starts to drain: nothing new is fetched, claimed or started.
// work ends once the drain budget is spent: running handlers, store calls
// and dead-letter writes are cancelled, and whatever is left is abandoned.
// Every goroutine of a generation waits on one of the two.
type drain struct {
	stopping context.Context
	work     context.Context

	stop       context.CancelFunc
	cancelWork context.CancelFunc
	budget     time.Duration
	timer      *time.Timer
	mu         sync.Mutex
}

// newDrain returns the stop signal of a generation whose drain may take
// budget. Neither step is tied to parent's cancellation: the generation
// begins the drain itself.
func newDrain(parent context.Context, budget time.Duration) *drain {
	base := context.WithoutCancel(parent)
	d := &drain{budget: budget}
	d.stopping, d.stop = context.WithCancel(base)
	d.work, d.cancelWork = context.WithCancel(base)
	return d
}

// begin starts the drain: stopping ends now, work once the budget is spent.
func (d *drain) begin() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		return
	}
	d.stop()
	d.timer = time.AfterFunc(d.budget, d.cancelWork)
}

// end cancels whatever still runs under the generation; call it once the
// generation is over.
func (d *drain) end() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
	}
	d.stop()
	d.cancelWork()
}

// started reports whether the drain has begun.
func (d *drain) started() bool { return d.stopping.Err() != nil }
