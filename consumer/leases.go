package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/fleetworks/fleet/dedupe"
)

// leases are the claims one partition holds. A claim is held from the
// store's answer until it is completed, released or found lost: while it
// waits in a lane behind earlier events of its key, while the rate limiter
// holds it back, while its handler runs, while its completion waits for the
// group commit and while its dead letter is written. The heartbeat extends
// every one of them, so that without a pause, a crash or a rebalance no
// claim is lost and no duplicate takes an event over.
//
// While a handler (or the rate limiter) runs under a claim, the work item's
// run fields hold that attempt's context and its cancel, under mu. Once the
// context is done (timeout, lease lost, drain) the lease is no longer
// extended while the attempt still runs: a handler that outlives its
// context by a whole lease has forfeited the lease, and its completion is
// refused, as another owner may have taken the event over.
type leases struct {
	mu   sync.Mutex
	held map[*work]dedupe.Lease
}

// run is the attempt running under a held claim, guarded by leases.mu.
type run struct {
	ctx    context.Context
	cancel context.CancelFunc
	// ended is when the heartbeat first saw ctx done.
	ended time.Time
}

func newLeases() *leases { return &leases{held: make(map[*work]dedupe.Lease)} }

// hold starts holding w's lease (a fresh claim).
func (l *leases) hold(w *work) {
	l.mu.Lock()
	l.held[w] = w.lease
	l.mu.Unlock()
}

// startRun ties an attempt's context to w's held claim: a lost lease cancels
// it, and a lease found lost before the attempt starts cancels it at once
// (the heartbeat marks w lost under the same lock).
func (l *leases) startRun(w *work, ctx context.Context, cancel context.CancelFunc) {
	l.mu.Lock()
	w.run = run{ctx: ctx, cancel: cancel}
	lost := w.lost.Load()
	l.mu.Unlock()
	if lost {
		cancel()
	}
}

// endRun ends the attempt under w's claim; the claim stays held.
func (l *leases) endRun(w *work) {
	l.mu.Lock()
	cancel := w.run.cancel
	w.run = run{}
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// drop stops holding w's claim (completed, released or lost) and ends its
// attempt, if one runs.
func (l *leases) drop(w *work) {
	l.mu.Lock()
	delete(l.held, w)
	cancel := w.run.cancel
	w.run = run{}
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// running counts the attempts running under held claims.
func (l *leases) running() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for w := range l.held {
		if w.run.ctx != nil {
			n++
		}
	}
	return n
}

// due returns the claims to extend now. Attempts whose context ended are left
// out; past a whole lease they are marked lost (forfeit reports each one
// once).
func (l *leases) due(now time.Time, lease time.Duration, forfeit func(w *work)) (ws []*work, ls []dedupe.Lease) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for w, held := range l.held {
		if w.run.ctx != nil && w.run.ctx.Err() != nil {
			if w.run.ended.IsZero() {
				w.run.ended = now
			} else if now.Sub(w.run.ended) > lease && !w.lost.Load() {
				w.lost.Store(true)
				forfeit(w)
			}
			continue
		}
		ws = append(ws, w)
		ls = append(ls, held)
	}
	return ws, ls
}

// lost marks the claims the store refused to extend: each one's attempt, if
// one runs, is cancelled. A claim already dropped, or held again under
// another lease since, is left alone.
func (l *leases) lost(ws []*work, ls []dedupe.Lease, errs []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, w := range ws {
		held, ok := l.held[w]
		if errs[i] == nil || !ok || held != ls[i] {
			continue
		}
		w.lost.Store(true)
		if w.run.cancel != nil {
			w.run.cancel()
		}
	}
}

// heartbeat extends every held claim of the partition every third of the
// lease, in one round trip, and marks the ones the store refused as lost.
func (p *partition) heartbeat(done <-chan struct{}) {
	t := time.NewTicker(p.e.cfg.Lease / 3)
	defer t.Stop()
	forfeit := func(w *work) {
		p.e.log.Warn("handler still running a lease after its context ended: its lease is forfeited and its completion will be refused",
			"topic", p.topic, "partition", p.id, "offset", w.msg.Offset, "id", w.ev.ID, "type", w.ev.Type, "attempt", w.res.Attempts)
	}
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		ws, ls := p.leases.due(time.Now(), p.e.cfg.Lease, forfeit)
		if len(ls) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(p.work, p.e.cfg.Lease/3)
		start := time.Now()
		errs, err := p.e.store.ExtendBatch(ctx, ls)
		cancel()
		p.e.m.storeTime.WithLabelValues("extend").Observe(time.Since(start).Seconds())
		if err != nil {
			if p.work.Err() == nil {
				p.e.storeFailed("extend", err)
			}
			continue
		}
		p.e.storeOK()
		p.leases.lost(ws, ls, errs)
	}
}
