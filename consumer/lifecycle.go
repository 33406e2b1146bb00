package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// process drives one event to a finish: done, duplicate or dead-lettered.
// When the partition drains first, the event is abandoned: its claim is
// released and its offset stays uncommitted, so the next owner runs it.
func (p *partition) process(w *work) {
	e := p.e
	switch w.verdict {
	case "":
	case verdictOtherGroup:
		p.finish(w, OutcomeOtherGroup)
		return
	default:
		p.deadLetter(w, w.verdict, w.verdictErr, 0)
		return
	}
	busyWait := 10 * time.Millisecond
	for {
		switch w.res.Outcome {
		case dedupe.Duplicate:
			p.finish(w, OutcomeDuplicate)
			return

		case dedupe.Invalid:
			p.deadLetter(w, ReasonInvalidRecord, errors.New(w.res.Reason), 0)
			return

		case dedupe.Conflict:
			p.deadLetter(w, ReasonConflict, errors.New("id reused with a different payload: the record of this source and id holds another payload's fingerprint (the first payload stands)"), 0)
			return

		case dedupe.Busy:
			// Someone else holds the event. Ask again right away the first
			// time (the holder may be an earlier event of this very lane),
			// then back off up to the holder's lease.
			if busyWait > 10*time.Millisecond {
				wait := min(busyWait, max(w.res.RetryAfter, 10*time.Millisecond))
				select {
				case <-p.stop:
					p.abandon(w)
					return
				case <-time.After(wait):
				}
			}
			busyWait = min(busyWait*2, time.Second)
			if !p.reclaim(w) {
				p.abandon(w)
				return
			}

		case dedupe.Acquired:
			if w.lost.Load() {
				// Lost while it waited in the lane (a pause, a store that
				// stalled past the lease): ask what became of it.
				p.leases.drop(w)
				if !p.reclaim(w) {
					p.abandon(w)
					return
				}
				continue
			}
			if w.res.Attempts > e.cfg.MaxAttempts {
				p.deadLetter(w, ReasonAttemptsExhausted, errors.New("attempt budget spent before this run"), w.res.Attempts-1)
				return
			}
			if !p.awaitStore() {
				p.abandon(w)
				return
			}
			w.tries++
			err := p.runHandler(w)
			if err == nil {
				switch err = p.complete(w); {
				case err == nil:
					p.finish(w, OutcomeProcessed)
					return
				case errors.Is(err, dedupe.ErrLeaseLost):
					p.leaseLost(w)
				case errors.Is(err, dedupe.ErrInvalid):
					p.deadLetter(w, ReasonInvalidEffect, err, w.res.Attempts)
					return
				default: // drain deadline passed while completing
					p.abandon(w)
					return
				}
			} else if w.lost.Load() {
				p.leaseLost(w)
			}
			if w.lost.Load() {
				// Another owner has the event: ask the store what became of it.
				if !p.reclaim(w) {
					p.abandon(w)
					return
				}
				continue
			}
			if p.work.Err() != nil || p.stopping() {
				p.abandon(w)
				return
			}
			now := time.Now()
			if w.firstFailure.IsZero() {
				w.firstFailure = now
			}
			w.lastFailure = now
			kind := handlers.KindOf(err)
			p.failed(w, "handler failed ("+string(kind)+")", err)
			e.log.Warn("handler failed", "topic", p.topic, "partition", p.id, "offset", w.msg.Offset,
				"id", w.ev.ID, "type", w.ev.Type, "attempt", w.res.Attempts, "kind", kind, "err", err)
			switch {
			case kind == handlers.KindPermanent:
				p.deadLetter(w, ReasonPermanent, err, w.res.Attempts)
				return
			case kind == handlers.KindUnknownType:
				p.deadLetter(w, ReasonUnknownType, err, w.res.Attempts)
				return
			case w.res.Attempts >= e.cfg.MaxAttempts:
				p.deadLetter(w, ReasonAttemptsExhausted, err, w.res.Attempts)
				return
			case w.tries >= e.cfg.InPlaceAttempts && p.route.tier < len(e.cfg.RetryDelays):
				p.retryLater(w, err)
				return
			case w.tries >= e.cfg.InPlaceAttempts:
				p.deadLetter(w, ReasonAttemptsExhausted, err, w.res.Attempts)
				return
			}
			reason := "error"
			if errors.Is(err, context.DeadlineExceeded) {
				reason = "timeout"
			}
			e.m.retries.WithLabelValues(p.topic, w.typeLabel, reason).Inc()
			p.release(w)
			select {
			case <-p.stop:
				p.abandon(w)
				return
			case <-time.After(backoff(w.res.Attempts-1, e.cfg.RetryBackoff, e.cfg.MaxRetryBackoff)):
			}
			if !p.reclaim(w) {
				p.abandon(w)
				return
			}
		}
	}
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
		case <-p.stop:
			return false
		case <-t.C:
		}
	}
	return true
}

