package dedupe_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/dedupe"
)

// attackMini starts a miniredis whose TTLs follow its clock, set to at.
func attackMini(t *testing.T, at time.Time) (*miniredis.Miniredis, *redis.Client) {
	t.Helper()
	mr := miniredis.RunT(t)
	mr.ClockTTL(true)
	mr.SetTime(at)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return mr, c
}

// sliceStart returns a time that is the start of a slice of length
// slice, some days from now.
func sliceStart(slice time.Duration) time.Time {
	ms := slice.Milliseconds()
	now := time.Now().Add(72 * time.Hour).UnixMilli()
	return time.UnixMilli((now/ms + 1) * ms)
}

// TestAttackShorterRetentionCutsBucket: two stores share a Redis with
// different retentions (two consumer groups of one topic, each with its
// --retention; or a rolling restart that changes --retention). The long
// one (48 h) completes event X; the short one (1 h) then completes event
// Y of the same aggregate: both land in the same bucket, and Y's PEXPIREAT
// moves the bucket's expiry down to the end of the slice plus 1 h. Two
// hours later, X (done under a 48 h retention) is gone: delivered again,
// it runs twice. On a real redis-server the bucket's TTL shows it.
func TestAttackShorterRetentionCutsBucket(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, c redis.UniversalClient, advance func(time.Duration)) {
		long := loadedStore(t, c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: 48 * time.Hour}) // sets the slice: 24 h
		short := loadedStore(t, c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
		x := dedupe.Key("payments", "acct-1", "payments-api", uuid())
		y := dedupe.Key("audit", "acct-1", "payments-api", uuid())
		packedRun(t, long, []string{x}, "fp", nil)
		packedRun(t, short, []string{y}, "fp", nil)
		keys, _ := c.Keys(ctx, "fleet:idem:{acct-1}:~*").Result()
		for _, k := range keys {
			ttl, _ := c.PTTL(ctx, k).Result()
			t.Logf("bucket %s: TTL %v", k, ttl)
			if ttl < 48*time.Hour {
				defer t.Errorf("bucket %s holds a record done under a 48h retention, and expires in %v", k, ttl)
			}
		}
		if advance == nil {
			return
		}
		advance(26 * time.Hour) // at most a slice (24 h) + 1 h + slack
		if r := packedClaims(t, long, []string{x}, "fp")[0]; r.Outcome != dedupe.Duplicate {
			t.Errorf("event done 26 h ago under a 48 h retention, delivered again: %v: it runs twice", r.Outcome)
		}
	}
	t.Run("redis", func(t *testing.T) {
		_, c := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: 48 * time.Hour})
		check(t, c, nil)
	})
	t.Run("miniredis", func(t *testing.T) {
		at := sliceStart(24 * time.Hour).Add(time.Minute)
		mr, c := attackMini(t, at)
		check(t, c, func(d time.Duration) { at = at.Add(d); mr.SetTime(at) })
	})
}

// TestAttackClockStepsBack: the Redis clock steps back a second across a
// slice boundary (NTP, or a failover to a replica whose clock is a second
// behind): the record done just after the boundary is in a slice newer
// than any a lookup reads, and the event runs again. A record of its own
// (the layout before) and Memory are found whatever the clock.
func TestAttackClockStepsBack(t *testing.T) {
	at := sliceStart(30 * time.Minute).Add(200 * time.Millisecond)
	mr, c := attackMini(t, at)
	s := loadedStore(t, c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
	key := dedupe.Key("ledger", "acct-1", "payments-api", uuid())
	packedRun(t, s, []string{key}, "fp", nil)
	mr.SetTime(at.Add(-time.Second))
	if r := packedClaims(t, s, []string{key}, "fp")[0]; r.Outcome != dedupe.Duplicate {
		t.Fatalf("a done event, the clock a second back: %v (fence %d): it runs twice", r.Outcome, r.Lease.Fence)
	}
}

// TestAttackAdminRetention: `fleet keys get` and `fleet keys forget` open
// the store with dedupe.DefaultConfig() (internal/cli/keys.go openAdmin):
// a 24 h retention, whatever the workers' --retention. Workers with a
// 72 h retention (slice 36 h) did an event 30 h ago, in the slice before:
// the workers answer Duplicate, the admin looks back 24 h, into the
// current slice only: Inspect says there is no record, and Forget says
// there is nothing to forget, and forgets nothing.
func TestAttackAdminRetention(t *testing.T) {
	slice := 36 * time.Hour
	at := sliceStart(slice).Add(-time.Hour) // an hour before a boundary
	mr, c := attackMini(t, at)
	workers := loadedStore(t, c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: 72 * time.Hour})
	admin, err := dedupe.NewRedis(c, dedupe.DefaultConfig()) // as openAdmin
	if err != nil {
		t.Fatal(err)
	}
	key := dedupe.Key("ledger", "acct-1", "payments-api", uuid())
	packedRun(t, workers, []string{key}, "fp", []byte("paid"))
	mr.SetTime(at.Add(30 * time.Hour))
	ctx := context.Background()
	if r := packedClaims(t, workers, []string{key}, "fp")[0]; r.Outcome != dedupe.Duplicate {
		t.Fatalf("workers: %v", r.Outcome)
	}
	rec, err := admin.Inspect(ctx, key)
	ok, ferr := admin.Forget(ctx, key)
	after := packedClaims(t, workers, []string{key}, "fp")[0]
	if err != nil || !ok || after.Outcome == dedupe.Duplicate {
		t.Fatalf("fleet keys get: %+v, %v; fleet keys forget: %v, %v; the workers' next claim: %v", rec, err, ok, ferr, after.Outcome)
	}
}

