package dedupe_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/redistest"
)

// attackCluster starts a three-master cluster and a loaded store on it.
func attackCluster(t *testing.T) (*redistest.Cluster, *redis.ClusterClient, *dedupe.Redis) {
	t.Helper()
	cl := redistest.StartCluster(t, 3)
	c := cl.Client(t)
	return cl, c, loadedStore(t, c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
}

// beginMove puts slot in the state of a reshard in progress, the way
// redis-cli --cluster reshard (and redistest.MoveSlot) does before the
// first MIGRATE: IMPORTING on the target, MIGRATING on the source. No key
// has moved yet. It returns a function that finishes the move (migrating
// every key, then SETSLOT NODE everywhere).
func beginMove(t *testing.T, cl *redistest.Cluster, slot int) (finish func(), migrate func(keys ...string)) {
	t.Helper()
	ctx := context.Background()
	clients := map[string]*redis.Client{}
	ids := map[string]string{}
	for _, s := range cl.Nodes {
		rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		id, err := rdb.Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatal(err)
		}
		clients[s.Addr()], ids[s.Addr()] = rdb, id
	}
	from := cl.Owner(slot)
	var to string
	for _, s := range cl.Nodes {
		if s.Addr() != from {
			to = s.Addr()
			break
		}
	}
	src, dst := clients[from], clients[to]
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from]).Err())
	must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[to]).Err())
	host, port, _ := strings.Cut(to, ":")
	migrate = func(keys ...string) {
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		must(src.Do(ctx, args...).Err())
	}
	return func() {
		for {
			keys, err := src.ClusterGetKeysInSlot(ctx, slot, 100).Result()
			must(err)
			if len(keys) == 0 {
				break
			}
			args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
			for _, k := range keys {
				args = append(args, k)
			}
			must(src.Do(ctx, args...).Err())
		}
		for _, rdb := range clients {
			must(rdb.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", ids[to]).Err())
		}
		time.Sleep(200 * time.Millisecond)
	}, migrate
}

// TestAttackClusterReshardDoneLooksNew: an event is done (packed into its
// aggregate's bucket). A reshard of its slot begins (IMPORTING/MIGRATING,
// no key moved yet). The event is delivered again: its record key no
// longer exists on the source (the completion deleted the hash), so the
// EVALSHA is redirected (ASK) to the importing node, where the bucket,
// an undeclared key, is not yet: the claim acquires, and the event runs
// twice. With done records of their own, the record key was on the source,
// which answered Duplicate.
func TestAttackClusterReshardDoneLooksNew(t *testing.T) {
	cl, c, s := attackCluster(t)
	ctx := context.Background()
	key := dedupe.Key("ledger", "acct-reshard", "payments-api", uuid())
	packedRun(t, s, []string{key}, "fp", []byte("paid"))
	if r := packedClaims(t, s, []string{key}, "fp")[0]; r.Outcome != dedupe.Duplicate {
		t.Fatalf("before the reshard: %+v", r)
	}
	slot, err := c.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	beginMove(t, cl, int(slot))
	res, err := s.ClaimBatch(ctx, []dedupe.Claim{{Key: key, Fingerprint: "fp"}})
	if err != nil {
		t.Fatalf("a done event delivered again while its slot is being resharded: the claim batch fails: %v", err)
	}
	r := res[0]
	if r.Outcome != dedupe.Duplicate {
		t.Fatalf("a done event delivered again while its slot is being resharded: %v (fence %d, attempts %d), want Duplicate: it runs twice",
			r.Outcome, r.Lease.Fence, r.Attempts)
	}
}

