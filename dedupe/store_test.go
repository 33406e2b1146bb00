package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/dedupe/dedupetest"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/redistest"
)

func TestMemoryContract(t *testing.T) {
	dedupetest.Run(t, func(t *testing.T, cfg dedupe.Config) dedupetest.Harness {
		var mu sync.Mutex
		now := time.Unix(1_700_000_000, 0)
		clock := func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			return now
		}
		m := dedupe.NewMemory(cfg, clock)
		return dedupetest.Harness{
			Store: m,
			Admin: m,
			Int:   m.Int,
			HGet: func(k, f string) string {
				v, _ := m.HGet(k, f)
				return v
			},
			SetString: func(k, v string) {
				// Stage it through the store itself, as any writer would,
				// for an event of k's aggregate.
				tag, _ := handlers.HashTag(k)
				setup := dedupe.RecordKey(tag, handlers.IdempotencyKey("setup", "setup", k+"="+v))
				r, _ := m.ClaimBatch(context.Background(), []dedupe.Claim{{Key: setup, Fingerprint: "x"}})
				_, _ = m.CompleteBatch(context.Background(), []dedupe.Completion{{Lease: r[0].Lease,
					Effects: []handlers.Op{{Kind: handlers.OpSet, Key: k, Value: v}}}})
			},
			ExpireLease: func(string) {
				mu.Lock()
				now = now.Add(cfg.Lease + time.Millisecond)
				mu.Unlock()
			},
		}
	})
}

// loadedStore returns a store on c with its scripts loaded.
func loadedStore(t *testing.T, c redis.UniversalClient, cfg dedupe.Config) *dedupe.Redis {
	t.Helper()
	s, err := dedupe.NewRedis(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// newRedisStore starts a private redis-server and returns a loaded store on
// it and a client.
func newRedisStore(t *testing.T, cfg dedupe.Config) (*dedupe.Redis, *redis.Client) {
	t.Helper()
	c := redistest.Start(t).Client(t)
	return loadedStore(t, c, cfg), c
}

func redisHarness(t *testing.T, c redis.UniversalClient, cfg dedupe.Config) dedupetest.Harness {
	s := loadedStore(t, c, cfg)
	ctx := context.Background()
	return dedupetest.Harness{
		Store: s,
		Admin: s,
		Int: func(k string) int64 {
			n, _ := c.Get(ctx, k).Int64()
			return n
		},
		HGet: func(k, f string) string { return c.HGet(ctx, k, f).Val() },
		SetString: func(k, v string) {
			if err := c.Set(ctx, k, v, 0).Err(); err != nil {
				t.Fatal(err)
			}
		},
		// The lease deadline is a field set from the Redis clock: wait until
		// the Redis clock passes it.
		ExpireLease: func(k string) {
			deadline, err := c.HGet(ctx, k, "l").Int64()
			if err != nil {
				t.Fatalf("lease deadline of %s: %v", k, err)
			}
			for {
				now, err := c.Time(ctx).Result()
				if err != nil {
					t.Fatal(err)
				}
				if now.UnixMilli() > deadline {
					return
				}
				time.Sleep(time.Duration(deadline-now.UnixMilli()+1) * time.Millisecond)
			}
		},
	}
}

func TestRedisContract(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	dedupetest.Run(t, func(t *testing.T, cfg dedupe.Config) dedupetest.Harness {
		if err := c.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		return redisHarness(t, c, cfg)
	})
}

// TestRedisContractPacked runs the suite on a store that packs done
// records (packed.go).
func TestRedisContractPacked(t *testing.T) {
	c := redistest.Start(t).Client(t)
	dedupetest.Run(t, func(t *testing.T, cfg dedupe.Config) dedupetest.Harness {
		if err := c.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		cfg.PackDoneRecords = true
		return redisHarness(t, c, cfg)
	})
}

// TestRedisClusterContract runs the suite on a three-master Redis Cluster.
func TestRedisClusterContract(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster")
	}
	cl := redistest.StartCluster(t, 3)
	c := cl.Client(t)
	dedupetest.Run(t, func(t *testing.T, cfg dedupe.Config) dedupetest.Harness {
		err := c.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
			return n.FlushAll(ctx).Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		return redisHarness(t, c, cfg)
	})
}

// TestMiniredisContract runs the suite on the embedded Redis of fleet dev.
func TestMiniredisContract(t *testing.T) {
	dedupetest.Run(t, func(t *testing.T, cfg dedupe.Config) dedupetest.Harness {
		mr := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { c.Close() })
		h := redisHarness(t, c, cfg)
		h.ExpireLease = func(string) {
			mr.SetTime(time.Now().Add(cfg.Lease + time.Second))
		}
		h.LooseIntegers = true
		return h
	})
}

