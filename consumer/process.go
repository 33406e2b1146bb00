package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// process drives one delivery to a finish: done, duplicate, sent to a retry
// tier or dead-lettered. When the partition drains first, the delivery is
// abandoned: its claim is released and its offset stays uncommitted, so the
// next owner runs it. decide (lifecycle.go) makes every decision; process
// carries them out.
func (p *partition) process(d *delivery) {
	s := p.claimState(d)
	s.verdict, s.err = d.verdict, d.verdictErr
	for {
		a := decide(s, p.rules)
		if a.handlerFailed {
			p.handlerFailed(d, s.err, s.kind)
		}
		switch a.step {
		case stepRun:
			s = p.runStep(d)
		case stepComplete:
			s = p.completeStep(d)
		case stepFinish:
			if a.endHead && !p.endHead(d) {
				p.abandon(d)
				return
			}
			p.finish(d, a.outcome)
			return
		case stepPark:
			var more bool
			if s, more = p.parkStep(d); !more {
				return
			}
		case stepDeadLetter:
			p.deadLetter(d, a.reason, a.cause, a.attempts)
			return
		case stepRetryTier:
			p.retryLater(d, a.cause, a.tier)
			return
		case stepRetryInPlace, stepWaitBusy, stepReclaim, stepLeaseLost:
			if !p.waitAndReclaim(d, a, s.err) {
				p.abandon(d)
				return
			}
			s = p.claimState(d)
		case stepAbandon:
			if a.cause != nil {
				traceFailed(d, a.cause)
				p.failed(d, "abandoned", a.cause)
				p.e.log.Error("abandoned: its offset stays uncommitted", "topic", p.topic, "partition", p.id,
					"offset", d.msg.Offset, "id", d.ev.ID, "type", d.ev.Type, "err", a.cause)
			}
			p.abandon(d)
			return
		}
	}
}

// claimState is what is known once the store answered d's claim.
func (p *partition) claimState(d *delivery) state {
	return state{phase: claimed, res: d.attempt.res, lost: d.attempt.lost.Load(), tries: d.tries, tier: p.route.tier,
		marked: d.attempt.res.Outcome == dedupe.Acquired && p.keys.Marked(d)}
}

// runStep runs d's handler once the store is up; it is the handled state,
// or a stopping one if the partition drains while the store is down.
func (p *partition) runStep(d *delivery) state {
	s := state{phase: handled, res: d.attempt.res, tier: p.route.tier}
	if !p.awaitStore() {
		s.err, s.stopping = context.Canceled, true
		return s
	}
	d.tries++
	s.err = p.runHandler(d)
	s.kind, s.retryAfter = handlers.KindOf(s.err), handlers.RetryDelay(s.err)
	s.lost, s.stopping, s.tries = d.attempt.lost.Load(), p.drain.started(), d.tries
	return s
}

// completeStep completes d's run: the completed state.
func (p *partition) completeStep(d *delivery) state {
	span := p.traceComplete(d)
	err := p.complete(d)
	endSpan(span, err)
	return state{phase: completed, res: d.attempt.res, err: err, lost: d.attempt.lost.Load(), tries: d.tries, tier: p.route.tier}
}

// waitAndReclaim claims d again after the wait step a calls for. It reports
// false if the partition drains first.
func (p *partition) waitAndReclaim(d *delivery, a action, cause error) bool {
	var wait time.Duration
	switch a.step {
	case stepRetryInPlace:
		p.retryInPlace(d, cause)
		wait = max(p.e.eventRetry.delay(d.attempt.res.Attempts-1), a.wait)
	case stepWaitBusy:
		wait = p.busyWait(d)
	case stepLeaseLost:
		p.leaseLost(d)
	default:
		p.leases.drop(d)
	}
	if wait > 0 && !sleep(p.drain.stopping, wait) {
		return false
	}
	return p.reclaim(d)
}

// busyWait is how long to wait before asking again for a claim someone else
// holds: not at all the first time (the holder may be an earlier event of
// this very lane), then from 20ms doubling up to a second, and never longer
// than the holder's lease has left (but at least 10ms).
func (p *partition) busyWait(d *delivery) time.Duration {
	wait := d.busyWait
	if wait == 0 {
		d.busyWait = 20 * time.Millisecond
		return 0
	}
	d.busyWait = min(2*wait, time.Second)
	return min(wait, max(d.attempt.res.RetryAfter, 10*time.Millisecond))
}

// retryInPlace counts a retry in place and gives the claim back for it.
func (p *partition) retryInPlace(d *delivery, cause error) {
	reason := "error"
	if errors.Is(cause, context.DeadlineExceeded) {
		reason = "timeout"
	}
	p.e.m.retries.WithLabelValues(p.topic, d.typeLabel, reason).Inc()
	p.release(d)
}

// handlerFailed records a failure of d's handler: its dates, /status, the log.
func (p *partition) handlerFailed(d *delivery, err error, kind handlers.Kind) {
	d.failedAt(time.Now())
	p.failed(d, "handler failed ("+string(kind)+")", err)
	p.e.log.Warn("handler failed", "topic", p.topic, "partition", p.id, "offset", d.msg.Offset,
		"id", d.ev.ID, "type", d.ev.Type, "attempt", d.attempt.res.Attempts, "kind", kind, "err", err)
}
