package consumer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// Ordered retries (docs/ordering.md): while an event of a key waits in a
// retry tier, or is held after its dead letter, the key's later events are
// parked behind it in its gate, and released one at a time, through
// <topic>.parked, as each one before them ends. The store's scripts decide
// (package dedupe, order*.go); this file is the engine's part: park, hold,
// end and release.

// The values of Config.RetryOrder and Config.OnDeadLetter.
const (
	// OrderKey keeps a key's events in order through the retry tiers.
	OrderKey = "key"
	// OrderNone lets a key's later events overtake one in a retry tier.
	OrderNone = "none"
	// DeadLetterContinue releases the events parked behind a dead-lettered
	// event.
	DeadLetterContinue = "continue"
	// DeadLetterHold holds them until an operator unblocks the key.
	DeadLetterHold = "hold"
)

// OutcomeParked: the event waits behind an earlier event of its key; its
// offset is done here, and it runs when released through <topic>.parked.
const OutcomeParked = "parked"

// Dead-letter reasons of ordered retries.
const (
	// ReasonParkedOverflow: the key's gate already queues
	// Config.MaxParkedPerKey events.
	ReasonParkedOverflow = "parked_overflow"
	// ReasonParkedTooLarge: a released event did not fit <topic>.parked
	// with fleet's headers.
	ReasonParkedTooLarge = "parked_too_large"
)

var errParkedOverflow = errors.New("too many events parked behind this key's head (max parked per key)")

// orderMetrics count what ordered retries do.
type orderMetrics struct {
	parked, released, overflow *prometheus.CounterVec
	violations                 prometheus.Counter
}

func newOrderMetrics(r *registering) orderMetrics {
	return orderMetrics{
		parked: counterVec(r, "fleet_order_parked_events_total",
			"Events parked behind an earlier event of their key that waits in a retry tier or is held, by source topic.", "topic"),
		released: counterVec(r, "fleet_order_released_events_total",
			"Parked events released, in order, to <topic>.parked, by source topic.", "topic"),
		overflow: counterVec(r, "fleet_order_overflow_total",
			"Events dead-lettered because their key already had the most parked events (reason parked_overflow), by source topic.", "topic"),
		violations: counter(r, "fleet_order_violations_total",
			"Runs that raced a gate made meanwhile: their completion was refused, nothing applied, and the event parked. Should stay 0 but for paused workers."),
	}
}

// gateRef names the gate of d's key: the group, d's source topic and
// source partition, and the message key.
func (p *partition) gateRef(d *delivery) dedupe.GateRef {
	return dedupe.GateRef{Group: p.e.cfg.Group, Topic: p.route.source, Partition: p.sourcePartition(&d.msg), Key: d.ev.Key}
}

// gateKey is the key of d's gate, or "" when d's key cannot be gated.
func (p *partition) gateKey(d *delivery) string {
	switch {
	case !dedupe.Gateable(d.ev.Key):
		return ""
	case !p.route.fleets():
		return dedupe.GateKey(d.ev.Key, p.scope)
	}
	return p.gateRef(d).Gate()
}

// sourcePartition is the source partition of a message: the partition's
// own, or for a retry tier or the parked topic the one fleet's headers
// name (usually the same number, but a tier made with fewer partitions, or
// a source that grew, puts it elsewhere).
func (p *partition) sourcePartition(m *kafka.Message) int {
	if !p.route.fleets() {
		return p.id
	}
	if n, err := strconv.Atoi(fleetHeader(m.Headers, HeaderOriginalPartition)); err == nil && n >= 0 {
		return n
	}
	return p.id
}

