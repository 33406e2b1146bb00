package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/segmentio/kafka-go"
)

// release gives the claim back so that the next attempt runs the handler: a
// claim whose handler never ran gives its attempt back too (Unclaim). A
// failure is logged only, since the lease then expires by itself.
func (p *partition) release(d *delivery) {
	if d.attempt.lease.Owner == "" {
		return
	}
	p.leases.drop(d)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.drain.work), 2*time.Second)
	defer cancel()
	start := time.Now()
	var err error
	if d.attempt.ran {
		err = p.e.store.Release(ctx, d.attempt.lease)
	} else {
		err = p.e.store.Unclaim(ctx, d.attempt.lease)
	}
	p.e.m.storeTime.WithLabelValues("release").Observe(time.Since(start).Seconds())
	d.attempt.lease = dedupe.Lease{}
	switch {
	case err == nil, errors.Is(err, dedupe.ErrLeaseLost):
	default:
		p.e.storeFailed("release", err)
		p.e.log.Warn("release claim: its lease will expire instead", "topic", p.topic, "partition", p.id, "offset", d.msg.Offset,
			"id", d.ev.ID, "type", d.ev.Type, "attempt", d.attempt.res.Attempts, "err", err)
	}
}

// deadLetter writes d to the dead-letter topic of its source, releases its
// claim and finishes it. The write is retried until acknowledged, the dead
// letter losing its value, then its original headers, then its key while it
// is too large for the topic (HeaderDropped says so); if the partition drains
// first, the event is abandoned instead (and not committed).
func (p *partition) deadLetter(d *delivery, reason string, cause error, attempts int) {
	msg := deadLetterMessage(&d.msg, p.route, p.failure(d, reason, cause, attempts))
	if p.publish(d, msg, true) != written {
		p.abandon(d)
		return
	}
	p.e.m.deadLetters.WithLabelValues(p.route.source, reason).Inc()
	traceDeadLetter(d, msg.Topic, reason, cause)
	p.failed(d, "dead-lettered ("+reason+")", cause)
	p.e.log.Warn("dead-lettered", "topic", p.topic, "partition", p.id, "offset", d.msg.Offset,
		"id", d.ev.ID, "type", d.ev.Type, "reason", reason, "attempt", attempts, "err", cause)
	if !p.settleDeadLetter(d) {
		p.abandon(d)
		return
	}
	if reason == ReasonConflict {
		p.finish(d, OutcomeConflict)
		return
	}
	p.finish(d, OutcomeDeadLettered)
}

// retryLater writes d to retry tier n (the next one, or a later one whose
// delay covers a Retry-After), due after that tier's delay, releases its
// claim (the attempt count stays in the record) and finishes it here. An
// event too large for the retry topic is dead-lettered instead; if the
// partition drains before the write is acknowledged, the event is
// abandoned.
func (p *partition) retryLater(d *delivery, cause error, n int) {
	e := p.e
	notBefore := time.Now().Add(e.cfg.RetryDelays[n-1])
	msg := retryMessage(&d.msg, p.route, p.failure(d, ReasonRetryable, cause, d.attempt.res.Attempts), n, notBefore)
	switch p.publish(d, msg, false) {
	case written:
	case tooLargeToWrite:
		p.deadLetter(d, ReasonRetryTooLarge, fmt.Errorf("too large for %s: %w", msg.Topic, cause), d.attempt.res.Attempts)
		return
	default:
		p.abandon(d)
		return
	}
	e.m.retryTopics.WithLabelValues(p.route.source, strconv.Itoa(n)).Inc()
	traceRetryTier(d, msg.Topic, n, notBefore)
	e.log.Info("sent to retry topic", "topic", p.topic, "partition", p.id, "offset", d.msg.Offset,
		"id", d.ev.ID, "type", d.ev.Type, "retry_topic", msg.Topic, "attempt", d.attempt.res.Attempts, "not_before", notBefore, "err", cause)
	if d.attempt.claim.Gate == "" || e.cfg.RetryOrder != OrderKey {
		p.release(d)
		p.finish(d, OutcomeRetried)
		return
	}
	switch refused, ok := p.releaseGated(d, dedupe.GateHoldParked); {
	case !ok:
		p.abandon(d)
	case refused:
		p.parkRefused(d)
	default:
		p.finish(d, OutcomeRetried)
	}
}

