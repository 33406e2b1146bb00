package dedupe_test

import (
	"context"
	"testing"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/redistest"
)

// TestPreviousLayout writes records in the layout of earlier versions, as a
// worker of the previous version left them, and claims their events in the
// current layout: done is a duplicate (another payload, a conflict), a live
// lease is busy, and a released or expired record is continued, fence and
// attempts carried over, the previous record deleted, twice-sent claims
// answered alike. Within the retention window, nothing the previous version
// finished runs again.
func TestPreviousLayout(t *testing.T) {
	c := redistest.Start(t).Client(t)
	ctx := context.Background()
	// A record the previous version left: the first store to load finds it,
	// and consults the previous layout.
	if err := c.HSet(ctx, dedupe.PreviousKey("ledger", "acct-0", "payments-api", "left"), "s", "d", "f", 1, "a", 1, "p", "x").Err(); err != nil {
		t.Fatal(err)
	}
	s := loadedStore(t, c, dedupe.Config{Lease: time.Second, Retention: time.Hour})
	event := func(id string, data string) *handlers.Event {
		return &handlers.Event{ID: id, Source: "payments-api", Type: "payment.captured", Key: "acct-1",
			DataContentType: "application/json", Data: []byte(data)}
	}
	previous := func(ev *handlers.Event, fields ...any) dedupe.Claim {
		cl := dedupe.NewClaim("ledger", ev)
		key := dedupe.PreviousKey("ledger", "acct-1", "payments-api", ev.ID)
		if err := c.HSet(ctx, key, append([]any{"p", dedupe.PreviousFingerprint(ev)}, fields...)...).Err(); err != nil {
			t.Fatal(err)
		}
		return cl
	}
	claim := func(cl dedupe.Claim) dedupe.ClaimResult {
		t.Helper()
		r, err := s.ClaimBatch(ctx, []dedupe.Claim{cl})
		if err != nil {
			t.Fatal(err)
		}
		return r[0]
	}

	done := previous(event("done", `{"amount_cents":1}`), "s", "d", "f", 2, "a", 2, "r", "ok")
	if r := claim(done); r.Outcome != dedupe.Duplicate || string(r.Result) != "ok" {
		t.Errorf("done in the previous layout: %+v, want a duplicate with its result", r)
	}
	other := dedupe.NewClaim("ledger", event("done", `{"amount_cents":2}`))
	if r := claim(other); r.Outcome != dedupe.Conflict {
		t.Errorf("another payload of a record done in the previous layout: %v, want a conflict", r.Outcome)
	}

	busy := previous(event("busy", `{}`), "s", "p", "f", 1, "a", 1, "o", "old-worker", "l", time.Now().Add(time.Hour).UnixMilli())
	if r := claim(busy); r.Outcome != dedupe.Busy || r.RetryAfter <= 0 {
		t.Errorf("a live lease of the previous version: %+v, want busy", r)
	}

	released := previous(event("released", `{}`), "s", "r", "f", 3, "a", 2)
	released.Owner = "new-owner"
	for i := range 2 {
		if r := claim(released); r.Outcome != dedupe.Acquired || r.Lease.Fence != 4 || r.Attempts != 3 {
			t.Errorf("send %d of a released record's claim: %+v, want acquired at fence 4, attempt 3", i+1, r)
		}
	}
	if n := c.Exists(ctx, dedupe.PreviousKey("ledger", "acct-1", "payments-api", "released")).Val(); n != 0 {
		t.Error("the previous record is still there after it was continued")
	}

	expired := previous(event("expired", `{}`), "s", "p", "f", 5, "a", 1, "o", "old-worker", "l", 1)
	if r := claim(expired); r.Outcome != dedupe.Acquired || !r.TakenOver || r.Lease.Fence != 6 || r.Attempts != 2 {
		t.Errorf("an expired lease of the previous version: %+v, want taken over at fence 6, attempt 2", r)
	}

	// An id that makes the previous key read as a current record key is
	// never consulted: it could name another event's record.
	if k := dedupe.PreviousKey("g", "acct-1", "s", "x}:AAAAAAAAAAAAAAAAAAAAAA"); k != "" {
		t.Errorf("ambiguous previous key %q consulted", k)
	}
	if k := dedupe.PreviousKey("g", "}acct", "s", "x"); k != "" {
		t.Errorf("previous key %q without a hash tag consulted", k)
	}
}

// TestClusterKeyWithoutHashTag claims, on a three-master cluster, an event
// whose message key starts with '}': its record key has no hash tag, so no
// previous-layout key is consulted (it would lie in another slot), the claim
// is answered, and a batch holding it answers every other claim too.
func TestClusterKeyWithoutHashTag(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	s := loadedStore(t, cl.Client(t), dedupe.Config{Lease: time.Second, Retention: time.Hour})
	ctx := context.Background()
	innocent := dedupe.NewClaim("g", &handlers.Event{ID: "ok", Source: "s", Type: "t", Key: "acct-1"})
	odd := dedupe.NewClaim("g", &handlers.Event{ID: "1", Source: "s", Type: "t", Key: "}x"})
	res, err := s.ClaimBatch(ctx, []dedupe.Claim{innocent, odd})
	if err != nil {
		t.Fatalf("a claim with message key }x failed its batch: %v", err)
	}
	for i, r := range res {
		if r.Outcome != dedupe.Acquired {
			t.Errorf("claim %d: %+v, want acquired", i, r)
		}
	}
}

