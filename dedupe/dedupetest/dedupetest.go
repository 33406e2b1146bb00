// Package dedupetest is the contract test suite of the idempotency store:
// every implementation of dedupe.Store runs it.
package dedupetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// Harness is one store under test and what the suite needs around it.
type Harness struct {
	Store dedupe.Store
	// Int reads an integer written by effects (0 when absent).
	Int func(key string) int64
	// HGet reads a hash field written by effects.
	HGet func(key, field string) string
	// SetString writes a string directly, to set up invalid effects.
	SetString func(key, value string)
	// ExpireLease returns once the lease of key has passed its deadline.
	ExpireLease func(key string)
	// Admin is the store's operator interface, when it has one.
	Admin dedupe.Admin
	// LooseIntegers is set for a store whose integers follow Go's strconv
	// rather than Redis's (miniredis takes "007" for 7).
	LooseIntegers bool
}

// Run runs the suite. newHarness returns a fresh, empty store with cfg.
func Run(t *testing.T, newHarness func(t *testing.T, cfg dedupe.Config) Harness) {
	cfg := dedupe.Config{Lease: 300 * time.Millisecond, Retention: time.Hour}
	ctx := context.Background()
	claim := func(t *testing.T, h Harness, key, fp string) dedupe.ClaimResult {
		t.Helper()
		res, err := h.Store.ClaimBatch(ctx, []dedupe.Claim{{Key: key, Fingerprint: fp}})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	complete := func(t *testing.T, h Harness, c dedupe.Completion) error {
		t.Helper()
		errs, err := h.Store.CompleteBatch(ctx, []dedupe.Completion{c})
		if err != nil {
			t.Fatal(err)
		}
		return errs[0]
	}
	// key is the record key of a test event; effect keys carry its hash
	// tag, {t}.
	key := func(name string) string {
		return dedupe.RecordKey("t", handlers.IdempotencyKey("group", "source", name))
	}
	incr := func(key string, n int64) []handlers.Op {
		return []handlers.Op{{Kind: handlers.OpIncrBy, Key: "{t}" + key, Delta: n}}
	}

	runGates(t, newHarness, cfg)
	runGatedClaims(t, newHarness, cfg)

	t.Run("new claim then duplicate with result", func(t *testing.T) {
		h := newHarness(t, cfg)
		r := claim(t, h, key("k"), "fp")
		if r.Outcome != dedupe.Acquired || r.Lease.Fence != 1 || r.Attempts != 1 || r.TakenOver {
			t.Fatalf("first claim: %+v", r)
		}
		if err := complete(t, h, dedupe.Completion{Lease: r.Lease, Effects: incr("c", 5), Result: []byte("ok")}); err != nil {
			t.Fatal(err)
		}
		d := claim(t, h, key("k"), "fp")
		if d.Outcome != dedupe.Duplicate || string(d.Result) != "ok" {
			t.Fatalf("after completion: %+v", d)
		}
		if c := claim(t, h, key("k"), "other"); c.Outcome != dedupe.Conflict {
			t.Fatalf("different fingerprint: %+v", c)
		}
		if got := h.Int("{t}c"); got != 5 {
			t.Fatalf("counter %d, want 5", got)
		}
	})

	t.Run("live lease is busy", func(t *testing.T) {
		h := newHarness(t, cfg)
		claim(t, h, key("k"), "fp")
		b := claim(t, h, key("k"), "fp")
		if b.Outcome != dedupe.Busy || b.RetryAfter <= 0 || b.RetryAfter > cfg.Lease {
			t.Fatalf("second claim: %+v", b)
		}
	})

	t.Run("fifty concurrent claims have one winner", func(t *testing.T) {
		h := newHarness(t, cfg)
		var wg sync.WaitGroup
		var mu sync.Mutex
		outcomes := map[dedupe.Outcome]int{}
		for range 50 {
			wg.Go(func() {
				res, err := h.Store.ClaimBatch(ctx, []dedupe.Claim{{Key: key("hot"), Fingerprint: "fp"}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				outcomes[res[0].Outcome]++
				mu.Unlock()
			})
		}
		wg.Wait()
		if outcomes[dedupe.Acquired] != 1 || outcomes[dedupe.Busy] != 49 {
			t.Fatalf("outcomes %v, want 1 acquired and 49 busy", outcomes)
		}
	})

	t.Run("takeover fences out the old owner", func(t *testing.T) {
		h := newHarness(t, cfg)
		old := claim(t, h, key("k"), "fp")
		h.ExpireLease(key("k"))
		nw := claim(t, h, key("k"), "fp")
		if nw.Outcome != dedupe.Acquired || !nw.TakenOver || nw.Lease.Fence <= old.Lease.Fence || nw.Attempts != 2 {
			t.Fatalf("takeover: %+v (old fence %d)", nw, old.Lease.Fence)
		}
		errs, err := h.Store.ExtendBatch(ctx, []dedupe.Lease{old.Lease, nw.Lease})
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(errs[0], dedupe.ErrLeaseLost) || errs[1] != nil {
			t.Fatalf("extend: old %v, new %v", errs[0], errs[1])
		}
		if err := complete(t, h, dedupe.Completion{Lease: old.Lease, Effects: incr("c", 100)}); !errors.Is(err, dedupe.ErrLeaseLost) {
			t.Fatalf("old owner's completion: %v", err)
		}
		if err := h.Store.Release(ctx, old.Lease); !errors.Is(err, dedupe.ErrLeaseLost) {
			t.Fatalf("old owner's release: %v", err)
		}
		if err := complete(t, h, dedupe.Completion{Lease: nw.Lease, Effects: incr("c", 1)}); err != nil {
			t.Fatal(err)
		}
		if got := h.Int("{t}c"); got != 1 {
			t.Fatalf("counter %d, want 1: only the new owner's effects apply", got)
		}
	})

	t.Run("completion sent twice applies once", func(t *testing.T) {
		h := newHarness(t, cfg)
		r := claim(t, h, key("k"), "fp")
		c := dedupe.Completion{Lease: r.Lease, Effects: incr("c", 7)}
		for i := range 2 {
			if err := complete(t, h, c); err != nil {
				t.Fatalf("completion %d: %v", i+1, err)
			}
		}
		if got := h.Int("{t}c"); got != 7 {
			t.Fatalf("counter %d, want 7", got)
		}
	})

	t.Run("release lets the next attempt in", func(t *testing.T) {
		h := newHarness(t, cfg)
		r := claim(t, h, key("k"), "fp")
		if err := h.Store.Release(ctx, r.Lease); err != nil {
			t.Fatal(err)
		}
		if err := h.Store.Release(ctx, r.Lease); err != nil {
			t.Fatalf("release repeated: %v", err)
		}
		if err := complete(t, h, dedupe.Completion{Lease: r.Lease, Effects: incr("c", 9)}); !errors.Is(err, dedupe.ErrLeaseLost) {
			t.Fatalf("completion after release: %v", err)
		}
		n := claim(t, h, key("k"), "fp")
		if n.Outcome != dedupe.Acquired || n.TakenOver || n.Lease.Fence != r.Lease.Fence+1 || n.Attempts != 2 {
			t.Fatalf("claim after release: %+v", n)
		}
		if got := h.Int("{t}c"); got != 0 {
			t.Fatalf("released run applied effects: %d", got)
		}
	})

	t.Run("extend keeps the lease", func(t *testing.T) {
		h := newHarness(t, cfg)
		r := claim(t, h, key("k"), "fp")
		for range 3 {
			errs, err := h.Store.ExtendBatch(ctx, []dedupe.Lease{r.Lease})
			if err != nil || errs[0] != nil {
				t.Fatalf("extend: %v %v", err, errs)
			}
		}
		if b := claim(t, h, key("k"), "fp"); b.Outcome != dedupe.Busy {
			t.Fatalf("claim under an extended lease: %+v", b)
		}
	})

	t.Run("batch answers in order", func(t *testing.T) {
		h := newHarness(t, cfg)
		done := claim(t, h, key("done"), "fp")
		if err := complete(t, h, dedupe.Completion{Lease: done.Lease}); err != nil {
			t.Fatal(err)
		}
		claim(t, h, key("busy"), "fp")
		res, err := h.Store.ClaimBatch(ctx, []dedupe.Claim{
			{Key: key("new"), Fingerprint: "fp"}, {Key: key("done"), Fingerprint: "fp"},
			{Key: key("done"), Fingerprint: "x"}, {Key: key("busy"), Fingerprint: "fp"},
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []dedupe.Outcome{dedupe.Acquired, dedupe.Duplicate, dedupe.Conflict, dedupe.Busy}
		for i, r := range res {
			if r.Outcome != want[i] {
				t.Fatalf("answer %d: %v, want %v", i, r.Outcome, want[i])
			}
		}
	})

	t.Run("batch completions apply each on its own", func(t *testing.T) {
		h := newHarness(t, cfg)
		h.SetString("{t}word", "hello")
		res, err := h.Store.ClaimBatch(ctx, []dedupe.Claim{
			{Key: key("a"), Fingerprint: "fp"}, {Key: key("b"), Fingerprint: "fp"}, {Key: key("c"), Fingerprint: "fp"},
		})
		if err != nil {
			t.Fatal(err)
		}
		errs, err := h.Store.CompleteBatch(ctx, []dedupe.Completion{
			{Lease: res[0].Lease, Effects: incr("sum", 2)},
			{Lease: res[1].Lease, Effects: append(incr("sum", 10), incr("word", 1)...)},
			{Lease: res[2].Lease, Effects: incr("sum", 3)},
			{Lease: res[0].Lease, Effects: incr("sum", 2)}, // sent twice in one batch
		})
		if err != nil {
			t.Fatal(err)
		}
		if errs[0] != nil || errs[2] != nil || errs[3] != nil || !errors.Is(errs[1], dedupe.ErrInvalid) {
			t.Fatalf("answers %v, want nil, ErrInvalid, nil, nil", errs)
		}
		if got := h.Int("{t}sum"); got != 5 {
			t.Fatalf("sum = %d, want 5: each valid completion once, nothing of the invalid one", got)
		}
		if b := claim(t, h, key("b"), "fp"); b.Outcome != dedupe.Busy {
			t.Fatalf("the refused completion's record should still be processing: %+v", b)
		}
	})

	t.Run("single increments at the edges", func(t *testing.T) {
		h := newHarness(t, cfg)
		h.SetString("{t}word", "hello")
		h.SetString("{t}big", "9223372036854775806")
		h.SetString("{t}padded", "007")
		cases := []struct {
			key     string
			delta   int64
			invalid bool
		}{
			{"word", 1, true},
			{"padded", 1, true},
			{"big", 1, false},
			{"big", 1, true}, // past the 64-bit range
			{"fresh", -9223372036854775807, false},
			{"fresh", -2, true},
		}
		for i, c := range cases {
			if c.key == "padded" && h.LooseIntegers {
				continue
			}
			r := claim(t, h, key(fmt.Sprintf("edge-%d", i)), "fp")
			err := complete(t, h, dedupe.Completion{Lease: r.Lease, Effects: incr(c.key, c.delta)})
			if c.invalid != errors.Is(err, dedupe.ErrInvalid) || (!c.invalid && err != nil) {
				t.Fatalf("INCRBY %s %d: %v, want invalid %v", c.key, c.delta, err, c.invalid)
			}
		}
		if got := h.Int("{t}big"); got != 9223372036854775807 {
			t.Fatalf("big = %d", got)
		}
		if got := h.Int("{t}fresh"); got != -9223372036854775807 {
			t.Fatalf("fresh = %d", got)
		}
	})

	t.Run("effects", func(t *testing.T) {
		h := newHarness(t, cfg)
		r := claim(t, h, key("k"), "fp")
		ops := []handlers.Op{
			{Kind: handlers.OpIncrBy, Key: "{t}n", Delta: 3},
			{Kind: handlers.OpIncrBy, Key: "{t}n", Delta: -1},
			{Kind: handlers.OpHSet, Key: "{t}h", Field: "status", Value: "paid"},
			{Kind: handlers.OpHIncrBy, Key: "{t}h", Field: "total", Delta: 250},
			{Kind: handlers.OpHSet, Key: "{t}h", Field: "gone", Value: "x"},
			{Kind: handlers.OpHDel, Key: "{t}h", Field: "gone"},
			{Kind: handlers.OpSet, Key: "{t}s", Value: "41"},
			{Kind: handlers.OpIncrBy, Key: "{t}s", Delta: 1},
			{Kind: handlers.OpSet, Key: "{t}d", Value: "1"},
			{Kind: handlers.OpDel, Key: "{t}d"},
			{Kind: handlers.OpExpire, Key: "{t}h", TTL: time.Hour},
		}
		if err := complete(t, h, dedupe.Completion{Lease: r.Lease, Effects: ops}); err != nil {
			t.Fatal(err)
		}
		checks := map[string]string{
			"n": fmt.Sprint(h.Int("{t}n")), "s": fmt.Sprint(h.Int("{t}s")), "d": fmt.Sprint(h.Int("{t}d")),
			"h.status": h.HGet("{t}h", "status"), "h.total": h.HGet("{t}h", "total"), "h.gone": h.HGet("{t}h", "gone"),
		}
		want := map[string]string{"n": "2", "s": "42", "d": "0", "h.status": "paid", "h.total": "250", "h.gone": ""}
		for k, v := range want {
			if checks[k] != v {
				t.Errorf("%s = %q, want %q", k, checks[k], v)
			}
		}
	})

	t.Run("invalid effect applies nothing", func(t *testing.T) {
		h := newHarness(t, cfg)
		h.SetString("{t}word", "hello")
		r := claim(t, h, key("k"), "fp")
		err := complete(t, h, dedupe.Completion{Lease: r.Lease, Effects: []handlers.Op{
			{Kind: handlers.OpIncrBy, Key: "{t}c", Delta: 1},
			{Kind: handlers.OpIncrBy, Key: "{t}word", Delta: 1},
		}})
		if !errors.Is(err, dedupe.ErrInvalid) {
			t.Fatalf("completion: %v, want ErrInvalid", err)
		}
		if got := h.Int("{t}c"); got != 0 {
			t.Fatalf("a refused completion applied an effect: c=%d", got)
		}
		if b := claim(t, h, key("k"), "fp"); b.Outcome != dedupe.Busy {
			t.Fatalf("record should still be processing: %+v", b)
		}
	})

	t.Run("admin: inspect, reset attempts, forget", func(t *testing.T) {
		h := newHarness(t, cfg)
		a := h.Admin
		if a == nil {
			t.Fatal("the store has no Admin")
		}
		if _, err := a.Inspect(ctx, key("k")); !errors.Is(err, dedupe.ErrNotFound) {
			t.Fatalf("inspect before any claim: %v, want ErrNotFound", err)
		}
		r := claim(t, h, key("k"), "fp")
		rec, err := a.Inspect(ctx, key("k"))
		if err != nil || rec.State != dedupe.StateProcessing || rec.Fence != 1 || rec.Attempts != 1 ||
			rec.Owner != r.Lease.Owner || rec.Fingerprint != "fp" || rec.LeaseDeadline.IsZero() ||
			rec.TTL <= 0 || rec.TTL > cfg.Retention {
			t.Fatalf("processing record %+v, %v", rec, err)
		}
		if err := h.Store.Release(ctx, r.Lease); err != nil {
			t.Fatal(err)
		}
		if ok, err := a.ResetAttempts(ctx, key("k")); !ok || err != nil {
			t.Fatalf("reset a released record: %v, %v", ok, err)
		}
		if rec, _ := a.Inspect(ctx, key("k")); rec.State != dedupe.StateReleased || rec.Attempts != 0 || rec.Fence != 1 {
			t.Fatalf("reset record %+v: attempts 0, fence kept", rec)
		}
		r = claim(t, h, key("k"), "fp")
		if r.Outcome != dedupe.Acquired || r.Attempts != 1 || r.Lease.Fence != 2 {
			t.Fatalf("claim after reset %+v: a fresh budget and a greater fence", r)
		}
		if err := complete(t, h, dedupe.Completion{Lease: r.Lease, Result: []byte("ok")}); err != nil {
			t.Fatal(err)
		}
		if ok, err := a.ResetAttempts(ctx, key("k")); ok || err != nil {
			t.Fatalf("reset a done record: %v, %v; want false", ok, err)
		}
		if rec, _ := a.Inspect(ctx, key("k")); rec.State != dedupe.StateDone || string(rec.Result) != "ok" || !rec.LeaseDeadline.IsZero() {
			t.Fatalf("done record %+v", rec)
		}
		if ok, err := a.Forget(ctx, key("k")); !ok || err != nil {
			t.Fatalf("forget: %v, %v", ok, err)
		}
		if ok, _ := a.Forget(ctx, key("k")); ok {
			t.Fatal("forgot a record twice")
		}
		if _, err := a.Inspect(ctx, key("k")); !errors.Is(err, dedupe.ErrNotFound) {
			t.Fatalf("inspect after forget: %v", err)
		}
		if r := claim(t, h, key("k"), "fp"); r.Outcome != dedupe.Acquired {
			t.Fatalf("claim after forget: %v, want the event to run again", r.Outcome)
		}
		if ok, _ := a.ResetAttempts(ctx, key("missing")); ok {
			t.Fatal("reset a missing record")
		}
	})

	t.Run("the first payload stands in every state", func(t *testing.T) {
		h := newHarness(t, cfg)
		r := claim(t, h, key("k"), "first")
		if c := claim(t, h, key("k"), "second"); c.Outcome != dedupe.Conflict {
			t.Fatalf("another payload while processing: %v, want conflict", c.Outcome)
		}
		h.ExpireLease(key("k"))
		if c := claim(t, h, key("k"), "second"); c.Outcome != dedupe.Conflict {
			t.Fatalf("another payload after the lease expired: %v, want conflict, not a takeover", c.Outcome)
		}
		nw := claim(t, h, key("k"), "first")
		if nw.Outcome != dedupe.Acquired || !nw.TakenOver {
			t.Fatalf("the first payload after the lease expired: %+v, want a takeover", nw)
		}
		if err := h.Store.Release(ctx, nw.Lease); err != nil {
			t.Fatal(err)
		}
		if c := claim(t, h, key("k"), "second"); c.Outcome != dedupe.Conflict {
			t.Fatalf("another payload while released: %v, want conflict", c.Outcome)
		}
		again := claim(t, h, key("k"), "first")
		if again.Outcome != dedupe.Acquired || again.Lease.Fence <= nw.Lease.Fence {
			t.Fatalf("the first payload after release: %+v", again)
		}
		if err := complete(t, h, dedupe.Completion{Lease: again.Lease}); err != nil {
			t.Fatal(err)
		}
		if c := claim(t, h, key("k"), "second"); c.Outcome != dedupe.Conflict {
			t.Fatalf("another payload when done: %v, want conflict", c.Outcome)
		}
		if a := h.Admin; a != nil {
			if got, _ := a.Inspect(ctx, key("k")); got.Fingerprint != "first" {
				t.Fatalf("fingerprint %q, want the first payload's", got.Fingerprint)
			}
		}
		_ = r
	})

	t.Run("a claim sent again with its owner token is the same claim", func(t *testing.T) {
		h := newHarness(t, cfg)
		c := dedupe.Claim{Key: key("k"), Owner: "resent-owner", Fingerprint: "fp"}
		var first dedupe.ClaimResult
		for i := range 3 {
			res, err := h.Store.ClaimBatch(ctx, []dedupe.Claim{c})
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			if r.Outcome != dedupe.Acquired || r.Lease.Owner != "resent-owner" || r.Attempts != 1 || r.Lease.Fence != 1 {
				t.Fatalf("claim sent %d times: %+v, want the same claim: acquired, fence 1, one attempt", i+1, r)
			}
			first = r
		}
		if b := claim(t, h, key("k"), "fp"); b.Outcome != dedupe.Busy {
			t.Fatalf("another owner: %v, want busy", b.Outcome)
		}
		if err := complete(t, h, dedupe.Completion{Lease: first.Lease}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("unclaim gives the attempt back", func(t *testing.T) {
		h := newHarness(t, cfg)
		r := claim(t, h, key("k"), "fp")
		for i := range 2 {
			if err := h.Store.Unclaim(ctx, r.Lease); err != nil {
				t.Fatalf("unclaim %d: %v", i+1, err)
			}
		}
		n := claim(t, h, key("k"), "fp")
		if n.Outcome != dedupe.Acquired || n.Attempts != 1 || n.Lease.Fence != 2 || n.TakenOver {
			t.Fatalf("claim after unclaim: %+v, want attempt 1 again and a greater fence", n)
		}
		if err := h.Store.Unclaim(ctx, r.Lease); !errors.Is(err, dedupe.ErrLeaseLost) {
			t.Fatalf("unclaim of a claim no longer ours: %v, want ErrLeaseLost", err)
		}
		if err := h.Store.Release(ctx, n.Lease); err != nil {
			t.Fatal(err)
		}
		if n := claim(t, h, key("k"), "fp"); n.Attempts != 2 {
			t.Fatalf("after a release: attempts %d, want 2: a release keeps the attempt", n.Attempts)
		}
	})

	t.Run("effects are bound to the aggregate", func(t *testing.T) {
		h := newHarness(t, cfg)
		for i, effect := range []string{"{other}c", "c", "x{}{t}c", "{T}c", "{t"} {
			r := claim(t, h, key(fmt.Sprintf("bound-%d", i)), "fp")
			err := complete(t, h, dedupe.Completion{Lease: r.Lease, Effects: []handlers.Op{
				{Kind: handlers.OpIncrBy, Key: "{t}c", Delta: 1},
				{Kind: handlers.OpIncrBy, Key: effect, Delta: 1},
			}})
			if !errors.Is(err, dedupe.ErrInvalid) {
				t.Fatalf("effect on %q for aggregate t: %v, want ErrInvalid", effect, err)
			}
		}
		if got := h.Int("{t}c"); got != 0 {
			t.Fatalf("a refused completion applied an effect: %d", got)
		}
		r := claim(t, h, key("ok"), "fp")
		if err := complete(t, h, dedupe.Completion{Lease: r.Lease, Effects: incr("c", 1)}); err != nil {
			t.Fatal(err)
		}
		// An aggregate with a '}' can bind no key: Redis would read its
		// keys' hash tag short.
		odd := dedupe.RecordKey("a}b", handlers.IdempotencyKey("group", "source", "odd"))
		r = claim(t, h, odd, "fp")
		err := complete(t, h, dedupe.Completion{Lease: r.Lease, Effects: []handlers.Op{{Kind: handlers.OpIncrBy, Key: "{a}b}c", Delta: 1}}})
		if !errors.Is(err, dedupe.ErrInvalid) {
			t.Fatalf("effect for aggregate a}b: %v, want ErrInvalid", err)
		}
	})

	t.Run("a late copy of a claim whose owner let go takes nothing", func(t *testing.T) {
		h := newHarness(t, cfg)
		c := dedupe.Claim{Key: key("k"), Owner: "late", Fingerprint: "fp"}
		res, err := h.Store.ClaimBatch(ctx, []dedupe.Claim{c})
		if err != nil || res[0].Outcome != dedupe.Acquired {
			t.Fatalf("claim: %+v, %v", res, err)
		}
		if err := h.Store.Release(ctx, res[0].Lease); err != nil {
			t.Fatal(err)
		}
		late, err := h.Store.ClaimBatch(ctx, []dedupe.Claim{c})
		if err != nil || late[0].Outcome != dedupe.Busy {
			t.Fatalf("the late copy: %+v, %v; want busy, taking nothing", late, err)
		}
		n := claim(t, h, key("k"), "fp")
		if n.Outcome != dedupe.Acquired || n.Lease.Fence != 2 || n.Attempts != 2 {
			t.Fatalf("the next real claim: %+v, want acquired at fence 2, attempt 2", n)
		}
		// A completion must match owner and fence: the first lease's owner at
		// the second fence is nobody's.
		if err := complete(t, h, dedupe.Completion{Lease: dedupe.Lease{Key: key("k"), Owner: "late", Fence: 2}, Effects: incr("c", 1)}); !errors.Is(err, dedupe.ErrLeaseLost) {
			t.Fatalf("a completion with the old owner and the new fence: %v, want ErrLeaseLost", err)
		}
		if err := complete(t, h, dedupe.Completion{Lease: dedupe.Lease{Key: key("k"), Owner: n.Lease.Owner, Fence: 1}, Effects: incr("c", 1)}); !errors.Is(err, dedupe.ErrLeaseLost) {
			t.Fatalf("a completion with the new owner and the old fence: %v, want ErrLeaseLost", err)
		}
		if got := h.Int("{t}c"); got != 0 {
			t.Fatalf("a refused completion applied: %d", got)
		}
	})

	t.Run("effects on fleet's own keys are refused", func(t *testing.T) {
		h := newHarness(t, cfg)
		other := claim(t, h, key("other"), "fp")
		r := claim(t, h, key("k"), "fp")
		err := complete(t, h, dedupe.Completion{Lease: r.Lease, Effects: []handlers.Op{
			{Kind: handlers.OpHSet, Key: key("other"), Field: "s", Value: "d"},
		}})
		if !errors.Is(err, dedupe.ErrInvalid) {
			t.Fatalf("an effect on another record of the aggregate: %v, want ErrInvalid", err)
		}
		if b := claim(t, h, key("other"), "fp"); b.Outcome != dedupe.Busy {
			t.Fatalf("the other record after the refused effect: %v, want still busy", b.Outcome)
		}
		_ = other
	})
}
