package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/segmentio/kafka-go"
)

// release gives the claim back so that the next attempt runs the handler: a
// claim whose handler never ran gives its attempt back too (Unclaim). A
// failure is logged only, since the lease then expires by itself.
func (p *partition) release(w *work) {
	if w.lease.Owner == "" {
		return
	}
	p.leases.drop(w)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.work), 2*time.Second)
	defer cancel()
	start := time.Now()
	var err error
	if w.ran {
		err = p.e.store.Release(ctx, w.lease)
	} else {
		err = p.e.store.Unclaim(ctx, w.lease)
	}
	p.e.m.storeTime.WithLabelValues("release").Observe(time.Since(start).Seconds())
	w.lease = dedupe.Lease{}
	switch {
	case err == nil, errors.Is(err, dedupe.ErrLeaseLost):
	default:
		p.e.storeFailed("release", err)
		p.e.log.Warn("release claim: its lease will expire instead", "topic", p.topic, "partition", p.id, "offset", w.msg.Offset,
			"id", w.ev.ID, "type", w.ev.Type, "attempt", w.res.Attempts, "err", err)
	}
}

// deadLetter writes w to the dead-letter topic of its source, releases its
// claim and finishes it. The write is retried until acknowledged, the dead
// letter losing its value, then its original headers, then its key while it
// is too large for the topic (HeaderDropped says so); if the partition drains
// first, the event is abandoned instead (and not committed).
func (p *partition) deadLetter(w *work, reason string, cause error, attempts int) {
	msg := deadLetterMessage(&w.msg, p.route, p.failure(w, reason, cause, attempts))
	if p.publish(w, msg, true) != written {
		p.abandon(w)
		return
	}
	p.e.m.deadLetters.WithLabelValues(p.route.source, reason).Inc()
	p.failed(w, "dead-lettered ("+reason+")", cause)
	p.e.log.Warn("dead-lettered", "topic", p.topic, "partition", p.id, "offset", w.msg.Offset,
		"id", w.ev.ID, "type", w.ev.Type, "reason", reason, "attempt", attempts, "err", cause)
	p.release(w)
	if reason == ReasonConflict {
		p.finish(w, OutcomeConflict)
		return
	}
	p.finish(w, OutcomeDeadLettered)
}

// retryLater writes w to the next retry tier, due after that tier's delay,
// releases its claim (the attempt count stays in the record) and finishes
// it here. An event too large for the retry topic is dead-lettered instead;
// if the partition drains before the write is acknowledged, the event is
// abandoned.
func (p *partition) retryLater(w *work, cause error) {
	e := p.e
	n := p.route.tier + 1
	notBefore := time.Now().Add(e.cfg.RetryDelays[n-1])
	msg := retryMessage(&w.msg, p.route, p.failure(w, ReasonRetryable, cause, w.res.Attempts), n, notBefore)
	switch p.publish(w, msg, false) {
	case written:
	case tooLargeToWrite:
		p.deadLetter(w, ReasonRetryTooLarge, fmt.Errorf("too large for %s: %w", msg.Topic, cause), w.res.Attempts)
		return
	default:
		p.abandon(w)
		return
	}
	e.m.retryTopics.WithLabelValues(p.route.source, strconv.Itoa(n)).Inc()
	e.log.Info("sent to retry topic", "topic", p.topic, "partition", p.id, "offset", w.msg.Offset,
		"id", w.ev.ID, "type", w.ev.Type, "retry_topic", msg.Topic, "attempt", w.res.Attempts, "not_before", notBefore, "err", cause)
	p.release(w)
	p.finish(w, OutcomeRetried)
}

func (p *partition) failure(w *work, reason string, cause error, attempts int) failure {
	now := time.Now()
	if w.firstFailure.IsZero() {
		w.firstFailure = now
	}
	if w.lastFailure.IsZero() {
		w.lastFailure = now
	}
	return failure{group: p.e.cfg.Group, identity: w.claim.Identity(), reason: reason, cause: cause, attempts: attempts,
		first: w.firstFailure, last: w.lastFailure}
}

// writeResult is how a publish ended.
type writeResult int

// publish writes msg until it is acknowledged. A message too large for its
// topic is shrunk when shrinkable allows (see shrink), and reported
// otherwise; any other refusal is retried with backoff. It reports cancelled
// if the partition's work is cancelled first.
func (p *partition) publish(w *work, msg kafka.Message, shrinkable bool) writeResult {
	e := p.e
	for attempt := 0; ; attempt++ {
		err := e.dlq.WriteMessages(p.work, msg)
		if err == nil {
			return written
		}
		if tooLarge(err) {
			if !shrinkable {
				return tooLargeToWrite
			}
			if smaller, ok := shrink(msg); ok {
				e.log.Warn("too large for "+msg.Topic+": written without "+fleetHeader(smaller.Headers, HeaderDropped), "topic", p.topic,
					"partition", p.id, "offset", w.msg.Offset, "id", w.ev.ID, "type", w.ev.Type)
				msg = smaller
				attempt--
				continue
			}
		}
		e.m.publishError.WithLabelValues(msg.Topic).Inc()
		p.failed(w, "write to "+msg.Topic, err)
		e.log.Error("write to "+msg.Topic, "topic", p.topic, "partition", p.id, "offset", w.msg.Offset,
			"id", w.ev.ID, "type", w.ev.Type, "attempt", w.res.Attempts, "err", err)
		if p.work.Err() != nil || !sleep(p.work, backoff(attempt, 100*time.Millisecond, 5*time.Second)) {
			return cancelled
		}
	}
}

// finish marks w's offset done.
func (p *partition) finish(w *work, outcome string) {
	e := p.e
	e.m.finished.WithLabelValues(p.topic, w.typeLabel, outcome).Inc()
	if !w.msg.Time.IsZero() {
		e.m.latency.Observe(time.Since(w.msg.Time).Seconds())
	}
	p.wm.finish(w.msg.Offset)
	if e.cfg.OnFinish != nil {
		e.cfg.OnFinish(&w.msg, outcome)
	}
	p.free(w)
}

// abandon gives w up without finishing it: its offset stays uncommitted and
// its claim, if any, is released for the next owner.
func (p *partition) abandon(w *work) {
	p.release(w)
	p.free(w)
}

// free ends w's time in flight: its claim is no longer held, its slot and
// bytes are given back.
func (p *partition) free(w *work) {
	p.leases.drop(w)
	p.e.m.inFlight.Dec()
	p.bytes.give(w.size)
	<-p.slots
}

// recycle puts w back into the pool once nothing refers to it any more.
func recycle(w *work) {
	*w = work{}
	workPool.Put(w)
}

// workPool recycles work items, the largest allocation per event.
var workPool = sync.Pool{New: func() any { return new(work) }}
