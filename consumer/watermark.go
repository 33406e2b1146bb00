package consumer

import "sync"

// watermark tracks the offsets of one partition that are in flight and tells
// the highest offset below which everything is finished: the offset to
// commit. Offsets are added in fetch order (increasing, possibly with gaps)
// and finished in any order. It is safe for concurrent use.
type watermark struct {
	mu sync.Mutex
	// pending holds the offsets added and not yet passed by the watermark, in
	// order; done marks the finished ones. head indexes the first live entry.
	pending []int64
	done    []bool
	// at holds when each pending offset was added and the Kafka timestamp
	// of its message, in unix nanoseconds.
	at, ts []int64
	head   int
	// next is the offset to commit: everything below it is finished.
	next int64
}

func newWatermark(start int64) *watermark {
	return &watermark{next: start}
}

// add records a fetched offset as in flight; now and msgTime (unix
// nanoseconds) are when it was added and its message's timestamp.
func (w *watermark) add(offset, now, msgTime int64) {
	w.mu.Lock()
	if w.head == len(w.pending) {
		// Nothing in flight: the watermark moves up to this offset, which also
		// skips gaps left by compaction or transaction markers.
		w.next = offset
	}
	w.pending = append(w.pending, offset)
	w.done = append(w.done, false)
	w.at = append(w.at, now)
	w.ts = append(w.ts, msgTime)
	w.mu.Unlock()
}

// startAt moves the watermark of a partition that has fetched nothing yet
// to offset: the start the watcher found for a sleeping partition without a
// committed offset (watch.go).
func (w *watermark) startAt(offset int64) {
	w.mu.Lock()
	if w.next < 0 && w.head == len(w.pending) {
		w.next = offset
	}
	w.mu.Unlock()
}

// finish marks offset done and reports the offset to commit.
func (w *watermark) finish(offset int64) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := w.find(offset)
	if i < 0 {
		return w.next
	}
	w.done[i] = true
	for w.head < len(w.pending) && w.done[w.head] {
		w.next = w.pending[w.head] + 1
		w.head++
	}
	if w.head < len(w.pending) {
		w.next = w.pending[w.head]
	}
	w.compact()
	return w.next
}

// find returns the position of offset in pending, by binary search over the
// live entries, or -1.
func (w *watermark) find(offset int64) int {
	lo, hi := w.head, len(w.pending)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if w.pending[m] < offset {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(w.pending) && w.pending[lo] == offset {
		return lo
	}
	return -1
}

// compact drops passed entries once they make up half of the buffer, keeping
// appends amortised O(1) without unbounded growth.
func (w *watermark) compact() {
	if w.head == 0 || w.head < len(w.pending)/2 {
		return
	}
	n := copy(w.pending, w.pending[w.head:])
	copy(w.done, w.done[w.head:])
	copy(w.at, w.at[w.head:])
	copy(w.ts, w.ts[w.head:])
	w.pending = w.pending[:n]
	w.done = w.done[:n]
	w.at = w.at[:n]
	w.ts = w.ts[:n]
	w.head = 0
}

// commitOffset is the offset to commit now: every offset below it is done.
func (w *watermark) commitOffset() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next
}

// inFlight is the number of offsets added and not yet passed.
func (w *watermark) inFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending) - w.head
}

// oldest reports the oldest unfinished offset: when it was added and its
// message's timestamp (unix nanoseconds), and how many are in flight; ok is
// false when nothing is.
func (w *watermark) oldest() (added, msgTime int64, n int, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.head == len(w.pending) {
		return 0, 0, 0, false
	}
	return w.at[w.head], w.ts[w.head], len(w.pending) - w.head, true
}
