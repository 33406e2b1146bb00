package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetworks/fleet/dedupe"
)

// The end of a key's head (docs/ordering.md): a head done, a duplicate or
// dead-lettered releases the next parked event of its key to
// <topic>.parked; a head moved to a retry tier, or dead-lettered under
// hold, holds its key.

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

// deadLetterStep is what a release after a dead letter does to the gate:
// under hold, a dead letter holds the key (when keys are ordered);
// otherwise it ends the head.
func (p *partition) deadLetterStep() dedupe.GateStep {
	if p.e.cfg.OnDeadLetter == DeadLetterHold && p.e.cfg.RetryOrder == OrderKey {
		return dedupe.GateHoldHeld
	}
	return dedupe.GateEndHead
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
