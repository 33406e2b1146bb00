package consumer_test

import (
	"bytes"
	"context"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers"
)

// TestIdlePartitionsSleep gives a worker 16 source partitions, each with
// three retry tiers and a parked topic: the partitions of the tiers and of
// the parked topic hold no reader while nothing is written to them. Events
// that fail once wake their tier's partition, which sleeps until they are
// due, runs them then, and falls asleep again. Once the worker is idle, its
// lanes and heartbeats have ended, and it holds two goroutines per source
// partition (a session and its fetcher) and none per sleeping partition.
func TestIdlePartitionsSleep(t *testing.T) {
	const partitions, tiers = 16, 3
	e := newEnv(t, partitions)
	var mu sync.Mutex
	failed := map[string]time.Time{}
	ranAgain := map[string]time.Time{}
	router, _ := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if !strings.HasPrefix(ev.ID, "fail-") {
			return nil
		}
		if _, ok := failed[ev.ID]; !ok {
			failed[ev.ID] = time.Now()
			return errDownstream
		}
		ranAgain[ev.ID] = time.Now()
		return nil
	})
	delay := time.Second
	en := e.start(options{router: router, configure: func(cfg *consumer.Config) {
		cfg.InPlaceAttempts = 1
		cfg.RetryDelays = []time.Duration{delay, 2 * delay, 3 * delay}
	}})
	sleeping := func() int {
		n := 0
		for _, p := range en.Status().Partitions {
			if p.Asleep {
				n++
			}
		}
		return n
	}
	waitFor(t, 30*time.Second, "every tier and parked partition asleep", func() bool { return sleeping() == partitions*(tiers+1) })

	s := newStream(400, 40, 31)
	for i := range 20 {
		s.unique[i] = withID(s.unique[i], "fail-"+headerValue(s.unique[i], "ce_id"))
	}
	e.publish(s.unique...)
	waitFor(t, 60*time.Second, "every event processed", func() bool { return en.finished(consumer.OutcomeProcessed) == len(s.unique) })
	e.checkBalances(s)
	mu.Lock()
	for id, at := range failed {
		if again := ranAgain[id]; again.Sub(at) < delay {
			t.Errorf("%s ran again %v after it failed, before its tier's delay %v", id, again.Sub(at), delay)
		}
	}
	mu.Unlock()
	if got := en.finished(consumer.OutcomeRetried); got != 20 {
		t.Errorf("%d events went to the first tier, want 20", got)
	}

	waitFor(t, 30*time.Second, "every tier and parked partition asleep again", func() bool { return sleeping() == partitions*(tiers+1) })
	// The engine's own goroutines: the run of the generation, its loops
	// (group commits, gates, store probe, watcher) and two per source
	// partition. Lanes end when they run out of work, heartbeats when no
	// claim is held (a third of the test's 5 s lease after the last).
	most := 2*partitions + 12
	waitFor(t, 30*time.Second, "the idle worker's goroutines to end", func() bool { return engineGoroutines(t) <= most })
}

// withID is m with another ce_id.
func withID(m kafka.Message, id string) kafka.Message {
	m.Headers = append(m.Headers[:0:0], m.Headers...)
	for i, h := range m.Headers {
		if h.Key == "ce_id" {
			m.Headers[i].Value = []byte(id)
		}
	}
	return m
}

// engineGoroutines counts the goroutines running code of package consumer.
func engineGoroutines(t *testing.T) int {
	t.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 2); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range strings.Split(b.String(), "\n\n") {
		for _, line := range strings.Split(g, "\n") {
			if strings.HasPrefix(line, "github.com/fleetworks/fleet/consumer.") {
				n++
				break
			}
		}
	}
	return n
}
