package consumer

import (
	"sync"
	"sync/atomic"
)

// keyQueue keeps the deliveries of one key in offset order: a delivery whose
// key has an earlier one in flight waits behind it and runs when that one is
// done, while other keys run in parallel. The order key is the message key,
// or for a message without one the event id, so that redeliveries of one
// event never run at once; a delivery with neither (undecodable) is not
// ordered. Each key's queue is a list through delivery.next, so queueing
// allocates nothing.
type keyQueue struct {
	mu sync.Mutex
	// last holds, for every key in flight, its last delivery: the one to
	// queue the next behind.
	last map[string]*delivery
	// marks holds, for a key whose gate was made while it was in flight,
	// the batch sequence then (see Mark); queued is the sequence of the
	// last batch queued.
	marks  map[string]uint64
	queued uint64
	// marked counts the marks, read without the lock: most partitions
	// have none, and Marked then costs no lock.
	marked atomic.Int64
	// records counts, by idempotency record, the deliveries in flight that
	// claim it (Hold).
	records map[string]int
}

func newKeyQueue() *keyQueue {
	return &keyQueue{last: make(map[string]*delivery), marks: make(map[string]uint64), records: make(map[string]int)}
}

// Hold counts d's record in flight, until d is done (Next), and reports
// whether an earlier delivery has it in flight too: d is then a copy of an
// event queued before it on its key (a resend). Such a copy does not claim
// at dispatch but when its turn comes. Were it to claim at once, it could
// take the claim that the delivery before it gave back while it waits to
// run again (between attempts in place, or to park), and hold it, its
// lease kept alive, for as long as it waits behind that very delivery,
// which would wait for the claim: neither would ever run.
func (q *keyQueue) Hold(d *delivery) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := d.attempt.claim.Key
	earlier := q.records[k] > 0
	q.records[k]++
	d.heldRecord = k
	return earlier
}

// Unhold takes d's record out of those in flight, if Hold counted it.
func (q *keyQueue) Unhold(d *delivery) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.unhold(d)
}

func (q *keyQueue) unhold(d *delivery) {
	k, held := d.heldRecord, d.heldRecord != ""
	if !held {
		return
	}
	d.heldRecord = ""
	if q.records[k]--; q.records[k] <= 0 {
		delete(q.records, k)
	}
}

// Mark notes that a gate was made for d's key (docs/ordering.md, "The
// engine's part") when seq was the latest batch sequence claimed: the
// claims of the key's deliveries from batches up to seq may predate the
// gate, so their answers are not trusted (Marked). The mark goes once the
// key has left the queue and every batch up to seq has been queued (a
// batch claimed before the gate may still await its claims' answers).
func (q *keyQueue) Mark(d *delivery, seq uint64) {
	k := orderKey(d)
	if k == "" {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.marks[k] = max(q.marks[k], seq)
	q.marked.Store(int64(len(q.marks)))
}

// Marked reports whether d's claim may predate its key's gate: d's batch
// was sent no later than the key's mark.
func (q *keyQueue) Marked(d *delivery) bool {
	k := orderKey(d)
	if k == "" || q.marked.Load() == 0 {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	m, ok := q.marks[k]
	return ok && d.seq <= m
}

// orderKey is what orders d among the partition's deliveries ("" for none).
func orderKey(d *delivery) string {
	if d.ev.Key != "" {
		return d.ev.Key
	}
	return d.ev.ID
}

// Enqueue queues a batch, in offset order, and returns the deliveries that
// may run now: those with nothing of their key before them in flight. The
// result shares batch's array.
func (q *keyQueue) Enqueue(batch []*delivery) []*delivery {
	ready := batch[:0]
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(batch) > 0 {
		q.queued = max(q.queued, batch[0].seq)
		q.dropMarks()
	}
	for _, d := range batch {
		k := orderKey(d)
		if k == "" {
			ready = append(ready, d)
			continue
		}
		if last, ok := q.last[k]; ok {
			last.next = d
		} else {
			ready = append(ready, d)
		}
		q.last[k] = d
	}
	return ready
}

// Next is called when done is finished or abandoned, before it is recycled:
// it returns the delivery of done's key to run now, or nil.
func (q *keyQueue) Next(done *delivery) *delivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.unhold(done)
	k := orderKey(done)
	if k == "" {
		return nil
	}
	next := done.next
	if next == nil {
		delete(q.last, k) // done was the last of its key
		if q.marks[k] <= q.queued {
			delete(q.marks, k)
			q.marked.Store(int64(len(q.marks)))
		}
	}
	return next
}

// dropMarks forgets the marks no delivery can need: of keys not in flight,
// up to the last batch queued. Marks are few (keys whose event moved to a
// tier lately), so a pass over them is cheap.
func (q *keyQueue) dropMarks() {
	for k, m := range q.marks {
		if _, inFlight := q.last[k]; !inFlight && m < q.queued {
			delete(q.marks, k)
		}
	}
	q.marked.Store(int64(len(q.marks)))
}

// Len is the number of keys in flight.
func (q *keyQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.last)
}
