package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/fleetworks/fleet/dedupe"
)

// leaseKeeper holds the claims of one partition and extends them. A claim is
// held from the store's answer until it is completed, released or found
// lost: while it waits in a lane behind earlier events of its key, while the
// rate limiter holds it back, while its handler runs, while its completion
// waits for the group commit and while its dead letter is written. The
// heartbeat extends every one of them every third of the lease, so that
// without a pause, a crash or a rebalance no claim is lost and no duplicate
// takes an event over.
//
// While a handler (or the rate limiter) runs under a claim, the attempt's
// run holds its context and cancel, under mu. Once that context is done
// (timeout, lease lost, drain) the lease is no longer extended while the run
// goes on: a handler that outlives its context by a whole lease has
// forfeited the lease, and its completion is refused, as another owner may
// have taken the event over.
type leaseKeeper struct {
	lease time.Duration
	// extend asks the store to extend leases: one error per lease (nil, or
	// dedupe.ErrLeaseLost), or an error of the store itself.
	extend func(ctx context.Context, leases []dedupe.Lease) ([]error, error)
	// forfeit is told of each run that forfeited its lease, once.
	forfeit func(d *delivery)

	mu   sync.Mutex
	held map[*delivery]dedupe.Lease
	// The heartbeat runs only while claims are held (see keep): ctx is
	// its context, beating tells whether it runs, stopped that it must
	// not start again, and beats waits for it.
	ctx     context.Context
	beating bool
	stopped bool
	beats   sync.WaitGroup
}

func newLeaseKeeper(lease time.Duration, extend func(context.Context, []dedupe.Lease) ([]error, error), forfeit func(*delivery)) *leaseKeeper {
	return &leaseKeeper{lease: lease, extend: extend, forfeit: forfeit, held: make(map[*delivery]dedupe.Lease)}
}

// keep makes the keeper extend its claims from now on, under ctx: its
// heartbeat starts with the first claim held and ends when a beat finds
// none, so that a partition without claims holds no goroutine. stop ends
// it for good.
func (k *leaseKeeper) keep(ctx context.Context) {
	k.mu.Lock()
	k.ctx = ctx
	k.mu.Unlock()
}

// stop ends the heartbeat, and waits for it; no claim held is extended
// after it.
func (k *leaseKeeper) stop() {
	k.mu.Lock()
	k.stopped = true
	k.mu.Unlock()
	k.beats.Wait()
}

// hold starts holding d's lease (a fresh claim), and the heartbeat if it
// does not run.
func (k *leaseKeeper) hold(d *delivery) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.held[d] = d.attempt.lease
	if k.ctx != nil && !k.beating && !k.stopped {
		k.beating = true
		ctx := k.ctx
		k.beats.Go(func() { k.run(ctx) })
	}
}

// startRun ties a run's context to d's held claim: a lost lease cancels it,
// and a lease found lost before the run starts cancels it at once (the
// heartbeat marks d lost under the same lock).
func (k *leaseKeeper) startRun(d *delivery, ctx context.Context, cancel context.CancelFunc) {
	k.mu.Lock()
	d.attempt.run = run{ctx: ctx, cancel: cancel}
	lost := d.attempt.lost.Load()
	k.mu.Unlock()
	if lost {
		cancel()
	}
}

// endRun ends the run under d's claim; the claim stays held.
func (k *leaseKeeper) endRun(d *delivery) {
	k.mu.Lock()
	cancel := d.attempt.run.cancel
	d.attempt.run = run{}
	k.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// drop stops holding d's claim (completed, released or lost) and ends its
// run, if one runs.
func (k *leaseKeeper) drop(d *delivery) {
	k.mu.Lock()
	delete(k.held, d)
	cancel := d.attempt.run.cancel
	d.attempt.run = run{}
	k.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// running counts the runs under held claims.
func (k *leaseKeeper) running() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for d := range k.held {
		if d.attempt.run.ctx != nil {
			n++
		}
	}
	return n
}

// run extends the held claims every third of the lease until ctx is done,
// or until a beat finds none held.
func (k *leaseKeeper) run(ctx context.Context) {
	t := time.NewTicker(k.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			k.idle(true)
			return
		case now := <-t.C:
			_ = k.beat(ctx, now) // extend reports store errors; the next beat tries again
			if k.idle(false) {
				return
			}
		}
	}
}

// idle reports whether the heartbeat ends: when told to, or when no claim
// is held. A claim held later starts it again.
func (k *leaseKeeper) idle(end bool) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if end || len(k.held) == 0 {
		k.beating = false
		return true
	}
	return false
}

// beat extends every claim due at now in one round trip, bounded by a third
// of the lease, and marks the ones the store refused as lost. It returns the
// store's error, if it could not be asked.
func (k *leaseKeeper) beat(ctx context.Context, now time.Time) error {
	ds, ls := k.due(now)
	if len(ls) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, k.lease/3)
	defer cancel()
	errs, err := k.extend(ctx, ls)
	if err != nil {
		return err
	}
	k.lost(ds, ls, errs)
	return nil
}

// due returns the claims to extend at now. Runs whose context ended are left
// out; past a whole lease they are marked lost, and forfeit is told.
func (k *leaseKeeper) due(now time.Time) (ds []*delivery, ls []dedupe.Lease) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for d, held := range k.held {
		r := &d.attempt.run
		if r.ctx != nil && r.ctx.Err() != nil {
			if r.ended.IsZero() {
				r.ended = now
			} else if now.Sub(r.ended) > k.lease && !d.attempt.lost.Load() {
				d.attempt.lost.Store(true)
				k.forfeit(d)
			}
			continue
		}
		ds = append(ds, d)
		ls = append(ls, held)
	}
	return ds, ls
}

// lost marks the claims the store refused to extend: each one's run, if one
// runs, is cancelled. A claim dropped meanwhile, or held again under another
// lease since, is left alone.
func (k *leaseKeeper) lost(ds []*delivery, ls []dedupe.Lease, errs []error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, d := range ds {
		held, ok := k.held[d]
		if errs[i] == nil || !ok || held != ls[i] {
			continue
		}
		d.attempt.lost.Store(true)
		if d.attempt.run.cancel != nil {
			d.attempt.run.cancel()
		}
	}
}
