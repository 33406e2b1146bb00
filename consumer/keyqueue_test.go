package consumer

import (
	"slices"
	"strings"
	"testing"

	"github.com/fleetworks/fleet/handlers"
)

// deliveries makes deliveries with the given keys and ids, as "key/id"
// ("/id" has no key, "/" neither); their offsets count from 0.
func deliveries(specs ...string) []*delivery {
	ds := make([]*delivery, len(specs))
	for i, s := range specs {
		key, id, _ := strings.Cut(s, "/")
		ds[i] = &delivery{ev: handlers.Event{Key: key, ID: id}}
		ds[i].msg.Offset = int64(i)
	}
	return ds
}

func offsets(ds []*delivery) []int64 {
	out := make([]int64, 0, len(ds))
	for _, d := range ds {
		if d == nil {
			out = append(out, -1)
			continue
		}
		out = append(out, d.msg.Offset)
	}
	return out
}

func TestKeyQueueReadyAreTheFirstOfTheirKey(t *testing.T) {
	q := newKeyQueue()
	batch := deliveries("a/1", "b/2", "a/3", "/4", "/4", "/", "/", "c/5")
	ds := slices.Clone(batch)
	ready := q.Enqueue(batch)
	// a/3 waits behind a/1; the second "/4" (no key: ordered by id) behind
	// the first; the deliveries with neither key nor id are not ordered.
	if got, want := offsets(ready), []int64{0, 1, 3, 5, 6, 7}; !slices.Equal(got, want) {
		t.Fatalf("ready %v, want %v", got, want)
	}
	if got := q.Len(); got != 4 {
		t.Errorf("keys in flight: %d, want 4 (a, b, 4, c)", got)
	}
	if next := q.Next(ds[0]); next != ds[2] {
		t.Errorf("after a/1: %v, want a/3", offsets([]*delivery{next}))
	}
	if next := q.Next(ds[3]); next != ds[4] {
		t.Errorf("after the first /4: %v, want the second", offsets([]*delivery{next}))
	}
	for _, d := range []*delivery{ds[5], ds[6]} {
		if next := q.Next(d); next != nil {
			t.Errorf("an unordered delivery has a successor: %v", offsets([]*delivery{next}))
		}
	}
	for _, d := range []*delivery{ds[1], ds[2], ds[4], ds[7]} {
		if next := q.Next(d); next != nil {
			t.Errorf("the last of its key has a successor: %v", offsets([]*delivery{next}))
		}
	}
	if got := q.Len(); got != 0 {
		t.Errorf("keys in flight once all are done: %d", got)
	}
}

func TestKeyQueueOrderAcrossBatches(t *testing.T) {
	q := newKeyQueue()
	first := deliveries("k/1", "k/2")
	second := deliveries("k/3", "j/4")
	for i, d := range second {
		d.msg.Offset = int64(2 + i)
	}
	ds := append(slices.Clone(first), second...)
	if got := offsets(q.Enqueue(first)); !slices.Equal(got, []int64{0}) {
		t.Fatalf("first batch ready %v, want [0]", got)
	}
	// k/3 queues behind k/2, which is still waiting: the last of the key.
	if got := offsets(q.Enqueue(second)); !slices.Equal(got, []int64{3}) {
		t.Fatalf("second batch ready %v, want [3]", got)
	}
	var ran []int64
	for d := ds[0]; d != nil; d = q.Next(d) {
		ran = append(ran, d.msg.Offset)
	}
	if !slices.Equal(ran, []int64{0, 1, 2}) {
		t.Errorf("key k ran %v, want offsets 0, 1, 2 in order", ran)
	}
	// The key is gone once its last delivery is done: a new one runs at once.
	if q.Next(ds[3]) != nil || q.Len() != 0 {
		t.Fatalf("keys left in flight: %d", q.Len())
	}
	if got := offsets(q.Enqueue(deliveries("k/9"))); !slices.Equal(got, []int64{0}) {
		t.Errorf("a key done and seen again: ready %v, want it ready", got)
	}
}

