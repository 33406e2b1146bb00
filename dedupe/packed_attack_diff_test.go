package dedupe_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/redistest"
)

type attackStore interface {
	dedupe.Store
	dedupe.Admin
}

const b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// attackID returns an identity starting with prefix, the rest random.
func attackID(rng *rand.Rand, prefix string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for b.Len() < 22 {
		b.WriteByte(b64[rng.IntN(64)])
	}
	return b.String()
}

// attackAggregates are odd message keys: the hash tag and the bucket's
// key shape around them.
var attackAggregates = []string{
	"acct-1", "a b", "x}:~5", "x}:~", "}lead", "}", "{", "~", "a.b", "~1.0", "\n", "a\x00b",
	"a}:b", "a}:SaVXVzEnuvP_ARWBzQmjfA", "{x}", strings.Repeat("L", 300), "é",
}

// TestAttackDifferential runs one random sequence of claims,
// completions (some sent twice, some stale), releases, forgets,
// inspections and attempt resets on Memory, redis-server and miniredis,
// over odd aggregates and identities that share their first characters
// (a large bucket: past Redis's listpack bound, a hash table), with results
// around the packing bound, and compares every answer.
func TestAttackDifferential(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	cfg := dedupe.Config{PackDoneRecords: true, Lease: time.Minute, Retention: time.Hour}
	ctx := context.Background()
	mem := dedupe.NewMemory(cfg, nil)
	rc := redistest.Start(t).Client(t)
	red := loadedStore(t, rc, cfg)
	mr := miniredis.RunT(t)
	mc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = mc.Close() })
	mini := loadedStore(t, mc, cfg)
	stores := []attackStore{mem, red, mini}
	names := []string{"memory", "redis", "miniredis"}

	// Keys: for each aggregate a few identities; for acct-1, 400 that
	// share their first two characters, and 300 random.
	var keys []string
	for _, a := range attackAggregates {
		for range 4 {
			keys = append(keys, dedupe.RecordKey(a, attackID(rng, "")))
		}
	}
	var hot []string
	for range 400 {
		hot = append(hot, dedupe.RecordKey("acct-1", attackID(rng, "Qw")))
	}
	for range 300 {
		hot = append(hot, dedupe.RecordKey("acct-1", attackID(rng, "")))
	}
	// Fill acct-1's bucket first, so that the random steps meet a large
	// one.
	for _, k := range hot {
		for i, s := range stores {
			res, _ := s.ClaimBatch(ctx, []dedupe.Claim{{Key: k, Fingerprint: "fp", Owner: "fill"}})
			if res[0].Outcome != dedupe.Acquired {
				t.Fatalf("%s: fill %s: %+v", names[i], k, res[0])
			}
			errs, _ := s.CompleteBatch(ctx, []dedupe.Completion{{Lease: res[0].Lease}})
			if errs[0] != nil {
				t.Fatalf("%s: fill %s: %v", names[i], k, errs[0])
			}
		}
	}
	keys = append(keys, hot[:60]...)
	keys = append(keys, hot[390:420]...)

	fps := []string{"fp", "fp2", "", "a b", "x\ny", strings.Repeat("f", 40)}
	result := func() []byte {
		switch rng.IntN(6) {
		case 0:
			return nil
		case 1:
			return []byte(" lead and trail ")
		case 2:
			return []byte("bin\x00\xff\nline")
		}
		n := 50 + rng.IntN(14) // around 64 bytes of packed value
		return []byte(strings.Repeat("r", n-1) + " ")
	}
	leases := map[string][]dedupe.Lease{} // per key, every lease acquired (same on all stores)
	owner := 0
	for step := range 6000 {
		k := keys[rng.IntN(len(keys))]
		var desc string
		outs := make([]string, len(stores))
		switch op := rng.IntN(10); {
		case op < 3:
			owner++
			fp := fps[rng.IntN(3)]
			if rng.IntN(10) == 0 {
				fp = fps[rng.IntN(len(fps))]
			}
			c := dedupe.Claim{Key: k, Fingerprint: fp, Owner: fmt.Sprintf("o%d", owner)}
			desc = fmt.Sprintf("claim fp %q owner %s", fp, c.Owner)
			for i, s := range stores {
				res, err := s.ClaimBatch(ctx, []dedupe.Claim{c})
				if err != nil {
					outs[i] = "error " + err.Error()
					continue
				}
				r := res[0]
				outs[i] = fmt.Sprintf("%v fence %d attempts %d result %q", r.Outcome, r.Lease.Fence, r.Attempts, r.Result)
				if r.Outcome == dedupe.Acquired && i == 0 {
					leases[k] = append(leases[k], r.Lease)
				}
			}
		case op < 6:
			ls := leases[k]
			if len(ls) == 0 {
				continue
			}
			l := ls[len(ls)-1]
			if rng.IntN(4) == 0 {
				l = ls[rng.IntN(len(ls))]
			}
			res := result()
			var eff []handlers.Op
			if !strings.Contains(k[len("fleet:idem:{"):len(k)-24], "}") && k[len("fleet:idem:{")] != '}' {
				agg := k[len("fleet:idem:{") : len(k)-24]
				eff = []handlers.Op{{Kind: handlers.OpIncrBy, Key: "{" + agg + "}:n", Delta: 1}}
			}
			desc = fmt.Sprintf("complete fence %d owner %s result %q", l.Fence, l.Owner, res)
			for i, s := range stores {
				errs, err := s.CompleteBatch(ctx, []dedupe.Completion{{Lease: l, Result: res, Effects: eff}})
				if err != nil {
					outs[i] = "error " + err.Error()
					continue
				}
				outs[i] = fmt.Sprint(errs[0])
			}
		case op < 7:
			ls := leases[k]
			if len(ls) == 0 {
				continue
			}
			l := ls[len(ls)-1]
			desc = fmt.Sprintf("release fence %d owner %s", l.Fence, l.Owner)
			for i, s := range stores {
				outs[i] = fmt.Sprint(s.Release(ctx, l))
			}
		case op < 8:
			desc = "forget"
			for i, s := range stores {
				ok, err := s.Forget(ctx, k)
				outs[i] = fmt.Sprint(ok, err)
			}
		case op < 9:
			desc = "inspect"
			for i, s := range stores {
				r, err := s.Inspect(ctx, k)
				outs[i] = fmt.Sprintf("%s fence %d attempts %d fp %q result %q owner %q %v", r.State, r.Fence, r.Attempts, r.Fingerprint, r.Result, r.Owner, err)
			}
		default:
			desc = "reset attempts"
			for i, s := range stores {
				ok, err := s.ResetAttempts(ctx, k)
				outs[i] = fmt.Sprint(ok, err)
			}
		}
		for i := 1; i < len(stores); i++ {
			if outs[i] != outs[0] {
				t.Fatalf("step %d, %q: %s\n  %s: %s\n  %s: %s\n  %s: %s", step, k, desc, names[0], outs[0], names[1], outs[1], names[2], outs[2])
			}
		}
	}
	// The effects: every counter the same.
	for _, a := range attackAggregates {
		n := "{" + a + "}:n"
		m := mem.Int(n)
		r, _ := rc.Get(ctx, n).Int64()
		x, _ := mc.Get(ctx, n).Int64()
		if m != r || m != x {
			t.Errorf("%q: memory %d redis %d miniredis %d", n, m, r, x)
		}
	}
	for _, k := range hot {
		var outs []string
		for _, s := range stores {
			res, _ := s.ClaimBatch(ctx, []dedupe.Claim{{Key: k, Fingerprint: "fp", Owner: "final"}})
			outs = append(outs, res[0].Outcome.String())
		}
		if outs[1] != outs[0] || outs[2] != outs[0] {
			t.Errorf("%s: %v", k, outs)
		}
	}
}
