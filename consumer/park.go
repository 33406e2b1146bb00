package consumer

import (
	"context"
	"errors"
	"math"

	"github.com/fleetworks/fleet/dedupe"
)

// Parking (docs/ordering.md, "The engine's part"): an event whose key's
// gate names another event waits behind it, in the gate's queue.

// parkStep parks d behind its key's head: it gives back the claim d holds
// (no attempt spent), queues d in the gate and finishes it as parked. When
// the gate is gone or names d, d is claimed again and its lifecycle goes on
// with the state returned (true); otherwise d is finished or abandoned
// here (false).
func (p *partition) parkStep(d *delivery) (state, bool) {
	p.release(d) // no run under the claim: Unclaim, its attempt given back
	answer, err := p.park(d)
	switch {
	case errors.Is(err, dedupe.ErrInvalid):
		p.deadLetter(d, ReasonInvalidRecord, err, 0)
		return state{}, false
	case err != nil:
		p.abandon(d)
		return state{}, false
	case answer == dedupe.ParkQueued:
		p.parked(d)
		return state{}, false
	case answer == dedupe.ParkDuplicate, answer == dedupe.ParkQueuedBefore:
		p.finish(d, OutcomeDuplicate) // done, or another copy is queued: this one runs no more
		return state{}, false
	case answer == dedupe.ParkConflict:
		p.deadLetter(d, ReasonConflict, errConflict, 0)
		return state{}, false
	case answer == dedupe.ParkOverflow:
		p.e.m.order.overflow.WithLabelValues(p.route.source).Inc()
		p.deadLetter(d, ReasonParkedOverflow, errParkedOverflow, 0)
		return state{}, false
	}
	// Free, or the head: the claim decides again, and is trusted whatever
	// the key's marks.
	d.seq = math.MaxUint64
	if !p.reclaim(d) {
		p.abandon(d)
		return state{}, false
	}
	return p.claimState(d), true
}

// park queues d in its key's gate, asking until the store answers.
func (p *partition) park(d *delivery) (dedupe.ParkAnswer, error) {
	f, limits := p.follower(d), dedupe.GateLimits{MaxFollowers: p.e.cfg.MaxParkedPerKey}
	return storeCall(p, "park", func(ctx context.Context) (dedupe.ParkAnswer, error) {
		return p.e.store.Park(ctx, d.attempt.claim.Gate, d.attempt.claim.Key, f, limits)
	})
}

// parked finishes d, queued in its gate: it runs when released.
func (p *partition) parked(d *delivery) {
	p.e.m.order.parked.WithLabelValues(p.route.source).Inc()
	p.finish(d, OutcomeParked)
}

// follower is d as its gate queues it: the message to write to
// <topic>.parked when its turn comes.
func (p *partition) follower(d *delivery) dedupe.Follower {
	msg := parkedMessage(&d.msg, p.route, p.failure(d, OutcomeParked, nil, d.attempt.res.Attempts))
	return dedupe.Follower{Identity: d.attempt.claim.Identity(), Fingerprint: d.attempt.claim.Fingerprint, Item: encodeParked(&msg)}
}

// parkRefused parks d, which failed and was to hold its key, when another
// event of the key holds it (a dead-lettered event read again after a
// crash ran again, and failed): d waits behind it in its place now, its
// lane being the key's in its partition; its retry message, already
// written, then finds it parked (or running, or done). It finishes d.
func (p *partition) parkRefused(d *delivery) {
	answer, err := p.park(d)
	switch {
	case err != nil:
		p.abandon(d)
	case answer == dedupe.ParkQueued:
		p.parked(d)
	default: // queued before, or a duplicate: its retry message decides
		p.finish(d, OutcomeRetried)
	}
}