func (p *partition) failure(d *delivery, reason string, cause error, attempts int) failure {
	now := time.Now()
	if d.firstFailure.IsZero() {
		d.firstFailure = now
	}
	if d.lastFailure.IsZero() {
		d.lastFailure = now
	}
	return failure{group: p.e.cfg.Group, identity: d.attempt.claim.Identity(), reason: reason, cause: cause, attempts: attempts,
		first: d.firstFailure, last: d.lastFailure}
}

// writeResult is how a publish ended.
type writeResult int

const (
	written writeResult = iota
	tooLargeToWrite
	cancelled
)

// publish writes msg until it is acknowledged (kafkaRetry). A message too
// large for its topic is shrunk when shrinkable allows (see shrink), and
// reported otherwise. It reports cancelled if the partition's work is
// cancelled first.
func (p *partition) publish(d *delivery, msg kafka.Message, shrinkable bool) writeResult {
	result := written
	write := func() (struct{}, error) {
		err := p.write(d, &msg, shrinkable)
		if tooLarge(err) && !shrinkable {
			result = tooLargeToWrite
			return struct{}{}, nil
		}
		return struct{}{}, err
	}
	failed := func(err error) {
		p.e.m.publishError.WithLabelValues(msg.Topic).Inc()
		p.failed(d, "write to "+msg.Topic, err)
		p.e.log.Error("write to "+msg.Topic, "topic", p.topic, "partition", p.id, "offset", d.msg.Offset,
			"id", d.ev.ID, "type", d.ev.Type, "attempt", d.attempt.res.Attempts, "err", err)
	}
	if _, err := retry(p.drain.work, kafkaRetry, write, failed); err != nil {
		return cancelled
	}
	return result
}

// write writes msg once; while it is too large for its topic and
// shrinkable, it shrinks it (see shrink) and writes again.
func (p *partition) write(d *delivery, msg *kafka.Message, shrinkable bool) error {
	for {
		err := p.e.dlq.WriteMessages(p.drain.work, *msg)
		if !tooLarge(err) || !shrinkable {
			return err
		}
		smaller, ok := shrink(*msg)
		if !ok {
			return err
		}
		p.e.log.Warn("too large for "+msg.Topic+": written without "+fleetHeader(smaller.Headers, HeaderDropped), "topic", p.topic,
			"partition", p.id, "offset", d.msg.Offset, "id", d.ev.ID, "type", d.ev.Type)
		*msg = smaller
	}
}

// finish marks d's offset done.
func (p *partition) finish(d *delivery, outcome string) {
	e := p.e
	e.m.finished.WithLabelValues(p.topic, d.typeLabel, outcome).Inc()
	if !d.msg.Time.IsZero() {
		observe(e.m.latency, time.Since(d.msg.Time).Seconds(), d.span)
	}
	p.wm.finish(d.msg.Offset)
	if e.cfg.OnFinish != nil {
		e.cfg.OnFinish(&d.msg, outcome)
	}
	traceEnd(d, outcome)
	p.free(d)
}

// abandon gives d up without finishing it: its offset stays uncommitted and
// its claim, if any, is released for the next owner.
func (p *partition) abandon(d *delivery) {
	p.release(d)
	p.free(d)
}

// free ends d's time in flight: its claim is no longer held, its slot and
// bytes are given back.
func (p *partition) free(d *delivery) {
	traceEnd(d, "")
	p.leases.drop(d)
	p.e.m.inFlight.Dec()
	p.bytes.give(d.size)
	<-p.slots
	p.e.slots.give()
}
