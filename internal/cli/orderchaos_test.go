package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/internal/demo"
)

// TestOrderChaos checks ordered retries under failure (docs/ordering.md):
// three fleet processes run an HTTP handler, served by this test, over a
// stream of keys whose events carry sequence numbers 1, 2, 3, … A share of
// the events fail transiently, one to three times, and so go through the
// retry tiers; every second or two a process is killed (SIGKILL or
// SIGTERM) and started again. The handler reads the key's last applied
// number from Redis, where only completions write it: an event that is
// not the next one is an order violation (refused, and counted). At the
// end every key has applied every number once, in order: zero violations,
// zero double applies, and no dead letter.
func TestOrderChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("order chaos test: about 40 s")
	}
	const (
		partitions = 4
		keys       = 120
		perKey     = 40
		rate       = 400 // messages per second: the stream takes about 12 s
	)
	c := newKafka(t, partitions, nil, kfake.GroupMinSessionTimeout(time.Second)).withRedis()
	h := &seqHandler{rdb: c.rdb, failures: map[string]int{}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	flags := []string{"--session-timeout", "3s", "--heartbeat-interval", "300ms", "--drain-timeout", "1s", "--lease", "2s",
		"--in-place-attempts", "1", "--retry-delays", "300ms,600ms,1s", "--log-level", "warn",
		"--http-handler", "seq.*=" + srv.URL + "/events"}
	workers := make([]*worker, 3)
	starts := 0
	start := func(i int) {
		starts++
		workers[i] = c.startWorker(fmt.Sprintf("w%d-%d", i, starts), flags...)
	}
	for i := range workers {
		start(i)
	}

	// The stream: round after round, the next number of every key.
	var msgs []kafka.Message
	for n := 1; n <= perKey; n++ {
		for k := range keys {
			msgs = append(msgs, seqEvent(fmt.Sprintf("k%03d", k), n))
		}
	}
	ctx := context.Background()
	published := make(chan error, 1)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		step := rate / 20
		for i := 0; i < len(msgs); i += step {
			if err := c.writer.WriteMessages(ctx, msgs[i:min(i+step, len(msgs))]...); err != nil {
				published <- err
				return
			}
			<-tick.C
		}
		published <- nil
	}()

	r := rand.New(rand.NewPCG(11, 3))
	kills, terms := 0, 0
	began := time.Now()
	for done := false; !done; {
		select {
		case err := <-published:
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			done = true
			continue
		case <-time.After(time.Second + time.Duration(r.IntN(1000))*time.Millisecond):
		}
		c.waitStable(3) // see TestChaos: kill in a settled group
		i := r.IntN(len(workers))
		sig := syscall.SIGKILL
		if r.IntN(2) == 0 {
			sig, terms = syscall.SIGTERM, terms+1
		} else {
			kills++
		}
		if err := workers[i].cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		<-workers[i].exited
		start(i)
	}
	t.Logf("published %d messages in %v with %d SIGKILLs and %d SIGTERMs", len(msgs), time.Since(began).Round(time.Millisecond), kills, terms)

	eventually(t, 120*time.Second, "every key at its last number", func() bool {
		for k := range keys {
			if v, _ := c.rdb.Get(ctx, seqLastKey(fmt.Sprintf("k%03d", k))).Int(); v != perKey {
				return false
			}
		}
		return true
	})
	h.mu.Lock()
	violations, failed, runs := h.violations, len(h.failures), h.runs
	h.mu.Unlock()
	if len(violations) > 0 {
		t.Errorf("%d order violations, the first: %v", len(violations), violations[:min(len(violations), 5)])
	}
	doubles := 0
	pipe := c.rdb.Pipeline()
	var counts []*redis.StringCmd
	for k := range keys {
		for n := 1; n <= perKey; n++ {
			counts = append(counts, pipe.Get(ctx, seqAppliedKey(fmt.Sprintf("k%03d", k), n)))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range counts {
		if cmd.Val() != "1" {
			doubles++
		}
	}
	if doubles > 0 {
		t.Errorf("%d of %d events applied other than once", doubles, len(counts))
	}
	dead := 0
	if err := readTopic(ctx, c.brokers, nil, consumer.DeadLetterTopic(e2eTopic), func(kafka.Message) error {
		dead++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if dead > 0 {
		t.Errorf("%d dead letters, want none", dead)
	}
	if failed == 0 {
		t.Error("no event failed: the retry tiers were not exercised")
	}
	t.Logf("order chaos: %d events over %d keys, %d of them failing 1 to 3 times, %d handler runs; %d violations, %d double applies, %d dead letters; %d SIGKILL, %d SIGTERM",
		len(msgs), keys, failed, runs, len(violations), doubles, dead, kills, terms)
}

// seqHandler is the order-checking handler: it answers seq.step events,
// failing a tenth of them one to three times first.
type seqHandler struct {
	rdb        redis.UniversalClient
	mu         sync.Mutex
	failures   map[string]int // failures so far, by event id
	violations []string
	runs       int
}

func (h *seqHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get("ce-id")
	key, err := url.PathUnescape(r.Header.Get("Fleet-Key"))
	var body struct {
		Seq int `json:"seq"`
	}
	if err != nil || json.NewDecoder(r.Body).Decode(&body) != nil || body.Seq < 1 {
		http.Error(w, "not a seq event", http.StatusUnprocessableEntity)
		return
	}
	h.mu.Lock()
	h.runs++
	if h.failures[id] < failuresOf(id) {
		h.failures[id]++
		h.mu.Unlock()
		http.Error(w, "transient", http.StatusServiceUnavailable)
		return
	}
	h.mu.Unlock()
	last, err := h.rdb.Get(r.Context(), seqLastKey(key)).Int()
	if err != nil && err != redis.Nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if body.Seq != last+1 {
		h.mu.Lock()
		h.violations = append(h.violations, fmt.Sprintf("%s: %d ran after %d", key, body.Seq, last))
		h.mu.Unlock()
		http.Error(w, "out of order", http.StatusUnprocessableEntity)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"effects":[{"op":"SET","key":%q,"value":"%d"},{"op":"INCRBY","key":%q,"delta":1}]}`,
		seqLastKey(key), body.Seq, seqAppliedKey(key, body.Seq))
}

// failuresOf is how many times an event fails before it succeeds: 1 to 3
// for a tenth of the events, 0 for the rest.
func failuresOf(id string) int {
	f := fnv.New32a()
	_, _ = f.Write([]byte(id))
	v := f.Sum32()
	if v%10 != 0 {
		return 0
	}
	return 1 + int(v/10%3)
}

func seqLastKey(key string) string           { return "seq:{" + key + "}:last" }
func seqAppliedKey(key string, n int) string { return "seq:{" + key + "}:applied:" + strconv.Itoa(n) }

// seqEvent is number n of key.
func seqEvent(key string, n int) kafka.Message {
	id := key + "-" + strconv.Itoa(n)
	return demo.Event(id, key, "seq.step", fmt.Sprintf(`{"seq":%d}`, n))
}
