package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// watcher wakes the sleeping partitions of a generation (sleep.go). Every
// MaxWait, one fetch per leader broker asks for all the partitions asleep
// without a wake time, from their next offsets, with room for next to no
// data: its answer tells which have something to read, and the watcher
// starts a session of each (partition.run). A partition asleep on a retry
// message is started when the message is due. The fetch waits up to
// MaxWait on the broker, so a message written to a partition it asks for
// wakes it at once.
type watcher struct {
	e     *Engine
	drain *drain
	// start runs a session of p in the generation.
	start     func(p *partition)
	transport *kafka.Transport
	client    *kafka.Client

	// parts are the partitions the watcher wakes, by name; leaderOf is
	// the leader broker of each as the transport knew it at leadersRead
	// (read again after leadersTTL, or after a fetch failed).
	parts       map[topicPartition]*partition
	leaderOf    map[topicPartition]int
	leadersRead time.Time

	mu      sync.Mutex
	asleep  map[*partition]struct{}
	stopped bool
	// fell is signalled when a partition falls asleep: a watcher with
	// nothing to ask about goes round.
	fell chan struct{}
}

// leadersTTL is how long the watcher trusts the leaders it read.
const leadersTTL = 10 * time.Second

func newWatcher(e *Engine, d *drain, start func(*partition)) *watcher {
	t := Transport(e.cfg.Dialer)
	return &watcher{
		e: e, drain: d, start: start, transport: t,
		client: &kafka.Client{Addr: kafka.TCP(e.cfg.Brokers...), Transport: t, Timeout: 10 * time.Second},
		parts:  map[topicPartition]*partition{}, asleep: map[*partition]struct{}{}, fell: make(chan struct{}, 1),
	}
}

// add takes p asleep, before the watcher runs: its first session starts
// when it has something to read.
func (w *watcher) add(p *partition) {
	p.watch = w
	p.asleep.Store(true)
	w.parts[topicPartition{p.topic, p.id}] = p
	w.asleep[p] = struct{}{}
}

// sleep takes p back once its session fell asleep. Once the generation
// drains, p stays asleep for good.
func (w *watcher) sleep(p *partition) {
	p.fellAsleep()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.asleep[p] = struct{}{}
	select {
	case w.fell <- struct{}{}:
	default:
	}
}

// run wakes partitions until the generation drains.
func (w *watcher) run() {
	defer w.stop()
	ctx := w.drain.stopping
	failures := 0
	for ctx.Err() == nil {
		watched, next := w.wakeDue(time.Now())
		if len(watched) == 0 {
			w.idle(ctx, next)
			continue
		}
		wait := w.e.cfg.MaxWait
		if !next.IsZero() {
			wait = max(min(wait, time.Until(next)), time.Millisecond)
		}
		err := w.poll(ctx, watched, wait)
		if err == nil || ctx.Err() != nil {
			failures = 0
			continue
		}
		w.failed(err)
		w.leaderOf = nil
		sleep(ctx, kafkaRetry.delay(failures))
		failures++
	}
}

// stop ends the watching: partitions asleep now stay asleep.
func (w *watcher) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.transport.CloseIdleConnections()
}

// idle waits, with nothing to ask about, until the next wake time (none:
// zero), a partition falls asleep, or the generation drains.
func (w *watcher) idle(ctx context.Context, next time.Time) {
	var at <-chan time.Time
	if !next.IsZero() {
		t := time.NewTimer(time.Until(next))
		defer t.Stop()
		at = t.C
	}
	select {
	case <-at:
	case <-w.fell:
	case <-ctx.Done():
	}
}

// wakeDue starts the partitions whose wake time has come, and returns the
// others asleep without one, and the next wake time (zero: none).
func (w *watcher) wakeDue(now time.Time) (watched []*partition, next time.Time) {
	var due []*partition
	w.mu.Lock()
	for p := range w.asleep {
		switch {
		case p.wakeAt.IsZero():
			watched = append(watched, p)
		case !now.Before(p.wakeAt):
			due = append(due, p)
			delete(w.asleep, p)
		case next.IsZero() || p.wakeAt.Before(next):
			next = p.wakeAt
		}
	}
	w.mu.Unlock()
	for _, p := range due {
		w.wake(p)
	}
	return watched, next
}

// wake starts p's next session.
func (w *watcher) wake(p *partition) {
	p.awake()
	w.start(p)
}

// wakeReadable takes the partitions an answer found readable out of the
// sleeping ones, and starts them.
func (w *watcher) wakeReadable(ps []*partition) {
	w.mu.Lock()
	for _, p := range ps {
		delete(w.asleep, p)
	}
	w.mu.Unlock()
	for _, p := range ps {
		w.wake(p)
	}
}

// failed records a watch that failed; the next one is tried after a
// backoff.
func (w *watcher) failed(err error) {
	w.e.errors.add(ErrorEntry{Time: time.Now().UTC(), What: "watch sleeping partitions", Error: err.Error()})
	w.e.log.Warn("watch the partitions of retry tiers and parked topics", "err", err)
}
