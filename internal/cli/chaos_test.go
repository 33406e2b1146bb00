package cli

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/demo"
)

// TestChaos runs three fleet processes over a stream of ledger events with
// duplicates and known poison, published over half a minute, while every
// second or two one process is killed (SIGKILL or SIGTERM) and started
// again; Redis is killed and restarted once (it keeps an append-only file,
// fsynced on every write, as the operations guide asks), and a fourth
// process joins and leaves to force a rebalance. Then it checks, from what
// Kafka and Redis hold:
//
//   - every balance is exact;
//   - the dead-letter topic holds exactly the poison (each one at least
//     once: a process killed between writing a dead letter and committing
//     its offset writes it again);
//   - every offset of every source partition is committed and accounted
//     for: done (the first message of an id, its record done), duplicate
//     (a later message of an id), retried or dead-lettered.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: about a minute")
	}
	const (
		partitions = 8
		events     = 50_000
		rate       = 1800 // messages per second: the stream takes about 30 s
	)
	s, err := demo.New(events, 500, 0.1, 42)
	if err != nil {
		t.Fatal(err)
	}
	msgs := slices.Clone(s.Valid)
	rand.New(rand.NewPCG(42, 1)).Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	// Poison: the demo stream's (undecodable, no id, unknown type, refused
	// amount, id reused with another payload) and three events of an account
	// whose balance key holds a string, so their effect cannot be applied.
	poisonKinds := map[string]string{} // id (or value) -> reason
	corrupt := "acct-" + s.Run + "-corrupt"
	for i := range 3 {
		id := fmt.Sprintf("demo-%s-corrupt-%d", s.Run, i)
		msgs = append(msgs, demo.Event(id, corrupt, ledger.TypeCaptured, fmt.Sprintf(`{"account":%q,"amount_cents":%d}`, corrupt, 10+i)))
		poisonKinds[id] = consumer.ReasonInvalidEffect
	}
	poison := s.Messages[len(s.Valid):]
	for i, m := range poison {
		poisonKinds[poisonID(m)] = s.Poison[i]
	}
	// Spread the poison through the second half of the stream, the conflict
	// last so that it comes after its original.
	half := len(msgs) / 2
	for i, m := range poison {
		at := half + (i+1)*(len(msgs)-half)/(len(poison)+1)
		if s.Poison[i] == consumer.ReasonConflict {
			at = len(msgs)
		}
		msgs = slices.Insert(msgs, at, m)
	}

	// Sessions of 3 s (kfake allows 6 s at least by default); Redis keeps an
	// append-only file, fsynced on every write.
	c := newKafka(t, partitions, nil, kfake.GroupMinSessionTimeout(time.Second)).withRedis("--appendonly", "yes", "--appendfsync", "always")
	ctx := context.Background()
	if err := c.rdb.Set(ctx, ledger.BalanceKey(corrupt), "corrupt", 0).Err(); err != nil {
		t.Fatal(err)
	}

	flags := []string{"--session-timeout", "3s", "--heartbeat-interval", "300ms", "--drain-timeout", "1s", "--lease", "2s",
		"--retry-delays", "500ms,1s", "--log-level", "warn"}
	workers := make([]*worker, 3)
	starts := 0
	start := func(i int) {
		starts++
		workers[i] = c.startWorker(fmt.Sprintf("w%d-%d", i, starts), flags...)
	}
	for i := range workers {
		start(i)
	}

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

	r := rand.New(rand.NewPCG(7, 7))
	var kills, terms int
	redisRestarted, rebalanced := false, false
	began := time.Now()
