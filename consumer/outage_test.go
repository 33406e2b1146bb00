package consumer_test

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// checkBalances fails the test unless every account of s has its exact
// balance.
func (e *env) checkBalances(s stream) {
	e.t.Helper()
	got := e.balances(s.accounts)
	for _, a := range s.accounts {
		if got[a] != s.want[a] {
			e.t.Errorf("balance of %s = %d, want %d", a, got[a], s.want[a])
		}
	}
}

// TestHungHandlerLeftBehind runs a handler that ignores its context and
// hangs past its timeout and its lease. Its lease is no longer extended; a
// rebalance is not held up by it; the next owner takes the event over and
// applies it; and when the hung run finally returns, its completion is
// refused and counted as a lost lease: the effect is applied once.
func TestHungHandlerLeftBehind(t *testing.T) {
	e := newEnv(t, 1)
	release := make(chan struct{})
	var calls atomic.Int32
	router, counts := newCountingRouter(t, func(_ context.Context, ev handlers.Event) error {
		if ev.ID == "hung" && calls.Add(1) == 1 {
			<-release // ignores its context
		}
		return nil
	})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	configure := func(c *consumer.Config) { c.HandlerTimeout = 200 * time.Millisecond }
	a := e.start(options{router: router, lease: time.Second, configure: configure})
	t.Cleanup(unblock) // before the engine's stop: cleanups run last first
	e.publish(payment("hung", "acct-h", ledger.TypeCaptured, 40), payment("after", "acct-i", ledger.TypeCaptured, 2))
	waitFor(t, 20*time.Second, "the event behind finished", func() bool { return a.finished(consumer.OutcomeProcessed) == 1 })

	// A second member forces a rebalance: the first must drain, and leave
	// the hung handler behind rather than hold up the group.
	b := e.start(options{group: "ledger", router: router, lease: time.Second, configure: configure})
	t.Cleanup(unblock)
	waitFor(t, 30*time.Second, "the hung handler left behind", func() bool { return a.value("fleet_consumer_hung_handlers_total") == 1 })
	waitFor(t, 30*time.Second, "the event taken over and applied", func() bool {
		return a.finished(consumer.OutcomeProcessed)+b.finished(consumer.OutcomeProcessed) == 2
	})
	if got := a.value("fleet_store_takeovers_total") + b.value("fleet_store_takeovers_total"); got != 1 {
		t.Errorf("takeovers = %v, want 1", got)
	}

	unblock()
	waitFor(t, 20*time.Second, "the hung run's completion refused", func() bool { return a.value("fleet_lease_lost_total") == 1 })
	if got := e.balances([]string{"acct-h"})["acct-h"]; got != 40 {
		t.Errorf("balance = %d, want 40: applied exactly once", got)
	}
	if n := counts.runs["hung"]; n != 2 {
		t.Errorf("handler returned %d times for the hung event, want 2 (the hung run and the takeover)", n)
	}
}

// TestBrokerNodeRemovedAndReadded takes a broker of three out of the
// cluster mid-stream (its partitions move to the others) and adds it back
// on the same port: consumption goes on, and every event is applied once.
func TestBrokerNodeRemovedAndReadded(t *testing.T) {
	e := newEnvWith(t, 6, 3)
	router, _ := newCountingRouter(t, nil)
	en := e.start(options{router: router})
	s := newStream(6000, 100, 21)
	third := len(s.unique) / 3
	e.publish(s.unique[:third]...)
	waitFor(t, 30*time.Second, "first third finished", func() bool { return en.finished("") >= third/2 })

	node := e.cluster.LeaderFor(topic, 0)
	port := portOf(t, e.brokers, node)
	if err := e.cluster.RemoveNode(node); err != nil {
		t.Fatal(err)
	}
	e.publish(s.unique[third : 2*third]...)
	waitFor(t, 60*time.Second, "second third processed without the node", func() bool { return en.finished(consumer.OutcomeProcessed) >= 2*third })
	if _, _, err := e.cluster.AddNode(node, port); err != nil {
		t.Fatal(err)
	}
	e.cluster.ShufflePartitionLeaders()
	e.publish(s.unique[2*third:]...)
	// Redeliveries after the change count as duplicates: wait for every
	// unique event to be processed.
	waitFor(t, 60*time.Second, "everything processed", func() bool { return en.finished(consumer.OutcomeProcessed) >= len(s.unique) })
	e.checkBalances(s)
	if p := en.finished(consumer.OutcomeProcessed); p != len(s.unique) {
		t.Errorf("processed %d, want %d", p, len(s.unique))
	}
}

