package dedupe_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/dedupe"
)

// packedRun claims and completes the events in one batch each and returns
// their record keys.
func packedRun(t *testing.T, s *dedupe.Redis, keys []string, fp string, result []byte) {
	t.Helper()
	ctx := context.Background()
	for lo := 0; lo < len(keys); lo += 256 {
		hi := min(lo+256, len(keys))
		claims := make([]dedupe.Claim, 0, hi-lo)
		for _, k := range keys[lo:hi] {
			claims = append(claims, dedupe.Claim{Key: k, Fingerprint: fp})
		}
		res, err := s.ClaimBatch(ctx, claims)
		if err != nil {
			t.Fatal(err)
		}
		completions := make([]dedupe.Completion, 0, len(res))
		for i, r := range res {
			if r.Outcome != dedupe.Acquired {
				t.Fatalf("claim %s: %+v", claims[i].Key, r)
			}
			completions = append(completions, dedupe.Completion{Lease: r.Lease, Result: result})
		}
		errs, err := s.CompleteBatch(ctx, completions)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range errs {
			if e != nil {
				t.Fatalf("complete %s: %v", completions[i].Lease.Key, e)
			}
		}
	}
}

// packedClaims claims keys with fp and returns the outcomes.
func packedClaims(t *testing.T, s *dedupe.Redis, keys []string, fp string) []dedupe.ClaimResult {
	t.Helper()
	claims := make([]dedupe.Claim, len(keys))
	for i, k := range keys {
		claims[i] = dedupe.Claim{Key: k, Fingerprint: fp}
	}
	res, err := s.ClaimBatch(context.Background(), claims)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func uuid() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// eventKeys returns the record keys of n events of aggregate agg.
func eventKeys(agg string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = dedupe.Key("ledger", agg, "payments-api", uuid())
	}
	return keys
}

// TestPackedBuckets packs the done records of a cold aggregate (100
// events) and a hot one (2,000), each in one bucket: each is a duplicate
// afterwards, another payload a conflict, and no done record is left a
// hash of its own.
func TestPackedBuckets(t *testing.T) {
	s, c := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
	ctx := context.Background()
	for agg, n := range map[string]int{"cold": 100, "hot": 2000} {
		keys := eventKeys(agg, n)
		packedRun(t, s, keys, "0123456789abcdef", nil)
		for i, r := range packedClaims(t, s, keys, "0123456789abcdef") {
			if r.Outcome != dedupe.Duplicate {
				t.Fatalf("%s: claim %d of a done event: %+v", agg, i, r)
			}
		}
		for i, r := range packedClaims(t, s, keys[:100], "0123456789abcdee") {
			if r.Outcome != dedupe.Conflict {
				t.Fatalf("%s: claim %d with another payload: %+v", agg, i, r)
			}
		}
		buckets, err := c.Keys(ctx, "fleet:idem:{"+agg+"}:*").Result()
		if err != nil || len(buckets) != 1 || !strings.Contains(buckets[0], "}:~") {
			t.Fatalf("%s: keys %q, %v: want one bucket", agg, buckets, err)
		}
		if held, _ := c.HLen(ctx, buckets[0]).Result(); held != int64(n) {
			t.Fatalf("%s: bucket of %d records, want %d", agg, held, n)
		}
	}
}