// parkStep parks d behind its key's head: it gives back the claim d holds
// (no attempt spent), queues d in the gate and finishes it as parked. When
// the gate is gone or names d, d is claimed again and its lifecycle goes on
// with the state returned (true); otherwise d is finished or abandoned
// here (false).
func (p *partition) parkStep(d *delivery) (state, bool) {
	d.attempt.ran = false // parked: the attempt is given back even if a run raced the gate
	p.release(d)
	answer, err := storeCall(p, "park", func(ctx context.Context) (dedupe.ParkAnswer, error) {
		return p.e.store.Park(ctx, d.attempt.claim.Gate, d.attempt.claim.Key, p.follower(d),
			dedupe.GateLimits{MaxFollowers: p.e.cfg.MaxParkedPerKey})
	})
	switch {
	case errors.Is(err, dedupe.ErrInvalid):
		p.deadLetter(d, ReasonInvalidRecord, err, 0)
		return state{}, false
	case err != nil:
		p.abandon(d)
		return state{}, false
	case answer == dedupe.ParkQueued:
		p.e.m.order.parked.WithLabelValues(p.route.source).Inc()
		p.finish(d, OutcomeParked)
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

// follower is d as its gate queues it: the message to write to
// <topic>.parked when its turn comes.
func (p *partition) follower(d *delivery) dedupe.Follower {
	msg := parkedMessage(&d.msg, p.route, p.failure(d, OutcomeParked, nil, d.attempt.res.Attempts))
	return dedupe.Follower{Identity: d.attempt.claim.Identity(), Fingerprint: d.attempt.claim.Fingerprint, Item: encodeParked(&msg)}
}

// endHead ends d, its key's head, once d is done or a duplicate: the next
// follower is released. It reports false if the partition drains first.
func (p *partition) endHead(d *delivery) bool {
	gate, head := d.attempt.claim.Gate, d.attempt.claim.Identity()
	f, err := storeCall(p, "end", func(ctx context.Context) (*dedupe.Follower, error) {
		return p.e.store.End(ctx, gate, head)
	})
	return err == nil && p.sendReleased(d, gate, head, f)
}

// releaseGated gives d's claim back with a step on its gate (see
// dedupe.Gates.ReleaseGate) and writes the follower an end released. A
// hold marks d's key: the claims of its later deliveries in flight may
// predate the gate. It reports whether a hold was refused (the gate names
// another event), and false if the partition drains first.
func (p *partition) releaseGated(d *delivery, step dedupe.GateStep) (refused, ok bool) {
	lease := d.attempt.lease
	p.leases.drop(d)
	f, err := storeCall(p, "release", func(ctx context.Context) (*dedupe.Follower, error) {
		f, err := p.e.store.ReleaseGate(ctx, lease, p.gateRef(d), step)
		switch {
		case errors.Is(err, dedupe.ErrLeaseLost):
			return nil, nil // no longer ours: its new owner decides
		case errors.Is(err, dedupe.ErrNotHead):
			refused = true // released; the gate names another event
			return nil, nil
		}
		return f, err
	})
	if err != nil {
		return false, false
	}
	d.attempt.lease = dedupe.Lease{}
	if step != dedupe.GateEndHead {
		p.keys.Mark(d, p.batches.Load())
	}
	return refused, p.sendReleased(d, d.attempt.claim.Gate, d.attempt.claim.Identity(), f)
}

// parkRefused parks d, which failed and was to hold its key, when another
// event of the key holds it (a dead-lettered event read again after a
// crash ran again, and failed): d waits behind it in its place now, its
// lane being the key's in its partition; its retry message, already
// written, then finds it parked (or running, or done). It finishes d.
func (p *partition) parkRefused(d *delivery) {
	answer, err := storeCall(p, "park", func(ctx context.Context) (dedupe.ParkAnswer, error) {
		return p.e.store.Park(ctx, d.attempt.claim.Gate, d.attempt.claim.Key, p.follower(d),
			dedupe.GateLimits{MaxFollowers: p.e.cfg.MaxParkedPerKey})
	})
	switch {
	case err != nil:
		p.abandon(d)
	case answer == dedupe.ParkQueued:
		p.e.m.order.parked.WithLabelValues(p.route.source).Inc()
		p.finish(d, OutcomeParked)
	default: // queued before, or a duplicate: its retry message decides
		p.finish(d, OutcomeRetried)
	}
}

// gateStep is what d's release after its dead letter does to its gate:
// under hold, a dead letter holds the key (when keys are ordered);
// otherwise it ends the head.
func (p *partition) deadLetterStep() dedupe.GateStep {
	if p.e.cfg.OnDeadLetter == DeadLetterHold && p.e.cfg.RetryOrder == OrderKey {
		return dedupe.GateHoldHeld
	}
	return dedupe.GateEndHead
}

// sendReleased writes f, released by the end of by, to <topic>.parked. A
// follower too large for it with fleet's headers is dead-lettered instead,
// and skipped: the next is released, as by's (so that a copy of by read
// again after a crash redoes the chain). It reports false if the partition drains
// first (the end is redone when the finished head is read again).
func (p *partition) sendReleased(d *delivery, gate, by string, f *dedupe.Follower) bool {
	for f != nil {
		msg, err := decodeParked(f.Item)
		if err != nil {
			// Not a message fleet queued: nothing to run. Log it and go on
			// with the next, rather than hold the key for ever.
			p.e.log.Error("released follower is not fleet's: skipped", "topic", p.topic, "partition", p.id,
				"identity", f.Identity, "err", err)
		} else {
			switch p.publish(d, msg, false) {
			case written:
				p.e.m.order.released.WithLabelValues(p.route.source).Inc()
				return true
			case tooLargeToWrite:
				dl := deadLetterMessage(&msg, route{source: p.route.source, parked: true},
					failure{group: p.e.cfg.Group, identity: f.Identity, reason: ReasonParkedTooLarge, first: time.Now(), last: time.Now()})
				if p.publish(d, dl, true) != written {
					return false
				}
				p.e.m.deadLetters.WithLabelValues(p.route.source, ReasonParkedTooLarge).Inc()
			default:
				return false
			}
		}
		skipped := f.Identity
		if f, err = storeCall(p, "end", func(ctx context.Context) (*dedupe.Follower, error) {
			return p.e.store.Skip(ctx, gate, skipped, by)
		}); err != nil {
			return false
		}
	}
	return true
}

// storeCall calls the store until it answers, failing closed like claims
// do; it fails only when the partition drains first, or when the store
// refuses the request as invalid (dedupe.ErrInvalid).
func storeCall[T any](p *partition, op string, call func(ctx context.Context) (T, error)) (T, error) {
	ctx := p.drain.work
	start := time.Now()
	v, err := retry(ctx, storeRetry, func() (T, error) {
		v, err := call(ctx)
		if errors.Is(err, dedupe.ErrInvalid) {
			return v, backoff.Permanent(err) // asking again cannot help
		}
		return v, err
	}, func(err error) { p.e.storeFailed(op, err) })
	p.e.m.storeTime.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err == nil {
		p.e.storeOK()
	}
	return v, err
}

// settleDeadLetter gives d's claim back once its dead letter is written:
// for a gated event, with the gate's step (deadLetterStep). It reports
// false if the partition drains first.
func (p *partition) settleDeadLetter(d *delivery) bool {
	switch {
	case d.attempt.claim.Key == "":
		return p.settleUnclaimed(d)
	case d.attempt.claim.Gate == "" || d.attempt.lease.Owner == "":
		p.release(d)
		return true
	}
	_, ok := p.releaseGated(d, p.deadLetterStep())
	return ok
}

// settleUnclaimed runs the gate's step for a message of a retry tier or
// the parked topic dead-lettered before any claim (it no longer decodes,
// or is over a limit changed since): it may be its key's head, named by
// the identity fleet's headers carry, and its key must not stay gated.
func (p *partition) settleUnclaimed(d *delivery) bool {
	id, key := fleetHeader(d.msg.Headers, HeaderIdentity), string(d.msg.Key)
	if !p.route.fleets() || id == "" || !dedupe.Gateable(key) {
		return true
	}
	ref := dedupe.GateRef{Group: p.e.cfg.Group, Topic: p.route.source, Partition: p.sourcePartition(&d.msg), Key: key}
	if p.deadLetterStep() == dedupe.GateHoldHeld {
		_, err := storeCall(p, "hold", func(ctx context.Context) (struct{}, error) {
			err := p.e.store.Hold(ctx, ref, id, true)
			if errors.Is(err, dedupe.ErrNotHead) {
				err = nil // another event is the key's head: nothing to hold
			}
			return struct{}{}, err
		})
		return err == nil || errors.Is(err, dedupe.ErrInvalid)
	}
	gate := ref.Gate()
	f, err := storeCall(p, "end", func(ctx context.Context) (*dedupe.Follower, error) {
		return p.e.store.End(ctx, gate, id)
	})
	if errors.Is(err, dedupe.ErrInvalid) {
		return true // no identity of fleet's: nothing to end
	}
	return err == nil && p.sendReleased(d, gate, id, f)
}

// Unblock lets a held key go (fleet keys unblock): it ends the held head of
// ref's gate and writes the follower that releases to <topic>.parked, where
// the group's workers run it. Redone after a crash, it writes the same
// follower again (a copy written twice runs once). It returns the follower
// written, nil when nothing was parked behind the head (the gate is gone),
// or an error wrapping dedupe.ErrNotHeld when the key is not held.
func Unblock(ctx context.Context, gates dedupe.Gates, pub Publisher, ref dedupe.GateRef) (*dedupe.Follower, error) {
	f, err := gates.Unblock(ctx, ref.Gate())
	if err != nil || f == nil {
		return nil, err
	}
	msg, err := decodeParked(f.Item)
	if err != nil {
		return nil, err
	}
	if err := pub.WriteMessages(ctx, msg); err != nil {
		return nil, fmt.Errorf("write the released event to %s: %w", msg.Topic, err)
	}
	return f, nil
}