// TestMiniredisContractPacked runs the suite on the embedded Redis of
// fleet dev, packing done records.
func TestMiniredisContractPacked(t *testing.T) {
	dedupetest.Run(t, func(t *testing.T, cfg dedupe.Config) dedupetest.Harness {
		mr := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		t.Cleanup(func() { c.Close() })
		cfg.PackDoneRecords = true
		h := redisHarness(t, c, cfg)
		h.ExpireLease = func(string) {
			mr.SetTime(time.Now().Add(cfg.Lease + time.Second))
		}
		h.LooseIntegers = true
		return h
	})
}

// TestRedisScriptFlush flushes the script cache between every step of a run:
// each call reloads the scripts and goes on (as after a restart or failover).
func TestRedisScriptFlush(t *testing.T) {
	s, c := newRedisStore(t, dedupe.Config{Lease: time.Second, Retention: time.Hour})
	ctx := context.Background()
	flush := func() {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	key := func(id string) string { return dedupe.Key("g", "acct", "src", id) }
	claims := []dedupe.Claim{{Key: key("a"), Fingerprint: "x"}, {Key: key("b"), Fingerprint: "x"}, {Key: key("c"), Fingerprint: "x"}}
	flush()
	res, err := s.ClaimBatch(ctx, claims)
	if err != nil {
		t.Fatalf("claim after flush: %v", err)
	}
	leases := make([]dedupe.Lease, len(res))
	comps := make([]dedupe.Completion, len(res))
	for i, r := range res {
		if r.Outcome != dedupe.Acquired {
			t.Fatalf("claim %d: %v", i, r.Outcome)
		}
		leases[i] = r.Lease
		comps[i] = dedupe.Completion{Lease: r.Lease, Effects: []handlers.Op{{Kind: handlers.OpIncrBy, Key: "{acct}total", Delta: 1}}}
	}
	flush()
	if errs, err := s.ExtendBatch(ctx, leases); err != nil || errs[0] != nil {
		t.Fatalf("extend after flush: %v %v", err, errs)
	}
	flush()
	if err := s.Release(ctx, leases[2]); err != nil {
		t.Fatalf("release after flush: %v", err)
	}
	flush()
	errs, err := s.CompleteBatch(ctx, comps[:2])
	if err != nil || errs[0] != nil || errs[1] != nil {
		t.Fatalf("complete after flush: %v %v", err, errs)
	}
	if n, _ := c.Get(ctx, "{acct}total").Int64(); n != 2 {
		t.Fatalf("total = %d, want 2", n)
	}
	before := s.RoundTrips()
	if _, err := s.ClaimBatch(ctx, claims); err != nil {
		t.Fatal(err)
	}
	if trips := s.RoundTrips() - before; trips != 1 {
		t.Fatalf("a batch of %d claims took %d round trips, want 1", len(claims), trips)
	}
}

// TestRedisBatchCalls checks the batch calls beyond one script call: a batch
// larger than a call's cap is still one round trip and answers in order, and
// a record key holding something else fails only its own item.
func TestRedisBatchCalls(t *testing.T) {
	s, c := newRedisStore(t, dedupe.Config{Lease: time.Minute, Retention: time.Hour})
	ctx := context.Background()
	claims := make([]dedupe.Claim, 300)
	for i := range claims {
		claims[i] = dedupe.Claim{Key: dedupe.Key("g", "acct", "src", fmt.Sprintf("k%d", i%290)), Fingerprint: "fp"}
	}
	before := s.RoundTrips()
	res, err := s.ClaimBatch(ctx, claims)
	if err != nil {
		t.Fatal(err)
	}
	if trips := s.RoundTrips() - before; trips != 1 {
		t.Fatalf("%d claims took %d round trips, want 1", len(claims), trips)
	}
	comps := make([]dedupe.Completion, 0, len(claims))
	for i, r := range res {
		want := dedupe.Acquired
		if i >= 290 {
			want = dedupe.Busy // the same key as item i-290, claimed before it in this batch
		}
		if r.Outcome != want {
			t.Fatalf("claim %d: %v, want %v", i, r.Outcome, want)
		}
		if r.Outcome == dedupe.Acquired {
			comps = append(comps, dedupe.Completion{Lease: r.Lease, Effects: []handlers.Op{{Kind: handlers.OpIncrBy, Key: "{acct}total", Delta: int64(i)}}})
		}
	}
	// Item 7's record is overwritten with a string behind the store's back.
	if err := c.Set(ctx, comps[7].Lease.Key, "not a record", 0).Err(); err != nil {
		t.Fatal(err)
	}
	errs, err := s.CompleteBatch(ctx, comps)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for i, e := range errs {
		switch {
		case i == 7 && !errors.Is(e, dedupe.ErrInvalid):
			t.Fatalf("completion of a clobbered record: %v, want ErrInvalid", e)
		case i != 7 && e != nil:
			t.Fatalf("completion %d: %v", i, e)
		case i != 7:
			want += int64(i)
		}
	}
	if got, _ := c.Get(ctx, "{acct}total").Int64(); got != want {
		t.Fatalf("total = %d, want %d", got, want)
	}
	res, err = s.ClaimBatch(ctx, claims[:10])
	if err != nil {
		t.Fatalf("a clobbered record failed its whole batch: %v", err)
	}
	for i, r := range res {
		if (i == 7) != (r.Outcome == dedupe.Invalid) || (i == 7 && r.Reason == "") {
			t.Fatalf("claim %d after item 7's record was clobbered: %+v, want Invalid for 7 alone", i, r)
		}
	}
}

// TestRedisRecordLayout checks the record key (a contract: a change would
// lose every record of a running fleet), the bucket a done record is packed
// into and what it keeps, and its time to live.
func TestRedisRecordLayout(t *testing.T) {
	s, c := newRedisStore(t, dedupe.Config{Lease: time.Second, Retention: time.Hour, PackDoneRecords: true})
	ctx := context.Background()
	key := dedupe.Key("ledger", "acct-123", "payments-api", "4f6c1d2e-8a9b-4c3d-9e0f-112233445566")
	if key != "fleet:idem:{acct-123}:SaVXVzEnuvP_ARWBzQmjfA" {
		t.Fatalf("key layout changed: %s", key)
	}
	res, _ := s.ClaimBatch(ctx, []dedupe.Claim{{Key: key, Fingerprint: "0123456789abcdef"}})
	if fields, _ := c.HGetAll(ctx, key).Result(); fields["s"] != "p" || fields["o"] != res[0].Lease.Owner {
		t.Fatalf("record in process %v", fields)
	}
	if errs, err := s.CompleteBatch(ctx, []dedupe.Completion{{Lease: res[0].Lease}}); err != nil || errs[0] != nil {
		t.Fatal(err, errs)
	}
	if n, _ := c.Exists(ctx, key).Result(); n != 0 {
		t.Fatalf("the done record is still a hash of its own")
	}
	slice, err := c.Get(ctx, dedupe.SliceKey).Int64()
	if err != nil || slice != (30*time.Minute).Milliseconds() {
		t.Fatalf("%s = %d, %v: want half the retention", dedupe.SliceKey, slice, err)
	}
	buckets, _ := c.Keys(ctx, "fleet:idem:{acct-123}:~*").Result()
	if len(buckets) != 1 || !regexp.MustCompile(`^fleet:idem:\{acct-123\}:~\d+$`).MatchString(buckets[0]) {
		t.Fatalf("buckets %q", buckets)
	}
	fields, _ := c.HGetAll(ctx, buckets[0]).Result()
	// '#', the fingerprint's 8 bytes, fence and attempts.
	if len(fields) != 1 || fields["SaVXVzEnuvP_ARWBzQmjfA"] != "#\x01\x23\x45\x67\x89\xab\xcd\xef1 1" {
		t.Fatalf("bucket %v", fields)
	}
	ttl, _ := c.PTTL(ctx, buckets[0]).Result()
	if ttl <= time.Hour || ttl > time.Hour+30*time.Minute {
		t.Fatalf("bucket TTL %v, want (1h, 1h30m]", ttl)
	}
	if enc, _ := c.ObjectEncoding(ctx, buckets[0]).Result(); enc != "listpack" {
		t.Fatalf("bucket encoding %s", enc)
	}
}

// TestRedisMinReplicas completes events on a master with one replica: with
// MinReplicas 1 a completion succeeds once the replica holds it, fails with
// ErrNotReplicated while the replica is frozen (the master applied it, the
// replica did not), and succeeds when repeated after the replica is back,
// without applying its effects twice. A duplicate answer, which lets the
// caller commit, waits for the replica too: the done record it found may
// exist on the master alone.
func TestRedisMinReplicas(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	c := master.Client(t)
	cfg := dedupe.Config{Lease: time.Minute, Retention: time.Hour, MinReplicas: 1, ReplicaTimeout: 2 * time.Second}
	s := loadedStore(t, c, cfg)
	ctx := context.Background()
	if n, err := s.Replicas(ctx); err != nil || n != 1 {
		t.Fatalf("replicas: %d, %v", n, err)
	}
	claimOf := func(id string) dedupe.Claim {
		return dedupe.Claim{Key: dedupe.Key("g", "acct", "src", id), Fingerprint: "fp"}
	}
	claim := func(id string) dedupe.Completion {
		res, err := s.ClaimBatch(ctx, []dedupe.Claim{claimOf(id)})
		if err != nil || res[0].Outcome != dedupe.Acquired {
			t.Fatalf("claim %s: %+v, %v", id, res, err)
		}
		return dedupe.Completion{Lease: res[0].Lease, Effects: []handlers.Op{{Kind: handlers.OpIncrBy, Key: "{acct}n", Delta: 1}}}
	}
	if errs, err := s.CompleteBatch(ctx, []dedupe.Completion{claim("a")}); err != nil || errs[0] != nil {
		t.Fatalf("completion with the replica up: %v, %v", errs, err)
	}

	comp := claim("b")
	replica.Pause()
	_, err := s.CompleteBatch(ctx, []dedupe.Completion{comp})
	var rerr *dedupe.ReplicationError
	if !errors.Is(err, dedupe.ErrNotReplicated) || !errors.As(err, &rerr) || rerr.Want != 1 || rerr.Got != 0 {
		t.Fatalf("completion with the replica frozen: %v, want ErrNotReplicated (0 of 1)", err)
	}
	if _, err := s.ClaimBatch(ctx, []dedupe.Claim{claimOf("b")}); !errors.Is(err, dedupe.ErrNotReplicated) {
		t.Fatalf("a duplicate of a completion the replica lacks: %v, want ErrNotReplicated", err)
	}
	replica.Resume()
	errs, err := s.CompleteBatch(ctx, []dedupe.Completion{comp})
	if err != nil || errs[0] != nil {
		t.Fatalf("completion repeated with the replica back: %v, %v", errs, err)
	}
	if res, err := s.ClaimBatch(ctx, []dedupe.Claim{claimOf("b")}); err != nil || res[0].Outcome != dedupe.Duplicate {
		t.Fatalf("the duplicate with the replica back: %+v, %v", res, err)
	}
	if n, _ := c.Get(ctx, "{acct}n").Int64(); n != 2 {
		t.Fatalf("counter %d, want 2: each completion applied once", n)
	}
	if n, _ := replica.Client(t).Get(ctx, "{acct}n").Int64(); n != 2 {
		t.Fatalf("replica's counter %d, want 2", n)
	}

	// Without MinReplicas the master alone answers, frozen replica or not.
	loose := loadedStore(t, c, dedupe.Config{Lease: time.Minute, Retention: time.Hour})
	replica.Pause()
	defer replica.Resume()
	res, err := loose.ClaimBatch(ctx, []dedupe.Claim{claimOf("c")})
	if err != nil {
		t.Fatal(err)
	}
	if errs, err := loose.CompleteBatch(ctx, []dedupe.Completion{{Lease: res[0].Lease}}); err != nil || errs[0] != nil {
		t.Fatalf("completion without MinReplicas: %v, %v", errs, err)
	}
}
