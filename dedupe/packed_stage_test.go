package dedupe_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// claimOne claims key and fails the test unless it is acquired.
func claimOne(t *testing.T, s *dedupe.Redis, key string) dedupe.Lease {
	t.Helper()
	res := packedClaims(t, s, []string{key}, "0123456789abcdef")
	if res[0].Outcome != dedupe.Acquired {
		t.Fatalf("claim %s: %+v", key, res[0])
	}
	return res[0].Lease
}

// completeOne completes lease with effects and returns the completion's
// own error.
func completeOne(t *testing.T, s *dedupe.Redis, lease dedupe.Lease, effects ...handlers.Op) error {
	t.Helper()
	errs, err := s.CompleteBatch(context.Background(), []dedupe.Completion{{Lease: lease, Effects: effects}})
	if err != nil {
		t.Fatal(err)
	}
	return errs[0]
}

// bucketOf returns the one bucket of aggregate agg.
func bucketOf(t *testing.T, c *redis.Client, agg string) string {
	t.Helper()
	keys, err := c.Keys(context.Background(), "fleet:idem:{"+agg+"}:~*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("buckets of %s: %q, %v: want one", agg, keys, err)
	}
	return keys[0]
}

// TestEffectsOnFleetKeysRefused: an effect may not touch a key of fleet's
// own (a record, a bucket of packed records, a gate), whether it is the
// one INCRBY the completion takes a short way for or one of several, even
// with the aggregate's hash tag. A handler that deleted a bucket would
// forget every record in it, and the events would run again. The
// completion is invalid and writes nothing: its record stays in process,
// the bucket keeps its records.
func TestEffectsOnFleetKeysRefused(t *testing.T) {
	for _, pack := range []bool{false, true} {
		t.Run(map[bool]string{false: "in place", true: "packed"}[pack], func(t *testing.T) {
			s, c := newRedisStore(t, dedupe.Config{PackDoneRecords: pack, Lease: time.Minute, Retention: time.Hour})
			ctx := context.Background()
			done := eventKeys("acct-1", 3)
			packedRun(t, s, done, "0123456789abcdef", nil)
			bucket := "fleet:idem:{acct-1}:~1"
			if pack {
				bucket = bucketOf(t, c, "acct-1")
			}
			key := eventKeys("acct-1", 1)[0]
			lease := claimOne(t, s, key)
			for _, effects := range [][]handlers.Op{
				{{Kind: handlers.OpIncrBy, Key: bucket, Delta: 1}},
				{{Kind: handlers.OpDel, Key: bucket}},
				{{Kind: handlers.OpIncrBy, Key: "ledger:{acct-1}:balance", Delta: 1}, {Kind: handlers.OpDel, Key: done[0]}},
				{{Kind: handlers.OpHSet, Key: "fleet:order:{acct-1}:x", Field: "h", Value: "y"}},
				{{Kind: handlers.OpSet, Key: "fleet:idem:slice", Value: "1"}},
			} {
				err := completeOne(t, s, lease, effects...)
				if !errors.Is(err, dedupe.ErrInvalid) || !strings.Contains(err.Error(), "fleet's own") {
					t.Fatalf("effects %+v: %v, want invalid: a key of fleet's own", effects, err)
				}
			}
			if n, _ := c.Exists(ctx, "ledger:{acct-1}:balance", "fleet:order:{acct-1}:x").Result(); n != 0 {
				t.Fatalf("%d effect keys written by refused completions", n)
			}
			for i, r := range packedClaims(t, s, done, "0123456789abcdef") {
				if r.Outcome != dedupe.Duplicate {
					t.Fatalf("done event %d after the refused completions: %+v", i, r)
				}
			}
			if rec, err := s.Inspect(ctx, key); err != nil || rec.State != dedupe.StateProcessing {
				t.Fatalf("record after refused completions: %+v, %v: want processing", rec, err)
			}
			if err := completeOne(t, s, lease, handlers.Op{Kind: handlers.OpIncrBy, Key: "ledger:{acct-1}:balance", Delta: 1}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPackedRecordTakenOutWhenEffectsFail: a completion writes its packed
// record first, then tries its one INCRBY; when the INCRBY fails (the key
// holds a hash), the packed record is taken out again. The bucket holds
// what it held (nothing, for a bucket the completion made), and the event
// is still in process, to be completed once the key is fixed.
func TestPackedRecordTakenOutWhenEffectsFail(t *testing.T) {
	for _, others := range []int{0, 2} {
		s, c := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
		ctx := context.Background()
		packedRun(t, s, eventKeys("acct-1", others), "0123456789abcdef", nil)
		c.HSet(ctx, "ledger:{acct-1}:balance", "f", "1")
		key := eventKeys("acct-1", 1)[0]
		lease := claimOne(t, s, key)
		incr := handlers.Op{Kind: handlers.OpIncrBy, Key: "ledger:{acct-1}:balance", Delta: 1}
		if err := completeOne(t, s, lease, incr); !errors.Is(err, dedupe.ErrInvalid) {
			t.Fatalf("INCRBY of a hash: %v, want invalid", err)
		}
		buckets, _ := c.Keys(ctx, "fleet:idem:{acct-1}:~*").Result()
		held := int64(0)
		for _, b := range buckets {
			held += c.HLen(ctx, b).Val()
		}
		if held != int64(others) {
			t.Fatalf("%d other records: buckets %q hold %d after the failed completion", others, buckets, held)
		}
		if rec, err := s.Inspect(ctx, key); err != nil || rec.State != dedupe.StateProcessing {
			t.Fatalf("record after the failed completion: %+v, %v: want processing", rec, err)
		}
		c.Del(ctx, "ledger:{acct-1}:balance")
		if err := completeOne(t, s, lease, incr); err != nil {
			t.Fatal(err)
		}
		if got := packedClaims(t, s, []string{key}, "0123456789abcdef")[0]; got.Outcome != dedupe.Duplicate {
			t.Fatalf("claim after the completion: %+v", got)
		}
		if v, _ := c.Get(ctx, "ledger:{acct-1}:balance").Int(); v != 1 {
			t.Fatalf("balance %d, want 1", v)
		}
	}
}

// TestPackedBucketOfAnotherType: a bucket key that holds something other
// than a hash (an operator's mistake) fails its aggregate's claims and
// completions, not the rest of their batches. A completion into it is
// invalid before it writes anything: its effects are not applied, its
// record stays in process.
func TestPackedBucketOfAnotherType(t *testing.T) {
	s, c := newRedisStore(t, dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour})
	ctx := context.Background()
	packedRun(t, s, eventKeys("acct-1", 1), "0123456789abcdef", nil)
	bucket := bucketOf(t, c, "acct-1")
	key := eventKeys("acct-1", 1)[0]
	lease := claimOne(t, s, key)
	c.Del(ctx, bucket)
	c.Set(ctx, bucket, "x", 0)

	res := packedClaims(t, s, []string{eventKeys("acct-1", 1)[0], eventKeys("acct-2", 1)[0]}, "0123456789abcdef")
	if res[0].Outcome != dedupe.Invalid || !strings.Contains(res[0].Reason, bucket) {
		t.Fatalf("claim in the aggregate of a string bucket: %+v, want invalid naming %s", res[0], bucket)
	}
	if res[1].Outcome != dedupe.Acquired {
		t.Fatalf("claim of another aggregate in the same batch: %+v", res[1])
	}
	for _, effects := range [][]handlers.Op{
		{{Kind: handlers.OpIncrBy, Key: "ledger:{acct-1}:balance", Delta: 1}},
		{{Kind: handlers.OpIncrBy, Key: "ledger:{acct-1}:balance", Delta: 1}, {Kind: handlers.OpSet, Key: "ledger:{acct-1}:last", Value: "x"}},
	} {
		if err := completeOne(t, s, lease, effects...); !errors.Is(err, dedupe.ErrInvalid) || !strings.Contains(err.Error(), bucket) {
			t.Fatalf("completion into a string bucket: %v, want invalid naming %s", err, bucket)
		}
	}
	if n, _ := c.Exists(ctx, "ledger:{acct-1}:balance", "ledger:{acct-1}:last").Result(); n != 0 {
		t.Fatalf("%d effect keys written", n)
	}
	if rec, err := s.Inspect(ctx, key); err != nil || rec.State != dedupe.StateProcessing {
		t.Fatalf("record: %+v, %v: want processing", rec, err)
	}
}