// TestPackedRecordsAsBefore: a packed done record answers every call as a
// done record of its own did: a duplicate with its result, a completion
// sent again ok, another owner's completion lost, Inspect with its fence,
// attempts, fingerprint and result, ResetAttempts refused, and Forget lets
// the event run again (and again be packed). A result too long to pack stays
// a done hash of its own.
func TestPackedRecordsAsBefore(t *testing.T) {
	s, c := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
	ctx := context.Background()
	key := dedupe.Key("ledger", "acct-1", "payments-api", uuid())
	r := packedClaims(t, s, []string{key}, "fp")[0]
	if err := s.Release(ctx, r.Lease); err != nil {
		t.Fatal(err)
	}
	r = packedClaims(t, s, []string{key}, "fp")[0]
	done := dedupe.Completion{Lease: r.Lease, Result: []byte("paid 12 with spaces")}
	for range 2 { // the second is a completion sent again
		if errs, err := s.CompleteBatch(ctx, []dedupe.Completion{done}); err != nil || errs[0] != nil {
			t.Fatal(err, errs)
		}
	}
	other := done
	other.Lease.Fence = 1
	if errs, _ := s.CompleteBatch(ctx, []dedupe.Completion{other}); errs[0] != dedupe.ErrLeaseLost {
		t.Fatalf("completion at an old fence: %v", errs[0])
	}
	if d := packedClaims(t, s, []string{key}, "fp")[0]; d.Outcome != dedupe.Duplicate || string(d.Result) != "paid 12 with spaces" {
		t.Fatalf("duplicate %+v", d)
	}
	rec, err := s.Inspect(ctx, key)
	if err != nil || rec.State != dedupe.StateDone || rec.Fence != 2 || rec.Attempts != 2 || rec.Fingerprint != "fp" ||
		string(rec.Result) != "paid 12 with spaces" || rec.TTL <= time.Hour {
		t.Fatalf("inspect %+v, %v", rec, err)
	}
	if ok, err := s.ResetAttempts(ctx, key); ok || err != nil {
		t.Fatalf("reset attempts of a done record: %v, %v", ok, err)
	}
	if ok, err := s.Forget(ctx, key); !ok || err != nil {
		t.Fatalf("forget: %v, %v", ok, err)
	}
	if _, err := s.Inspect(ctx, key); err != dedupe.ErrNotFound {
		t.Fatalf("inspect after forget: %v", err)
	}
	if ok, _ := s.Forget(ctx, key); ok {
		t.Fatal("forget of a forgotten record found one")
	}
	again := packedClaims(t, s, []string{key}, "another payload")[0]
	if again.Outcome != dedupe.Acquired || again.Lease.Fence != 1 {
		t.Fatalf("claim after forget: %+v", again)
	}
	long := strings.Repeat("r", 60)
	if errs, _ := s.CompleteBatch(ctx, []dedupe.Completion{{Lease: again.Lease, Result: []byte(long)}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if st, _ := c.HGet(ctx, key, "s").Result(); st != "d" {
		t.Fatalf("a done record with a %d-byte result: state %q, want a done hash of its own", len(long), st)
	}
	if d := packedClaims(t, s, []string{key}, "another payload")[0]; d.Outcome != dedupe.Duplicate || string(d.Result) != long {
		t.Fatalf("duplicate of the unpacked record %+v", d)
	}
}

// TestPackedRecordsOfThePreviousLayout: done records written as hashes of
// their own (every version before packing) are honoured, and one in process
// under a worker of that version is busy, then completed into the
// buckets by a worker of this one.
func TestPackedRecordsOfThePreviousLayout(t *testing.T) {
	s, c := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
	ctx := context.Background()
	done := dedupe.Key("ledger", "acct-1", "payments-api", uuid())
	c.HSet(ctx, done, "s", "d", "f", "3", "a", "2", "p", "fp", "r", "old result")
	c.PExpire(ctx, done, time.Hour)
	if d := packedClaims(t, s, []string{done}, "fp")[0]; d.Outcome != dedupe.Duplicate || string(d.Result) != "old result" {
		t.Fatalf("a done record of the previous layout: %+v", d)
	}
	if d := packedClaims(t, s, []string{done}, "fp2")[0]; d.Outcome != dedupe.Conflict {
		t.Fatalf("another payload: %+v", d)
	}
	running := dedupe.Key("ledger", "acct-1", "payments-api", uuid())
	deadline := time.Now().Add(time.Minute).UnixMilli()
	c.HSet(ctx, running, "s", "p", "f", "1", "o", "old-worker:1", "l", deadline, "a", "1", "p", "fp")
	if d := packedClaims(t, s, []string{running}, "fp")[0]; d.Outcome != dedupe.Busy {
		t.Fatalf("a live lease of the previous version: %+v", d)
	}
	lease := dedupe.Lease{Key: running, Owner: "old-worker:1", Fence: 1}
	if errs, err := s.CompleteBatch(ctx, []dedupe.Completion{{Lease: lease}}); err != nil || errs[0] != nil {
		t.Fatal(err, errs)
	}
	if n, _ := c.Exists(ctx, running).Result(); n != 0 {
		t.Fatal("the completed record is still a hash of its own")
	}
	if d := packedClaims(t, s, []string{running}, "fp")[0]; d.Outcome != dedupe.Duplicate {
		t.Fatalf("after its completion: %+v", d)
	}
}

// TestPackedRetentionChangedBetweenRestarts: the slice is the first
// store's, so stores started later with another retention find the
// records packed before.
func TestPackedRetentionChangedBetweenRestarts(t *testing.T) {
	first, c := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
	keys := eventKeys("acct-7", 300)
	packedRun(t, first, keys, "fp", nil)
	for _, retention := range []time.Duration{10 * time.Hour, 10 * time.Minute} {
		later := loadedStore(t, c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: retention})
		for i, r := range packedClaims(t, later, keys, "fp") {
			if r.Outcome != dedupe.Duplicate {
				t.Fatalf("retention %v, claim %d: %+v", retention, i, r)
			}
		}
	}
	if v, _ := c.Get(context.Background(), dedupe.SliceKey).Result(); v != strconv.FormatInt((30*time.Minute).Milliseconds(), 10) {
		t.Fatalf("%s = %s", dedupe.SliceKey, v)
	}
}

// TestPackedRecordsLiveOneRetention completes events across several
// slices on the real clock (retention 600 ms, slice 300 ms), then claims
// them again as the time passes: a record younger than the retention is
// always a duplicate, and one older than a retention and a slice is gone.
func TestPackedRecordsLiveOneRetention(t *testing.T) {
	retention := 600 * time.Millisecond
	s, c := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: 200 * time.Millisecond, Retention: retention})
	type done struct {
		key           string
		start, finish time.Time // the completion call's
	}
	var events []done
	for end := time.Now().Add(retention); time.Now().Before(end); {
		key := dedupe.Key("ledger", "acct-1", "src", uuid())
		start := time.Now()
		packedRun(t, s, []string{key}, "fp", nil)
		events = append(events, done{key, start, time.Now()})
	}
	const slack = 5 * time.Millisecond // Redis expires keys to the millisecond
	seenGone := false
	for deadline := time.Now().Add(3 * retention); time.Now().Before(deadline) && !seenGone; {
		for _, e := range events {
			before := time.Now()
			r := packedClaims(t, s, []string{e.key}, "fp")[0]
			after := time.Now()
			switch {
			case after.Sub(e.start) < retention-slack && r.Outcome != dedupe.Duplicate:
				t.Fatalf("a record done at most %v ago, within the retention: %+v", after.Sub(e.start), r)
			case before.Sub(e.finish) > retention+retention/2+slack && r.Outcome == dedupe.Duplicate:
				t.Fatalf("a record done at least %v ago, past a retention and a slice: still there", before.Sub(e.finish))
			case r.Outcome == dedupe.Acquired:
				seenGone = true
				_ = s.Release(context.Background(), r.Lease)
			}
		}
	}
	if !seenGone {
		t.Fatal("no record expired")
	}
	if n, _ := c.DBSize(context.Background()).Result(); n == 0 {
		t.Fatal("nothing in Redis")
	}
}