// TestAttackAdminSetsSlice: `fleet keys get` run before any worker (a new
// installation, a staging Redis) sets the slice to half the admin's 24 h,
// whatever the workers' retention: workers with a 10-minute retention
// then keep every done record up to 12 h 10 min, 70 times as long.
func TestAttackAdminSetsSlice(t *testing.T) {
	_, c := attackMini(t, time.Now())
	admin, _ := dedupe.NewRedis(c, dedupe.DefaultConfig())
	_, _ = admin.Inspect(context.Background(), dedupe.Key("g", "a", "s", "1"))
	workers := loadedStore(t, c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: 10 * time.Minute})
	_ = workers
	if v, _ := c.Get(context.Background(), dedupe.SliceKey).Result(); v != "300000" {
		t.Fatalf("%s = %s after an admin command and then a worker with a 10 min retention: want 300000 (5 min)", dedupe.SliceKey, v)
	}
}

// TestAttackForgetBucketKey: `fleet keys forget` takes any key starting
// with fleet:idem:{ (internal/cli/keys.go), and Forget deletes what is at
// it: given a bucket key (as a memory report or SCAN shows them), it
// would delete the whole bucket, and all 300 events of the aggregate would
// run again. The operator's tools refuse a bucket's key.
func TestAttackForgetBucketKey(t *testing.T) {
	s, c := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
	ctx := context.Background()
	keys := eventKeys("acct-9", 300)
	packedRun(t, s, keys, "fp", nil)
	buckets, _ := c.Keys(ctx, "fleet:idem:{acct-9}:~*").Result()
	top := buckets[0]
	for _, b := range buckets {
		if len(b) < len(top) {
			top = b
		}
	}
	_, ierr := s.Inspect(ctx, top)
	ok, err := s.Forget(ctx, top)
	again := 0
	for _, r := range packedClaims(t, s, keys, "fp") {
		if r.Outcome == dedupe.Acquired {
			again++
		}
	}
	if again > 0 {
		t.Fatalf("Inspect(%s): %v; Forget(%s): %v, %v; then %d of 300 done events acquire again", top, ierr, top, ok, err, again)
	}
}