// TestPreviousLayoutWindow: records of the previous layout are consulted
// for a retention window and an hour after the current layout was first
// served (LayoutKey), and no longer after: a fresh installation stops
// paying for the lookups a day after its first start.
func TestPreviousLayoutWindow(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	cfg := dedupe.Config{Lease: time.Second, Retention: time.Hour}
	ev := &handlers.Event{ID: "old", Source: "payments-api", Type: "t", Key: "acct-1", Data: []byte("x")}
	cl := dedupe.NewClaim("ledger", ev)
	if err := c.HSet(ctx, dedupe.PreviousKey("ledger", "acct-1", "payments-api", "old"), "s", "d", "f", 1, "a", 1, "p", dedupe.PreviousFingerprint(ev)).Err(); err != nil {
		t.Fatal(err)
	}
	s := loadedStore(t, c, cfg)
	if since, err := c.Get(ctx, dedupe.LayoutKey).Int64(); err != nil || time.Since(time.UnixMilli(since)) > time.Minute {
		t.Fatalf("%s = %d, %v: want the time of the first load", dedupe.LayoutKey, since, err)
	}
	if r, err := s.ClaimBatch(ctx, []dedupe.Claim{cl}); err != nil || r[0].Outcome != dedupe.Duplicate {
		t.Fatalf("within the window: %+v, %v; want a duplicate of the previous record", r, err)
	}

	// The layout served for longer than the retention and an hour: the
	// previous record is no longer consulted.
	old := time.Now().Add(-cfg.Retention - 2*time.Hour).UnixMilli()
	if err := c.Set(ctx, dedupe.LayoutKey, old, 0).Err(); err != nil {
		t.Fatal(err)
	}
	late := loadedStore(t, c, cfg)
	otherEv := &handlers.Event{ID: "old", Source: "payments-api", Type: "t", Key: "acct-2", Data: []byte("x")}
	other := dedupe.NewClaim("ledger", otherEv)
	otherPrev := dedupe.PreviousKey("ledger", "acct-2", "payments-api", "old")
	if err := c.HSet(ctx, otherPrev, "s", "d", "f", 1, "a", 1, "p", dedupe.PreviousFingerprint(otherEv)).Err(); err != nil {
		t.Fatal(err)
	}
	if r, err := late.ClaimBatch(ctx, []dedupe.Claim{other}); err != nil || r[0].Outcome != dedupe.Acquired {
		t.Fatalf("after the window: %+v, %v; want the previous record left alone", r, err)
	}
	if n := c.Exists(ctx, otherPrev).Val(); n != 1 {
		t.Error("the previous record was touched after the window")
	}
}

// TestNewInstallationSkipsPreviousLayout: the first store to load on a
// Redis with no record of the previous layout marks it so (LayoutKey 0),
// and no claim consults the previous layout there.
func TestNewInstallationSkipsPreviousLayout(t *testing.T) {
	c := redistest.Start(t).Client(t)
	ctx := context.Background()
	// Records of the current layout are no reason to look.
	if err := c.HSet(ctx, dedupe.Key("g", "acct", "s", "current"), "s", "d", "f", 1, "a", 1, "p", "x").Err(); err != nil {
		t.Fatal(err)
	}
	s := loadedStore(t, c, dedupe.Config{Lease: time.Second, Retention: time.Hour})
	if v, err := c.Get(ctx, dedupe.LayoutKey).Int64(); err != nil || v != 0 {
		t.Fatalf("%s = %d, %v; want 0: nothing of the previous layout here", dedupe.LayoutKey, v, err)
	}
	ev := &handlers.Event{ID: "late", Source: "s", Type: "t", Key: "acct", Data: []byte("x")}
	prev := dedupe.PreviousKey("g", "acct", "s", "late")
	if err := c.HSet(ctx, prev, "s", "d", "f", 1, "a", 1, "p", dedupe.PreviousFingerprint(ev)).Err(); err != nil {
		t.Fatal(err)
	}
	if r, err := s.ClaimBatch(ctx, []dedupe.Claim{dedupe.NewClaim("g", ev)}); err != nil || r[0].Outcome != dedupe.Acquired {
		t.Fatalf("claim: %+v, %v; want the previous layout not consulted", r, err)
	}
	// A second store reads the mark the first one left.
	again := loadedStore(t, c, dedupe.Config{Lease: time.Second, Retention: time.Hour})
	ev2 := &handlers.Event{ID: "late-2", Source: "s", Type: "t", Key: "acct", Data: []byte("x")}
	if err := c.HSet(ctx, dedupe.PreviousKey("g", "acct", "s", "late-2"), "s", "d", "f", 1, "a", 1, "p", dedupe.PreviousFingerprint(ev2)).Err(); err != nil {
		t.Fatal(err)
	}
	if r, err := again.ClaimBatch(ctx, []dedupe.Claim{dedupe.NewClaim("g", ev2)}); err != nil || r[0].Outcome != dedupe.Acquired {
		t.Fatalf("claim through the second store: %+v, %v", r, err)
	}
}
