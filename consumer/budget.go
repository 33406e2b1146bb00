package consumer

import (
	"sync"

	"github.com/segmentio/kafka-go"
)

// messageSize is what a message holds in memory, roughly: key, value and
// headers.
func messageSize(m *kafka.Message) int64 {
	n := len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// byteBudget caps the bytes of a partition's messages between fetch and
// finish. One goroutine takes (the fetcher); any goroutine gives back.
type byteBudget struct {
	mu    sync.Mutex
	used  int64
	max   int64
	freed chan struct{}
}

func newByteBudget(max int64) *byteBudget {
	return &byteBudget{max: max, freed: make(chan struct{}, 1)}
}

// take reserves n bytes, waiting for bytes to be given back while over
// budget; it reports false if stop closes first. With nothing held any n
// fits, so an oversized message still goes through.
func (b *byteBudget) take(n int64, stop <-chan struct{}) bool {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return true
		}
		b.mu.Unlock()
		select {
		case <-b.freed:
		case <-stop:
			return false
		}
	}
}

func (b *byteBudget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	select {
	case b.freed <- struct{}{}:
	default:
	}
}

// workerSlots caps the events fetched and in flight in a whole worker
// (Config.WorkerMaxInFlight): a partition's fetcher takes one for each
// message it hands over, and the slot is given back when the event is
// finished or abandoned, or dropped before it was collected. A nil
// workerSlots caps nothing.
type workerSlots chan struct{}

func newWorkerSlots(n int) workerSlots {
	if n == 0 {
		return nil
	}
	return make(workerSlots, n)
}

// take takes a slot, waiting for one; it reports false if stop closes
// first.
func (s workerSlots) take(stop <-chan struct{}) bool {
	if s == nil {
		return true
	}
	select {
	case s <- struct{}{}:
		return true
	case <-stop:
		return false
	}
}

// give gives a slot back.
func (s workerSlots) give() {
	if s != nil {
		<-s
	}
}