// throttle waits until the rate limiter grants w's run. Meanwhile w's lease
// is held and extended like every held claim; it returns an error when the
// lease is lost or the partition's work is cancelled first. A limiter that
// cannot be asked is retried: fleet waits rather than overrun a limit.
func (p *partition) throttle(w *work) error {
	rl := p.e.cfg.RateLimiter
	if rl == nil || !rl.Limited(w.ev.Type) {
		return nil // no context, no round trip
	}
	ctx, cancel := context.WithCancel(p.work)
	p.leases.startRun(w, ctx, cancel)
	defer p.leases.endRun(w)
	var waited time.Duration
	defer func() {
		if waited > 0 {
			p.e.m.throttled.WithLabelValues(w.typeLabel).Add(waited.Seconds())
		}
	}()
	for attempt := 0; ; {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		wait, err := rl.Reserve(rctx, w.ev.Type)
		rcancel()
		switch {
		case err == nil && wait == 0:
			return nil
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.e.storeFailed("rate_limit", err)
			wait = backoff(attempt, 50*time.Millisecond, 2*time.Second)
			attempt++
		}
		start := time.Now()
		ok := sleep(ctx, wait)
		waited += time.Since(start)
		if !ok {
			return ctx.Err()
		}
	}
}

// runHandler runs one attempt under the lease, which the heartbeat extends;
// a lost lease cancels the attempt's context.
func (p *partition) runHandler(w *work) error {
	e := p.e
	if err := p.throttle(w); err != nil {
		return err
	}
	if d := e.cfg.HandlerTimeout; d > 0 {
		w.ctx, w.cancel = context.WithTimeout(p.work, d)
	} else {
		w.ctx, w.cancel = context.WithCancel(p.work)
	}
	w.tx = handlers.NewTx(w.claim.Identity(), w.lease.Fence, w.res.Attempts)
	p.leases.startRun(w, w.ctx, w.cancel)
	if w.lost.Load() {
		// Lost between the claim and now (throttled, or waiting for the
		// store): the handler must not start under it.
		p.leases.endRun(w)
		return dedupe.ErrLeaseLost
	}
	w.ran = true
	start := time.Now()
	err := e.handler.Handle(w.ctx, w.ev, w.tx)
	e.m.handlerTime.WithLabelValues(w.typeLabel).Observe(time.Since(start).Seconds())
	p.leases.endRun(w)
	return err
}

// complete hands the run's effects to the engine's group commit and waits
// for the answer. The claim stays held (extended) meanwhile; the caller
// drops it.
func (p *partition) complete(w *work) error {
	if w.lost.Load() {
		return dedupe.ErrLeaseLost
	}
	// Not w.ctx: its deadline bounds the handler, not the completion. A lease
	// lost meanwhile makes the store refuse the completion.
	select {
	case p.e.completions <- w:
	case <-p.work.Done():
		return p.work.Err()
	}
	err := <-w.completed
	if err != nil && w.lost.Load() {
		// The heartbeat found the lease lost while the completion waited.
		return dedupe.ErrLeaseLost
	}
	return err
}

// leaseLost records a run whose lease was taken: its completion was refused
// (or never sent), so if its handler had external effects they may happen
// twice. Ledger-style effects are safe: they only apply with a fenced
// completion.
func (p *partition) leaseLost(w *work) {
	w.lost.Store(true)
	p.leases.drop(w)
	p.e.m.leaseLost.Inc()
	p.failed(w, "lease lost", dedupe.ErrLeaseLost)
	p.e.log.Warn("lease lost: another owner took the event over", "topic", p.topic, "partition", p.id,
		"offset", w.msg.Offset, "id", w.ev.ID, "type", w.ev.Type, "attempt", w.res.Attempts, "fence", w.lease.Fence)
}