func TestKeyQueueDoneOutOfOrderKeepsTheChain(t *testing.T) {
	// A key's deliveries finish in order (one lane runs them), but the
	// queue must hold when later ones are enqueued while the head runs.
	q := newKeyQueue()
	head := deliveries("k/1")
	q.Enqueue(head)
	tail := deliveries("k/2")
	if ready := q.Enqueue(tail); len(ready) != 0 {
		t.Fatalf("k/2 ready while k/1 runs")
	}
	if q.Next(head[0]) != tail[0] {
		t.Fatalf("k/1 done: k/2 is not next")
	}
	late := deliveries("k/3")
	if ready := q.Enqueue(late); len(ready) != 0 {
		t.Fatalf("k/3 ready while k/2 runs")
	}
	if q.Next(tail[0]) != late[0] || q.Next(late[0]) != nil || q.Len() != 0 {
		t.Fatalf("the chain k/2, k/3 broke")
	}
}

// batch gives deliveries a batch sequence.
func batch(seq uint64, ds ...*delivery) []*delivery {
	for _, d := range ds {
		d.seq = seq
	}
	return ds
}

// TestKeyQueueMarks: a key's mark covers the deliveries of every batch
// claimed up to it, even one queued after the key left the queue (its
// claims' answers came late), and no later batch.
func TestKeyQueueMarks(t *testing.T) {
	q := newKeyQueue()
	ds := deliveries("a/1", "a/2", "a/3", "a/4", "b/5")
	first, late, later, other := ds[0], ds[1], ds[3], ds[4]
	q.Enqueue(batch(1, first))
	// Batch 2 is claimed (its answers not back yet) when first moves to a
	// tier and marks its key with the latest batch claimed, 2.
	q.Mark(first, 2)
	if q.Marked(first) != true {
		t.Error("a delivery of the batch that made the mark is marked")
	}
	if next := q.Next(first); next != nil {
		t.Fatalf("next %v", next)
	}
	// Batch 2 comes back after first left the queue: still marked.
	q.Enqueue(batch(2, late, other))
	if !q.Marked(late) {
		t.Error("a delivery of a batch claimed before the gate is not marked once it is queued late")
	}
	if q.Marked(other) {
		t.Error("another key is marked")
	}
	q.Enqueue(batch(3, later))
	if q.Marked(later) {
		t.Error("a delivery claimed after the mark is marked")
	}
	q.Next(late)
	q.Next(later)
	q.Next(other)
	q.Enqueue(batch(4, ds[2]))
	if len(q.marks) != 0 {
		t.Errorf("marks kept once no delivery can need them: %v", q.marks)
	}
}

// TestKeyQueueHoldsRecords: a delivery whose record an earlier one has in
// flight is told so, until every earlier one is done; the count goes when
// the last is.
func TestKeyQueueHoldsRecords(t *testing.T) {
	q := newKeyQueue()
	copyOf := func(record string) *delivery {
		d := &delivery{ev: handlers.Event{Key: "acct-1", ID: record}}
		d.attempt.claim.Key = record
		return d
	}
	first, second, other := copyOf("r1"), copyOf("r1"), copyOf("r2")
	if q.Hold(first) || !q.Hold(second) || q.Hold(other) {
		t.Fatal("Hold: want false for the first copy and another record, true for the second copy")
	}
	q.Enqueue([]*delivery{first, second, other})
	if next := q.Next(first); next != second {
		t.Fatalf("after the first copy: %v", next)
	}
	if third := copyOf("r1"); !q.Hold(third) {
		t.Error("a third copy while the second is in flight: not held back")
	} else {
		q.Unhold(third)
	}
	q.Next(second)
	q.Next(other)
	if len(q.records) != 0 {
		t.Errorf("records in flight after all are done: %v", q.records)
	}
	if q.Hold(copyOf("r1")) {
		t.Error("a copy after every earlier one was done: held back")
	}
}