// TestCoordinatorMoved moves the group coordinator mid-stream: the engine
// finds the new one, rejoins, and applies every event once.
func TestCoordinatorMoved(t *testing.T) {
	e := newEnvWith(t, 4, 3)
	router, _ := newCountingRouter(t, nil)
	en := e.start(options{router: router})
	s := newStream(4000, 80, 22)
	half := len(s.unique) / 2
	e.publish(s.unique[:half]...)
	waitFor(t, 30*time.Second, "first half finished", func() bool { return en.finished("") >= half/2 })
	before := e.cluster.CoordinatorFor("ledger")
	for range 10 {
		if e.cluster.RehashCoordinators(); e.cluster.CoordinatorFor("ledger") != before {
			break
		}
	}
	if e.cluster.CoordinatorFor("ledger") == before {
		t.Fatal("the coordinator did not move")
	}
	e.publish(s.unique[half:]...)
	// Redeliveries after the change count as duplicates: wait for every
	// unique event to be processed.
	waitFor(t, 60*time.Second, "everything processed", func() bool { return en.finished(consumer.OutcomeProcessed) >= len(s.unique) })
	e.checkBalances(s)
	if p := en.finished(consumer.OutcomeProcessed); p != len(s.unique) {
		t.Errorf("processed %d, want %d", p, len(s.unique))
	}
	waitFor(t, 20*time.Second, "every offset committed through the new coordinator", func() bool {
		return e.committed("ledger", 4) == int64(len(s.unique))
	})
}

// committed sums a group's committed offsets over the topic's partitions,
// as its coordinator reports them now.
func (e *env) committed(group string, partitions int) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	fresh := &kafka.Transport{}
	defer fresh.CloseIdleConnections()
	resp, err := (&kafka.Client{Addr: kafka.TCP(e.brokers...), Transport: fresh}).OffsetFetch(ctx, &kafka.OffsetFetchRequest{
		GroupID: group, Topics: map[string][]int{topic: ids},
	})
	if err != nil || resp.Error != nil {
		return -1
	}
	var sum int64
	for _, p := range resp.Topics[topic] {
		sum += max(p.CommittedOffset, 0)
	}
	return sum
}

