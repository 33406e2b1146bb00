package consumer

import (
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"

	"github.com/fleetworks/fleet/handlers"
)

// delivery is one fetched message on its way through a partition's
// pipeline, from fetch to finish (or abandonment): the message, what
// decoding made of it, its place in its key's queue and the attempts made
// at it so far. Its current claim and handler run are its attempt.
type delivery struct {
	// p is the partition the message belongs to.
	p    *partition
	msg  kafka.Message
	size int64 // the message's share of the partition's byte budget
	ev   handlers.Event
	// typeLabel is the event type as a metric label ("unknown" until the
	// type is known and routed).
	typeLabel string
	// verdict, when set at intake, decides the message's fate without a
	// claim: another group's retry message, or a dead-letter reason.
	verdict    string
	verdictErr error

	// next is the following delivery of the same key, queued behind this
	// one (see keyQueue); heldRecord, the record keyQueue.Hold counted in
	// flight for it.
	next       *delivery
	heldRecord string
	// seq is the sequence of the batch the delivery was claimed in; a
	// delivery whose claim is to be trusted whatever the marks (it was
	// parked and found its gate gone, or named as head) has the largest.
	seq uint64
	// completed answers a completion; it is the lane's, which runs one
	// delivery at a time.
	completed chan error

	// tries counts the handler runs of this delivery; busyWait is the next
	// wait for a claim someone else holds.
	tries    int
	busyWait time.Duration
	// firstFailure and lastFailure date the handler's failures, for the
	// dead-letter and retry headers.
	firstFailure, lastFailure time.Time

	attempt attempt
	// span is the event's process span; nil without tracing (tracing.go).
	span trace.Span
}

// failedAt dates a failure of the delivery's handler.
func (d *delivery) failedAt(now time.Time) {
	if d.firstFailure.IsZero() {
		d.firstFailure = now
	}
	d.lastFailure = now
}

// recycle puts d back into the pool once nothing refers to it any more.
func recycle(d *delivery) {
	*d = delivery{}
	deliveryPool.Put(d)
}

// deliveryPool recycles deliveries, the largest allocation per event.
var deliveryPool = sync.Pool{New: func() any { return new(delivery) }}
