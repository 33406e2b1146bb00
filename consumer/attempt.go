package consumer

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// attempt is a delivery's current claim and the handler run under it. A
// fresh claim (a retry, a claim again after a lost lease) starts a fresh
// attempt.
type attempt struct {
	claim dedupe.Claim
	res   dedupe.ClaimResult
	lease dedupe.Lease
	tx    *handlers.Tx
	// lost is set once the lease is known lost (the heartbeat or the store
	// refused it); the attempt's context is cancelled then.
	lost atomic.Bool
	// ran is set once a handler runs under the lease: a claim given up
	// before that gives its attempt back (Store.Unclaim).
	ran bool
	// run is the context the handler (or the rate limiter) runs under,
	// guarded by the lease keeper's lock.
	run run
}

// run is what runs under a held claim, guarded by leaseKeeper.mu.
type run struct {
	ctx    context.Context
	cancel context.CancelFunc
	// ended is when the heartbeat first saw ctx done.
	ended time.Time
}

// awaitStore holds a handler back while the store is known to be down: the
// fleet fails closed, and a run whose completion cannot be recorded would
// only be repeated. It reports false if the partition drains first.
func (p *partition) awaitStore() bool {
	if p.e.storeErr.Load() == nil {
		return true
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for p.e.storeErr.Load() != nil {
		select {
		case <-p.drain.stopping.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// throttle waits until the rate limiter grants d's run. Meanwhile d's lease
// is held and extended like every held claim; it returns an error when the
// lease is lost or the partition's work is cancelled first. A limiter that
// cannot be asked is asked again (storeRetry): fleet waits rather than
// overrun a limit.
func (p *partition) throttle(d *delivery) error {
	rl := p.e.cfg.RateLimiter
	if rl == nil || !rl.Limited(d.ev.Type) {
		return nil // no context, no round trip
	}
	ctx, cancel := context.WithCancel(p.drain.work)
	p.leases.startRun(d, ctx, cancel)
	defer p.leases.endRun(d)
	var waited time.Duration
	defer func() {
		if waited > 0 {
			p.e.m.throttled.WithLabelValues(d.typeLabel).Add(waited.Seconds())
		}
	}()
	reserve := func() (time.Duration, error) {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		return rl.Reserve(rctx, d.ev.Type)
	}
	retried := false
	failed := func(err error) {
		retried = true
		p.e.storeFailed("rate_limit", err)
	}
	for {
		start := time.Now()
		wait, err := retry(ctx, storeRetry, reserve, failed)
		if retried { // the backoff waits count as waiting for the limit too
			waited += time.Since(start)
			retried = false
		}
		if err != nil || wait == 0 {
			return err
		}
		start = time.Now()
		ok := sleep(ctx, wait)
		waited += time.Since(start)
		if !ok {
			return ctx.Err()
		}
	}
}

// runHandler runs d's handler once under the held claim, which the heartbeat
// extends; a lost lease cancels the run's context. The handler timeout is
// that context's deadline.
func (p *partition) runHandler(d *delivery) error {
	e := p.e
	if err := p.throttle(d); err != nil {
		return err
	}
	var ctx context.Context
	var cancel context.CancelFunc
	if t := e.cfg.HandlerTimeout; t > 0 {
		ctx, cancel = context.WithTimeout(p.drain.work, t)
	} else {
		ctx, cancel = context.WithCancel(p.drain.work)
	}
	a := &d.attempt
	a.tx = handlers.NewTx(a.claim.Identity(), a.lease.Fence, a.res.Attempts)
	p.leases.startRun(d, ctx, cancel)
	defer p.leases.endRun(d)
	if a.lost.Load() {
		// Lost between the claim and now (throttled, or waiting for the
		// store): the handler must not start under it.
		return dedupe.ErrLeaseLost
	}
	a.ran = true
	ctx, span := p.traceHandle(ctx, d)
	start := time.Now()
	err := e.handler.Handle(ctx, d.ev, a.tx)
	observe(e.m.handlerTime.WithLabelValues(d.typeLabel), time.Since(start).Seconds(), span)
	endSpan(span, err)
	return err
}

// complete hands the run's effects to the engine's group commit and waits
// for the answer. The claim stays held (extended) meanwhile; the caller
// drops it.
func (p *partition) complete(d *delivery) error {
	if d.attempt.lost.Load() {
		return dedupe.ErrLeaseLost
	}
	// Not the run's context: its deadline bounds the handler, not the
	// completion. A lease lost meanwhile makes the store refuse it.
	select {
	case p.e.completions <- d:
	case <-p.drain.work.Done():
		return p.drain.work.Err()
	}
	err := <-d.completed
	if err != nil && d.attempt.lost.Load() {
		// The heartbeat found the lease lost while the completion waited.
		return dedupe.ErrLeaseLost
	}
	return err
}

// leaseLost records a run whose lease was taken: its completion was refused
// (or never sent), so if its handler had external effects they may happen
// twice. Ledger-style effects are safe: they only apply with a fenced
// completion.
func (p *partition) leaseLost(d *delivery) {
	d.attempt.lost.Store(true)
	traceLeaseLost(d)
	p.leases.drop(d)
	p.e.m.leaseLost.Inc()
	p.failed(d, "lease lost", dedupe.ErrLeaseLost)
	p.e.log.Warn("lease lost: another owner took the event over", "topic", p.topic, "partition", p.id,
		"offset", d.msg.Offset, "id", d.ev.ID, "type", d.ev.Type, "attempt", d.attempt.res.Attempts, "fence", d.attempt.lease.Fence)
}