// TestAttackClusterReshardCompletionLosesRecord: an event is claimed (its
// record, a hash of its own, is on the source). A reshard of the slot
// begins. The completion runs on the source: it applies the effect,
// deletes the record, and then fails on the bucket (an undeclared key the
// source does not hold, in a migrating slot), after its writes: the
// record is gone and the effect applied. Once the slot has moved, the
// event is claimed again and runs again: the effect twice.
func TestAttackClusterReshardCompletionLosesRecord(t *testing.T) {
	cl, c, s := attackCluster(t)
	ctx := context.Background()
	agg := "acct-reshard-2"
	key := dedupe.Key("ledger", agg, "payments-api", uuid())
	balance := "ledger:{" + agg + "}:balance"
	if err := c.Set(ctx, balance, 0, 0).Err(); err != nil { // exists on the source: the EVALSHA is served there
		t.Fatal(err)
	}
	r := packedClaims(t, s, []string{key}, "fp")[0]
	if r.Outcome != dedupe.Acquired {
		t.Fatal(r)
	}
	slot, err := c.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	finish, _ := beginMove(t, cl, int(slot))
	errs, err := s.CompleteBatch(ctx, []dedupe.Completion{{Lease: r.Lease,
		Effects: []handlers.Op{{Kind: handlers.OpIncrBy, Key: balance, Delta: 10}}}})
	t.Logf("completion during the reshard: %v %v", errs, err)
	finish()
	bal, _ := c.Get(ctx, balance).Int64()
	again := packedClaims(t, s, []string{key}, "fp")[0]
	t.Logf("after the reshard: balance %d, claim %v", bal, again.Outcome)
	if again.Outcome == dedupe.Acquired && bal == 10 {
		errs, _ := s.CompleteBatch(ctx, []dedupe.Completion{{Lease: again.Lease,
			Effects: []handlers.Op{{Kind: handlers.OpIncrBy, Key: balance, Delta: 10}}}})
		bal, _ = c.Get(ctx, balance).Int64()
		t.Fatalf("the completion applied its effect and lost the record (reply %v, %v); the event ran again (%v): balance %d, want 10",
			errs, err, errs, bal)
	}
}

// TestAttackClusterRecordsNotPacked: on a Redis Cluster a done record
// stays a hash of its own (its buckets would be keys the script does not
// declare, which a migrating slot does not keep whole).
func TestAttackClusterRecordsNotPacked(t *testing.T) {
	_, c, s := attackCluster(t)
	ctx := context.Background()
	key := dedupe.Key("ledger", "acct-reshard-3", "payments-api", uuid())
	packedRun(t, s, []string{key}, "fp", nil)
	if st, err := c.HGet(ctx, key, "s").Result(); err != nil || st != "d" {
		t.Fatalf("a done record on a cluster: state %q, %v; want a done hash of its own", st, err)
	}
	if n, _ := c.Exists(ctx, dedupe.SliceKey).Result(); n != 0 {
		t.Fatalf("%s set on a cluster", dedupe.SliceKey)
	}
}

// TestAttackClusterReshardShortRetention: with a retention no longer
// than the slice (a retention lowered since the slice was set), a claim
// reads one slice or two, and the EXISTS of several keys that fails the
// claim above is not sent: the claim of a done event, redirected to the
// importing node before its bucket moved, acquires.
func TestAttackClusterReshardShortRetention(t *testing.T) {
	cl, c, first := attackCluster(t) // retention 1h: slice 30 min
	_ = first
	s := loadedStore(t, c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: 10 * time.Minute})
	ctx := context.Background()
	key := dedupe.Key("ledger", "acct-reshard-4", "payments-api", uuid())
	packedRun(t, s, []string{key}, "fp", nil)
	slot, _ := c.ClusterKeySlot(ctx, key).Result()
	beginMove(t, cl, int(slot))
	res, err := s.ClaimBatch(ctx, []dedupe.Claim{{Key: key, Fingerprint: "fp"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.Outcome != dedupe.Duplicate {
		t.Fatalf("a done event delivered again while its slot is being resharded: %v (fence %d, attempts %d), want Duplicate: it runs twice",
			r.Outcome, r.Lease.Fence, r.Attempts)
	}
}

// TestAttackClusterOddAggregates: on a cluster (no reshard), events of
// odd aggregates are packed in their slot, and answer as done records.
func TestAttackClusterOddAggregates(t *testing.T) {
	_, c, s := attackCluster(t)
	ctx := context.Background()
	for _, a := range attackAggregates {
		keys := make([]string, 200)
		for i := range keys {
			keys[i] = dedupe.Key("g", a, "src", uuid())
		}
		packedRun(t, s, keys, "fp", []byte("ok"))
		for i, r := range packedClaims(t, s, keys, "fp") {
			if r.Outcome != dedupe.Duplicate || string(r.Result) != "ok" {
				t.Fatalf("aggregate %q, claim %d: %+v", a, i, r)
			}
		}
		if ok, err := s.Forget(ctx, keys[150]); !ok || err != nil {
			t.Fatalf("aggregate %q: forget %v %v", a, ok, err)
		}
		if r := packedClaims(t, s, keys[150:151], "fp")[0]; r.Outcome != dedupe.Acquired {
			t.Fatalf("aggregate %q after forget: %v", a, r.Outcome)
		}
	}
	_ = c
}