// TestAttackFingerprintAndResultShapes: fingerprints and results of every
// shape, and results that make the packed value 63 to 66 bytes: each
// duplicate answers the first payload's result, another payload is a
// conflict, and Inspect reads back what was stored.
func TestAttackFingerprintAndResultShapes(t *testing.T) {
	s, c := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
	ctx := context.Background()
	fps := []string{"", "fp", "a b", " ", "x\ny", "+", strings.Repeat("f", 64), "\x00\xff"}
	results := [][]byte{nil, []byte(" "), []byte("  "), []byte("a b c"), []byte("\n"), []byte("\x00"), []byte("1 1 fp")}
	for n := 54; n <= 60; n++ {
		results = append(results, []byte(strings.Repeat("r", n)))
	}
	for _, fp := range fps {
		for _, res := range results {
			key := dedupe.Key("g", "acct-shapes", "src", uuid())
			packedRun(t, s, []string{key}, fp, res)
			d := packedClaims(t, s, []string{key}, fp)[0]
			if d.Outcome != dedupe.Duplicate || string(d.Result) != string(res) {
				t.Errorf("fp %q result %q: %v %q", fp, res, d.Outcome, d.Result)
			}
			if x := packedClaims(t, s, []string{key}, fp+"x")[0]; x.Outcome != dedupe.Conflict {
				t.Errorf("fp %q result %q, another payload: %v", fp, res, x.Outcome)
			}
			rec, err := s.Inspect(ctx, key)
			if err != nil || rec.Fingerprint != fp || string(rec.Result) != string(res) || rec.State != dedupe.StateDone {
				t.Errorf("fp %q result %q: inspect %+v %v", fp, res, rec, err)
			}
		}
	}
	buckets, _ := c.Keys(ctx, "fleet:idem:{acct-shapes}:~*").Result()
	for _, b := range buckets {
		if enc, _ := c.ObjectEncoding(ctx, b).Result(); enc != "listpack" {
			t.Errorf("bucket %s: %s", b, enc)
		}
	}
}

// TestAttackMiniredisLatin1Identity: a claim's key is not checked to be a
// record key (Claim.check takes any non-empty key). Under gopher-lua
// (miniredis, fleet dev) the pattern class %w takes Latin-1 letters such
// as 0xC0: such a key must answer as on redis-server (C locale) and
// Memory.
func TestAttackMiniredisLatin1Identity(t *testing.T) {
	ctx := context.Background()
	odd := "fleet:idem:{m}:\xc0" + strings.Repeat("A", 21)
	outcome := func(t *testing.T, c redis.UniversalClient) string {
		s := loadedStore(t, c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
		packedRun(t, s, eventKeys("m", 130), "fp", nil) // a large bucket
		res, err := s.ClaimBatch(ctx, []dedupe.Claim{{Key: odd, Fingerprint: "fp"}})
		if err != nil {
			return "error: " + err.Error()
		}
		return res[0].Outcome.String()
	}
	_, rc := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
	_, mc := attackMini(t, time.Now())
	r, m := outcome(t, rc), outcome(t, mc)
	mem, _ := dedupe.NewMemory(dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour}, nil).ClaimBatch(ctx, []dedupe.Claim{{Key: odd, Fingerprint: "fp"}})
	if r != m || r != mem[0].Outcome.String() {
		t.Fatalf("claim of %q: redis %s, miniredis %s, memory %s", odd, r, m, mem[0].Outcome)
	}
}

// TestAttackManySlices: the slice is set once, by the first store that
// loads (half its retention): a first run with a short retention (a trial
// with --retention 1m on the production Redis) leaves a 30 s slice, and a
// worker with a 24 h retention would read 2,880 buckets per claim. Load
// refuses, and says what to do.
func TestAttackManySlices(t *testing.T) {
	_, c := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: time.Second, Retention: time.Minute})
	s, err := dedupe.NewRedis(c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), "spans 2880 slices") || !strings.Contains(err.Error(), "delete "+dedupe.SliceKey) {
		t.Fatalf("Load with a retention of 2,880 slices: %v", err)
	}
	if _, err := s.ClaimBatch(context.Background(), []dedupe.Claim{{Key: dedupe.Key("g", "a", "s", "i"), Fingerprint: "fp"}}); err == nil {
		t.Fatal("a claim batch ran with a retention of 2,880 slices")
	}
}

// TestAttackSliceKeyTooLong: readSlice takes any positive int64, the
// scripts' ms() at most 16 digits: a slice of 17 digits loads, and then
// every claim batch fails as malformed.
func TestAttackSliceKeyTooLong(t *testing.T) {
	_, c := attackMini(t, time.Now())
	c.Set(context.Background(), dedupe.SliceKey, "10000000000000000", 0)
	s, _ := dedupe.NewRedis(c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
	lerr := s.Load(context.Background())
	_, err := s.ClaimBatch(context.Background(), []dedupe.Claim{{Key: dedupe.Key("g", "a", "s", "1"), Fingerprint: "fp"}})
	if lerr == nil && err != nil {
		t.Errorf("Load accepted %s = 1e16, then every claim batch fails: %v", dedupe.SliceKey, err)
	}
}