// TestPackedMemoryPerRecord measures used_memory per done record on a
// stream like the bench's (UUID ids, a 12-character source, 200 accounts
// of 100 events each): the target is at most 100 bytes. It logs the cost
// for other numbers of events per aggregate (within one slice), down to
// the worst case, every event on an aggregate of its own.
func TestPackedMemoryPerRecord(t *testing.T) {
	_, c := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
	measure := func(name string, aggs, per int) float64 {
		if err := c.FlushAll(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
		s := loadedStore(t, c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
		keys := make([]string, 0, aggs*per)
		for a := range aggs {
			for range per {
				keys = append(keys, dedupe.Key("ledger", "acct-"+strconv.Itoa(a), "payments-api", uuid()))
			}
		}
		before := usedMemory(t, c)
		packedRun(t, s, keys, "0123456789abcdef", nil)
		per0 := float64(usedMemory(t, c)-before) / float64(len(keys))
		t.Logf("%s: %.1f bytes of used_memory per done record (%d records)", name, per0, len(keys))
		return per0
	}
	if b := measure("200 accounts × 100 events", 200, 100); b > 100 {
		t.Fatalf("%.1f bytes per record, want at most 100", b)
	}
	for _, per := range []int{1, 2, 4, 16, 64, 128, 256, 1024} {
		measure(fmt.Sprintf("%d events per aggregate", per), 16384/per, per)
	}
}

func usedMemory(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

// TestPackedSeenByAStoreThatDoesNotPack: packing is a setting that may
// differ between workers, or change between restarts. A store that does
// not pack sets no slice and costs nothing until one packs; from then on
// it finds the records packed by the other, loaded before or after, and
// completes its own in place.
func TestPackedSeenByAStoreThatDoesNotPack(t *testing.T) {
	plain, c := newRedisStore(t, dedupe.Config{Lease: time.Minute, Retention: time.Hour})
	ctx := context.Background()
	own := eventKeys("acct-1", 10)
	packedRun(t, plain, own, "fp", nil)
	if n, _ := c.Exists(ctx, dedupe.SliceKey).Result(); n != 0 {
		t.Fatalf("a store that does not pack set %s", dedupe.SliceKey)
	}
	if st, _ := c.HGet(ctx, own[0], "s").Result(); st != "d" {
		t.Fatalf("a store that does not pack: record state %q, want done in place", st)
	}
	packing := loadedStore(t, c, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
	keys := eventKeys("acct-1", 10)
	packedRun(t, packing, keys, "fp", nil)
	if n, _ := c.Exists(ctx, keys[0]).Result(); n != 0 {
		t.Fatal("the packing store left a done hash of its own")
	}
	later := loadedStore(t, c, dedupe.Config{Lease: time.Minute, Retention: time.Hour})
	for name, s := range map[string]*dedupe.Redis{"loaded before": plain, "loaded after": later} {
		for i, r := range packedClaims(t, s, append(keys, own...), "fp") {
			if r.Outcome != dedupe.Duplicate {
				t.Fatalf("a store that does not pack, %s: claim %d of a done event: %+v", name, i, r)
			}
		}
		if r := packedClaims(t, s, keys[:1], "other")[0]; r.Outcome != dedupe.Conflict {
			t.Fatalf("a store that does not pack, %s: another payload: %+v", name, r)
		}
		if rec, err := s.Inspect(ctx, keys[0]); err != nil || rec.State != dedupe.StateDone {
			t.Fatalf("a store that does not pack, %s: inspect %+v, %v", name, rec, err)
		}
	}
}