chaos:
	for {
		select {
		case err := <-published:
			if err != nil {
				t.Fatalf("publish: %v", err)
			}
			break chaos
		case <-time.After(time.Second + time.Duration(r.IntN(1000))*time.Millisecond):
		}
		elapsed := time.Since(began)
		switch {
		case !redisRestarted && elapsed > 8*time.Second:
			redisRestarted = true
			c.redis.Stop()
			t.Logf("%v: Redis killed", elapsed.Round(time.Millisecond))
			time.Sleep(time.Second) // a real outage, not a blip
			c.redis.Restart()
			t.Logf("%v: Redis restarted", time.Since(began).Round(time.Millisecond))
			continue
		case !rebalanced && elapsed > 16*time.Second:
			rebalanced = true
			c.waitStable(3)
			extra := c.startWorker("extra", flags...)
			c.waitStable(4)
			if err := extra.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			<-extra.exited
			t.Logf("%v: a fourth process joined and left", time.Since(began).Round(time.Millisecond))
			continue
		}
		// kfake starts a member's session timer only once its join response
		// is delivered: a process killed mid-join would keep its partitions
		// forever (a real broker expires it), so kill in a settled group.
		c.waitStable(3)
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
	if !redisRestarted || !rebalanced {
		t.Fatal("the stream ended before Redis was restarted and a rebalance forced")
	}
	c.sent = len(msgs)
	c.waitCommitted(partitions, int64(c.sent), 120*time.Second)
	t.Logf("all committed %v after the start", time.Since(began).Round(time.Millisecond))

	// The checker.
	c.checkBalances(s.Want)
	if got, _ := c.rdb.Get(ctx, ledger.BalanceKey(corrupt)).Result(); got != "corrupt" {
		t.Errorf("the corrupt balance key was changed to %q", got)
	}
	brokers := c.brokers
	type loc struct {
		partition int
		offset    int64
	}
	source := map[loc]kafka.Message{}
	if err := readTopic(ctx, brokers, nil, e2eTopic, func(m kafka.Message) error {
		source[loc{m.Partition, m.Offset}] = m
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(source) != len(msgs) {
		t.Fatalf("source topic holds %d messages, published %d", len(source), len(msgs))
	}
	origin := func(m kafka.Message) loc {
		p, _ := strconv.Atoi(demo.Header(m, consumer.HeaderOriginalPartition))
		o, _ := strconv.ParseInt(demo.Header(m, consumer.HeaderOriginalOffset), 10, 64)
		return loc{p, o}
	}
	dead := map[loc]int{}
	if err := readTopic(ctx, brokers, nil, consumer.DeadLetterTopic(e2eTopic), func(m kafka.Message) error {
		dead[origin(m)]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	retried := map[loc]bool{}
	for n := 1; n <= 2; n++ {
		if err := readTopic(ctx, brokers, nil, consumer.RetryTopic(e2eTopic, n), func(m kafka.Message) error {
			retried[origin(m)] = true
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	// Walk every partition in offset order, as the consumers did.
	counts := map[string]int{}
	seen := map[string]bool{}
	var keys []string
	copies := 0
	for p := range partitions {
		for o := int64(0); ; o++ {
			m, ok := source[loc{p, o}]
			if !ok {
				break
			}
			l := loc{p, o}
			if reason, isPoison := poisonKinds[poisonID(m)]; isPoison {
				if dead[l] == 0 {
					t.Errorf("poison %s (%s) at %d/%d is not in the dead-letter topic", poisonID(m), reason, p, o)
				}
				copies += dead[l]
				counts["dead-lettered"]++
				delete(dead, l)
				continue
			}
			if retried[l] {
				counts["retried"]++
			}
			id := demo.Header(m, consumer.HeaderID)
			if seen[id] {
				counts["duplicate"]++
				continue
			}
			seen[id] = true
			counts["done"]++
			keys = append(keys, dedupe.Key("ledger-e2e", string(m.Key), demo.Source, id))
		}
	}
	for l, n := range dead {
		t.Errorf("dead-letter topic holds %d letters of %d/%d, which is no poison: %s", n, l.partition, l.offset, poisonID(source[l]))
	}
	if counts["done"] != events || counts["duplicate"] != s.Duplicates || counts["dead-lettered"] != len(poisonKinds) {
		t.Errorf("accounted: %v; want %d done, %d duplicate, %d dead-lettered", counts, events, s.Duplicates, len(poisonKinds))
	}
	// Every unique event's record is done.
	notDone := 0
	for _, k := range keys {
		if st, err := recordState(ctx, c.rdb, k); err != nil || st != dedupe.StateDone {
			notDone++
		}
	}
	if notDone > 0 {
		t.Errorf("%d of %d events have no done record", notDone, len(keys))
	}
	t.Logf("chaos: %d offsets over %d partitions: %d done, %d duplicate, %d retried, %d dead-lettered (%d dead letters written); %d balances exact; %d SIGKILL, %d SIGTERM, Redis restarted once, one forced rebalance",
		len(source), partitions, counts["done"], counts["duplicate"], counts["retried"], counts["dead-lettered"], copies, len(s.Want), kills, terms)
}

// poisonID names a message for the poison set: its id, or its value when it
// has no id; a reused id is told apart by its payload.
func poisonID(m kafka.Message) string {
	id := demo.Header(m, consumer.HeaderID)
	if id == "" {
		return "value:" + string(m.Value)
	}
	if strings.Contains(string(m.Value), `"amount_cents":1}`) && !strings.Contains(id, "unknown") {
		return "reused:" + id
	}
	return id
}
