package cli

import (
	"context"
	"testing"
	"time"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/demo"
	"github.com/fleetworks/fleet/internal/redistest"
)

// TestRedisCluster runs two fleet processes on a three-master Redis Cluster
// (--redis-mode cluster): an event's record shares the slot of its
// account's balance, a slot holding records and balances moves to another
// master mid-stream (ASK, then MOVED), and every balance comes out exact.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Redis Cluster")
	}
	const partitions = 4
	rc := redistest.StartCluster(t, 3)
	c := newKafka(t, partitions, nil)
	c.rdb, c.redisArgs = rc.Client(t), []string{"--redis", rc.URL(), "--redis-mode", "cluster"}
	ctx := context.Background()

	msgs, want := ledgerStream(t, 6000, 40, 0.2, 41)
	first := msgs[0]
	acct, id := string(first.Key), demo.Header(first, consumer.HeaderID)
	record := dedupe.Key("ledger-e2e", acct, demo.Source, id)
	slot := c.rdb.ClusterKeySlot(ctx, record).Val()
	if balance := c.rdb.ClusterKeySlot(ctx, ledger.BalanceKey(acct)).Val(); balance != slot {
		t.Fatalf("record %s in slot %d, balance %s in slot %d: they must share one", record, slot, ledger.BalanceKey(acct), balance)
	}

	half := len(msgs) / 2
	c.publish(msgs[:half])
	c.startWorker("a")
	c.startWorker("b")
	c.waitCommitted(partitions, int64(half)/2, 60*time.Second)
	before := rc.Owner(int(slot))
	after := rc.MoveSlot(int(slot))
	t.Logf("slot %d (account %s) moved from %s to %s mid-stream", slot, acct, before, after)
	c.publish(msgs[half:])
	c.waitCommitted(partitions, int64(c.sent), 90*time.Second)
	c.checkBalances(want)
	if got, err := recordState(ctx, c.rdb, record); err != nil || got != dedupe.StateDone {
		t.Errorf("record %s after the move: %q, %v", record, got, err)
	}
}

// TestRedisSentinel runs fleet with --redis-mode sentinel, finding the
// master through a Sentinel: every balance is exact.
func TestRedisSentinel(t *testing.T) {
	c := newCluster(t, 2)
	sentinel := redistest.StartSentinel(t, c.redis, "fleetmaster")
	c.redisArgs = []string{"--redis", sentinel.URL(), "--redis-mode", "sentinel"}
	msgs, want := ledgerStream(t, 800, 20, 0.2, 42)
	c.publish(msgs)
	c.startWorker("a")
	c.waitCommitted(2, int64(c.sent), 60*time.Second)
	c.checkBalances(want)
}