// TestRedisSlowPastLease freezes Redis (DEBUG SLEEP) for longer than the
// lease and than the client's read timeout while events arrive: store calls
// time out and are retried (every script is safe to repeat), the fleet
// reports the store unavailable meanwhile and runs no handler without it,
// and every event is applied once.
func TestRedisSlowPastLease(t *testing.T) {
	e := newEnvWith(t, 4, 1, "--enable-debug-command", "yes")
	router, _ := newCountingRouter(t, nil)
	en := e.start(options{router: router, lease: time.Second})
	s := newStream(3000, 60, 23)
	half := len(s.unique) / 2
	e.publish(s.unique[:half]...)
	waitFor(t, 30*time.Second, "first half finished", func() bool { return en.finished("") >= half })
	errsBefore := en.value("fleet_store_errors_total")

	// DEBUG SLEEP blocks the whole server for 4 s: past the 1 s lease and
	// the 3 s read timeout of go-redis.
	frozen := make(chan error, 1)
	go func() { frozen <- e.redis.Client(t).Do(context.Background(), "DEBUG", "SLEEP", "4").Err() }()
	probe := redis.NewClient(&redis.Options{Addr: e.redis.Addr(), ReadTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer probe.Close()
	waitFor(t, 10*time.Second, "Redis frozen", func() bool {
		select {
		case err := <-frozen:
			t.Fatalf("DEBUG SLEEP ended before Redis was seen frozen: %v", err)
		default:
		}
		return probe.Ping(context.Background()).Err() != nil
	})
	e.publish(s.unique[half:]...)
	waitFor(t, 10*time.Second, "not ready while Redis is frozen", func() bool { return en.Ready() != nil })
	if err := <-frozen; err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	// Redeliveries after the change count as duplicates: wait for every
	// unique event to be processed.
	waitFor(t, 60*time.Second, "everything processed", func() bool { return en.finished(consumer.OutcomeProcessed) >= len(s.unique) })
	waitFor(t, 10*time.Second, "ready again", func() bool { return en.Ready() == nil })
	e.checkBalances(s)
	if p := en.finished(consumer.OutcomeProcessed); p != len(s.unique) {
		t.Errorf("processed %d, want %d", p, len(s.unique))
	}
	if en.value("fleet_store_errors_total") <= errsBefore {
		t.Error("the freeze counted no store error")
	}
	t.Logf("store errors during the freeze: %v; leases lost: %v; takeovers: %v", en.value("fleet_store_errors_total")-errsBefore,
		en.value("fleet_lease_lost_total"), en.value("fleet_store_takeovers_total"))
}

// portOf is the port of broker node n (the cluster's nodes are numbered in
// the order of its listen addresses).
func portOf(t *testing.T, brokers []string, n int32) int {
	t.Helper()
	_, p, err := net.SplitHostPort(brokers[n])
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestLeaseLostCancelsHandler lets another owner take an event over while
// its handler runs (its lease deadline is moved into the past and another
// store claims it, as a worker that saw it expire would): the heartbeat
// finds the lease lost and cancels the handler's context, the loss is
// counted, and when the other owner completes the event the engine
// acknowledges it as a duplicate. The effect is applied once, by the owner
// that held the lease.
func TestLeaseLostCancelsHandler(t *testing.T) {
	e := newEnv(t, 1)
	started := make(chan dedupe.Claim, 1)
	var cancelled atomic.Value
	router, _ := newCountingRouter(t, func(ctx context.Context, ev handlers.Event) error {
		if ev.ID != "lost" {
			return nil
		}
		started <- dedupe.NewClaim("ledger", &ev)
		<-ctx.Done()
		cancelled.Store(ctx.Err())
		return ctx.Err()
	})
	en := e.start(options{router: router, lease: time.Second})
	e.publish(payment("lost", "acct-l", ledger.TypeCaptured, 40))
	claim := <-started
	key := claim.Key

	ctx := context.Background()
	if err := e.rdb.HSet(ctx, key, "l", 1).Err(); err != nil {
		t.Fatal(err)
	}
	other, err := dedupe.NewRedis(e.rdb, dedupe.Config{Lease: 10 * time.Second, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	res, err := other.ClaimBatch(ctx, []dedupe.Claim{claim})
	if err != nil || res[0].Outcome != dedupe.Acquired || !res[0].TakenOver || res[0].Lease.Fence != 2 {
		t.Fatalf("takeover: %+v, %v", res, err)
	}
	waitFor(t, 10*time.Second, "the handler's context cancelled", func() bool { return cancelled.Load() != nil })
	waitFor(t, 10*time.Second, "the loss counted", func() bool { return en.value("fleet_lease_lost_total") == 1 })

	errs, err := other.CompleteBatch(ctx, []dedupe.Completion{{Lease: res[0].Lease,
		Effects: []handlers.Op{{Kind: handlers.OpIncrBy, Key: ledger.BalanceKey("acct-l"), Delta: 40}}}})
	if err != nil || errs[0] != nil {
		t.Fatalf("the other owner's completion: %v, %v", errs, err)
	}
	waitFor(t, 20*time.Second, "acknowledged as a duplicate", func() bool { return en.finished(consumer.OutcomeDuplicate) == 1 })
	if got := e.balances([]string{"acct-l"})["acct-l"]; got != 40 {
		t.Errorf("balance = %d, want 40", got)
	}
	if p := en.finished(consumer.OutcomeProcessed); p != 0 {
		t.Errorf("processed %d: the run that lost its lease must not complete", p)
	}
}

// TestDeadLetterWriteRefused makes the broker refuse writes to the
// dead-letter topic for a while: the engine retries until one is
// acknowledged, counts the refusals, and commits neither the poison's offset
// nor any after it before the write is acknowledged.
func TestDeadLetterWriteRefused(t *testing.T) {
	e := newEnv(t, 1)
	var refused atomic.Int32
	var allow atomic.Bool
	e.cluster.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		r := req.(*kmsg.ProduceRequest)
		if len(r.Topics) == 0 || r.Topics[0].Topic != consumer.DeadLetterTopic(topic) || allow.Load() {
			return nil, nil, false
		}
		refused.Add(1)
		resp := r.ResponseKind().(*kmsg.ProduceResponse)
		for _, rt := range r.Topics {
			t := kmsg.NewProduceResponseTopic()
			t.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				p := kmsg.NewProduceResponseTopicPartition()
				p.Partition = rp.Partition
				p.ErrorCode = kerr.TopicAuthorizationFailed.Code
				t.Partitions = append(t.Partitions, p)
			}
			resp.Topics = append(resp.Topics, t)
		}
		return resp, nil, true
	})
	router, _ := newCountingRouter(t, nil)
	en := e.start(options{router: router})
	e.publish(payment("ok-1", "acct-1", ledger.TypeCaptured, 5))
	waitFor(t, 20*time.Second, "first event committed", func() bool { return e.committed("ledger", 1) == 1 })
	e.publish(payment("u-1", "acct-1", "payment.voided", 5), payment("ok-2", "acct-2", ledger.TypeCaptured, 7))
	waitFor(t, 30*time.Second, "three refused writes", func() bool { return refused.Load() >= 3 })
	waitFor(t, 10*time.Second, "the event behind the poison processed", func() bool { return en.finished(consumer.OutcomeProcessed) == 2 })
	if got := e.committed("ledger", 1); got != 1 {
		t.Errorf("committed offset %d while the dead letter is refused, want 1 (before the poison)", got)
	}
	if en.finished(consumer.OutcomeDeadLettered) != 0 {
		t.Error("dead-lettered before the write was acknowledged")
	}
	allow.Store(true)
	waitFor(t, 30*time.Second, "the dead letter written", func() bool { return en.finished(consumer.OutcomeDeadLettered) == 1 })
	if got, want := en.value("fleet_consumer_publish_errors_total"), float64(refused.Load()); got != want {
		t.Errorf("publish errors = %v, want %v (one per refused write)", got, want)
	}
	waitFor(t, 20*time.Second, "everything committed", func() bool { return e.committed("ledger", 1) == 3 })
	e.dlq(1)
}
