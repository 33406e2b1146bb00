package consumer

import (
	"context"
	"errors"
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
}

func newOrderMetrics(r *registering) orderMetrics {
	return orderMetrics{
		parked: counterVec(r, "fleet_order_parked_events_total",
			"Events parked behind an earlier event of their key that waits in a retry tier or is held, by source topic.", "topic"),
		released: counterVec(r, "fleet_order_released_events_total",
			"Parked events released, in order, to <topic>.parked, by source topic.", "topic"),
		overflow: counterVec(r, "fleet_order_overflow_total",
			"Events dead-lettered because their key already had the most parked events (reason parked_overflow), by source topic.", "topic"),
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
