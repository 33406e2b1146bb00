package dedupetest

import (
	"context"
	"errors"
	"testing"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// runGatedClaims is the contract of the protocol's scripts with a gate
// (docs/ordering.md, "The scripts"): the claim that parks or names the
// head (and fences off a lease expired behind the gate), and the release
// that holds or ends a head.
func runGatedClaims(t *testing.T, newHarness func(t *testing.T, cfg dedupe.Config) Harness, cfg dedupe.Config) {
	ctx := context.Background()
	ref := dedupe.GateRef{Group: "group", Topic: "topic", Partition: 3, Key: "t"}
	gate := ref.Gate()
	id := func(name string) string { return handlers.IdempotencyKey("group", "source", name) }
	rec := func(name string) string { return dedupe.RecordKey("t", id(name)) }
	claim := func(t *testing.T, s dedupe.Store, name, fp string) dedupe.ClaimResult {
		t.Helper()
		res, err := s.ClaimBatch(ctx, []dedupe.Claim{{Key: rec(name), Fingerprint: fp, Gate: gate}})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	complete := func(t *testing.T, s dedupe.Store, l dedupe.Lease) error {
		t.Helper()
		errs, err := s.CompleteBatch(ctx, []dedupe.Completion{{Lease: l,
			Effects: []handlers.Op{{Kind: handlers.OpIncrBy, Key: "{t}count", Delta: 1}}}})
		if err != nil {
			t.Fatal(err)
		}
		return errs[0]
	}
	stores := func(t *testing.T) (Harness, dedupe.Store, dedupe.Gates) {
		h := newHarness(t, cfg)
		return h, h.Store, h.Store.(dedupe.Gates)
	}
	state := func(t *testing.T, g dedupe.Gates) *dedupe.GateInfo {
		t.Helper()
		info, err := g.Gate(ctx, gate)
		if err != nil {
			t.Fatal(err)
		}
		return info
	}

	t.Run("gated claims: a claim behind another head is parked and writes nothing", func(t *testing.T) {
		_, s, g := stores(t)
		if err := g.Hold(ctx, ref, id("h"), false); err != nil {
			t.Fatal(err)
		}
		if r := claim(t, s, "f1", "fp"); r.Outcome != dedupe.Parked {
			t.Fatalf("claim behind h: %+v, want parked", r)
		}
		// Nothing was written: without the gate, it is a first claim.
		res, err := s.ClaimBatch(ctx, []dedupe.Claim{{Key: rec("f1"), Fingerprint: "fp"}})
		if err != nil || res[0].Outcome != dedupe.Acquired || res[0].Attempts != 1 || res[0].Head {
			t.Fatalf("ungated claim: %+v, %v", res, err)
		}
		if r := claim(t, s, "other", "fp"); r.Outcome != dedupe.Parked {
			t.Fatalf("a second follower: %+v", r)
		}
	})

	t.Run("gated claims: a claim sent again tells whether the gate names it", func(t *testing.T) {
		_, s, g := stores(t)
		c := []dedupe.Claim{{Key: rec("h"), Fingerprint: "fp", Gate: gate, Owner: "owner-1"}}
		first, err := s.ClaimBatch(ctx, c)
		if err != nil || first[0].Outcome != dedupe.Acquired || first[0].Head {
			t.Fatalf("claim without a gate: %+v, %v", first, err)
		}
		if err := g.Hold(ctx, ref, id("h"), false); err != nil {
			t.Fatal(err)
		}
		again, err := s.ClaimBatch(ctx, c)
		if err != nil || again[0].Outcome != dedupe.Acquired || !again[0].Head || again[0].Lease != first[0].Lease {
			t.Fatalf("the same claim again: %+v, %v", again, err)
		}
	})

	t.Run("gated claims: a claim sent again behind a gate made since gives itself back", func(t *testing.T) {
		_, s, g := stores(t)
		c := []dedupe.Claim{{Key: rec("f1"), Fingerprint: "fp", Gate: gate, Owner: "owner-1"}}
		if first, err := s.ClaimBatch(ctx, c); err != nil || first[0].Outcome != dedupe.Acquired {
			t.Fatalf("claim without a gate: %+v, %v", first, err)
		}
		if err := g.Hold(ctx, ref, id("h"), false); err != nil {
			t.Fatal(err)
		}
		// Its first answer was lost; sent again, it finds the gate.
		if again, err := s.ClaimBatch(ctx, c); err != nil || again[0].Outcome != dedupe.Parked {
			t.Fatalf("the same claim again behind h: %+v, %v; want parked", again, err)
		}
		if _, err := g.End(ctx, gate, id("h")); err != nil {
			t.Fatal(err)
		}
		// The record was given back, its attempt too: the next claim is
		// the first attempt.
		if r := claim(t, s, "f1", "fp"); r.Outcome != dedupe.Acquired || r.Attempts != 1 {
			t.Fatalf("the next claim: %+v", r)
		}
	})

	t.Run("gated claims: a released follower starts once, with its payload", func(t *testing.T) {
		h, s, g := stores(t)
		if err := g.Hold(ctx, ref, id("h"), false); err != nil {
			t.Fatal(err)
		}
		f1 := dedupe.Follower{Identity: id("f1"), Fingerprint: "fp", Item: []byte("f1")}
		if a, err := g.Park(ctx, gate, rec("f1"), f1, dedupe.GateLimits{}); err != nil || a != dedupe.ParkQueued {
			t.Fatalf("park f1: %v, %v", a, err)
		}
		r := claim(t, s, "h", "fp")
		if r.Outcome != dedupe.Acquired || !r.Head {
			t.Fatalf("the head's claim: %+v", r)
		}
		if err := complete(t, s, r.Lease); err != nil {
			t.Fatalf("the head's completion: %v", err)
		}
		if d := claim(t, s, "h", "fp"); d.Outcome != dedupe.Duplicate || !d.Head {
			t.Fatalf("a copy of the done head before its end: %+v", d)
		}
		if f, err := g.End(ctx, gate, id("h")); err != nil || f == nil || f.Identity != id("f1") {
			t.Fatalf("end h: %+v, %v", f, err)
		}
		if d := claim(t, s, "h", "fp"); d.Outcome != dedupe.Duplicate || !d.Head {
			t.Fatalf("a copy of h while f1 is released: %+v (its end is redone)", d)
		}
		if a, err := g.Park(ctx, gate, rec("f1"), f1, dedupe.GateLimits{}); err != nil || a != dedupe.ParkQueuedBefore {
			t.Fatalf("park another copy of the released f1: %v, %v; want queued (its released copy holds its place)", a, err)
		}
		if c := claim(t, s, "f1", "another payload"); c.Outcome != dedupe.Conflict {
			t.Fatalf("f1 with another payload: %+v", c)
		}
		r = claim(t, s, "f1", "fp")
		if r.Outcome != dedupe.Acquired || !r.Head || r.Attempts != 1 {
			t.Fatalf("the released f1: %+v", r)
		}
		if info := state(t, g); info == nil || info.State != dedupe.GateRunning || info.Released != nil {
			t.Fatalf("gate once f1 started: %+v", info)
		}
		if d := claim(t, s, "h", "fp"); d.Outcome != dedupe.Duplicate || d.Head {
			t.Fatalf("a copy of h once f1 started: %+v", d)
		}
		if err := complete(t, s, r.Lease); err != nil {
			t.Fatal(err)
		}
		if f, err := g.End(ctx, gate, id("f1")); err != nil || f != nil || state(t, g) != nil {
			t.Fatalf("end f1 with nothing queued: %+v, %v; the gate must go", f, err)
		}
		if n := h.Int("{t}count"); n != 2 {
			t.Fatalf("count %d, want 2", n)
		}
	})

	t.Run("gated claims: a copy with another payload than its record's is never queued", func(t *testing.T) {
		_, s, g := stores(t)
		r := claim(t, s, "f1", "fp")
		if err := s.Release(ctx, r.Lease); err != nil { // it failed, and waits for its next attempt
			t.Fatal(err)
		}
		if err := g.Hold(ctx, ref, id("h"), false); err != nil {
			t.Fatal(err)
		}
		other := dedupe.Follower{Identity: id("f1"), Fingerprint: "another payload", Item: []byte("f1")}
		if a, err := g.Park(ctx, gate, rec("f1"), other, dedupe.GateLimits{}); err != nil || a != dedupe.ParkConflict {
			t.Fatalf("park f1 with another payload than its record's: %v, %v; want conflict", a, err)
		}
	})

	t.Run("gated claims: a claim behind a gate fences off an expired lease", func(t *testing.T) {
		h, s, g := stores(t)
		zombie := claim(t, s, "f1", "fp")
		if zombie.Outcome != dedupe.Acquired {
			t.Fatal(zombie)
		}
		if err := g.Hold(ctx, ref, id("h"), false); err != nil {
			t.Fatal(err)
		}
		h.ExpireLease(zombie.Lease.Key) // its worker paused past its lease
		if r := claim(t, s, "f1", "fp"); r.Outcome != dedupe.Parked {
			t.Fatalf("claim behind h: %+v", r)
		}
		errs, err := s.CompleteBatch(ctx, []dedupe.Completion{{Lease: zombie.Lease}})
		if err != nil || !errors.Is(errs[0], dedupe.ErrLeaseLost) {
			t.Fatalf("the paused worker's completion without the gate: %v, %v; want ErrLeaseLost", errs, err)
		}
	})

	t.Run("gated claims: a release holds the head, or ends it", func(t *testing.T) {
		_, s, g := stores(t)
		r := claim(t, s, "h", "fp")
		if _, err := g.ReleaseGate(ctx, dedupe.Lease{Key: rec("h"), Owner: "not the owner", Fence: 1}, ref, dedupe.GateHoldParked); !errors.Is(err, dedupe.ErrLeaseLost) {
			t.Fatalf("a release by another owner: %v", err)
		}
		if info := state(t, g); info != nil {
			t.Fatalf("a refused release held the key: %+v", info)
		}
		for range 2 { // safe to repeat
			if f, err := g.ReleaseGate(ctx, r.Lease, ref, dedupe.GateHoldParked); err != nil || f != nil {
				t.Fatalf("release and hold: %+v, %v", f, err)
			}
		}
		if info := state(t, g); info == nil || info.Head != id("h") || info.State != dedupe.GateParked || info.Ref != ref {
			t.Fatalf("gate: %+v", info)
		}
		if c := claim(t, s, "f1", "fp"); c.Outcome != dedupe.Parked {
			t.Fatalf("a follower: %+v", c)
		}
		f1 := dedupe.Follower{Identity: id("f1"), Fingerprint: "fp", Item: []byte("f1")}
		if a, _ := g.Park(ctx, gate, rec("f1"), f1, dedupe.GateLimits{}); a != dedupe.ParkQueued {
			t.Fatal(a)
		}
		r = claim(t, s, "h", "fp") // its tier copy
		if r.Outcome != dedupe.Acquired || !r.Head || r.Attempts != 2 {
			t.Fatalf("the head again: %+v", r)
		}
		if f, err := g.ReleaseGate(ctx, r.Lease, ref, dedupe.GateHoldHeld); err != nil || f != nil {
			t.Fatalf("held: %+v, %v", f, err)
		}
		if info := state(t, g); info.State != dedupe.GateHeld {
			t.Fatalf("state %c, want held", info.State)
		}
		r = claim(t, s, "h", "fp") // a replay of the held head
		if r.Outcome != dedupe.Acquired || !r.Head {
			t.Fatalf("the held head replayed: %+v", r)
		}
		for range 2 { // an end redone releases the same follower
			f, err := g.ReleaseGate(ctx, r.Lease, ref, dedupe.GateEndHead)
			if err != nil || f == nil || f.Identity != id("f1") || string(f.Item) != "f1" {
				t.Fatalf("dead-lettered under continue: %+v, %v; want f1 released", f, err)
			}
		}
		if info := state(t, g); info.Head != id("f1") || info.State != dedupe.GateReleased {
			t.Fatalf("gate: %+v", info)
		}
		// A copy of the dead-lettered head (its offset was not committed
		// when its worker crashed) redoes the end, and does not run.
		if d := claim(t, s, "h", "fp"); d.Outcome != dedupe.Duplicate || !d.Head {
			t.Fatalf("a copy of the dead-lettered head while f1 is released: %+v", d)
		}
		if f, err := g.End(ctx, gate, id("h")); err != nil || f == nil || f.Identity != id("f1") {
			t.Fatalf("its end again: %+v, %v; want f1", f, err)
		}
	})

	t.Run("gated claims: a released head skipped leaves its chain to redo", func(t *testing.T) {
		_, _, g := stores(t)
		if err := g.Hold(ctx, ref, id("h"), false); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"f1", "f2"} {
			f := dedupe.Follower{Identity: id(name), Fingerprint: "fp", Item: []byte(name)}
			if a, err := g.Park(ctx, gate, rec(name), f, dedupe.GateLimits{}); err != nil || a != dedupe.ParkQueued {
				t.Fatalf("park %s: %v, %v", name, a, err)
			}
		}
		if f, err := g.End(ctx, gate, id("h")); err != nil || f == nil || f.Identity != id("f1") {
			t.Fatalf("end h: %+v, %v", f, err)
		}
		// f1 cannot be written (too large): skipped, f2 is released as h's.
		if f, err := g.Skip(ctx, gate, id("f1"), id("h")); err != nil || f == nil || f.Identity != id("f2") {
			t.Fatalf("skip f1: %+v, %v", f, err)
		}
		// A crash before f2's write: h's copy, read again, redoes it.
		if f, err := g.End(ctx, gate, id("h")); err != nil || f == nil || f.Identity != id("f2") {
			t.Fatalf("h's end again: %+v, %v; want f2", f, err)
		}
		if _, err := g.Skip(ctx, gate, id("f2"), "not an identity"); !errors.Is(err, dedupe.ErrInvalid) {
			t.Fatalf("skip by a non-identity: %v", err)
		}
	})

	t.Run("gated claims: gates are listed until they drain", func(t *testing.T) {
		_, s, g := stores(t)
		other := dedupe.GateRef{Group: "group", Topic: "topic", Partition: 3, Key: "u"}
		r := claim(t, s, "h", "fp")
		if _, err := g.ReleaseGate(ctx, r.Lease, ref, dedupe.GateHoldParked); err != nil {
			t.Fatal(err)
		}
		if err := g.Hold(ctx, other, id("h2"), true); err != nil {
			t.Fatal(err)
		}
		list, err := g.ListGates(ctx, 10)
		if err != nil || list.Total != 2 || len(list.Gates) != 2 {
			t.Fatalf("list: %+v, %v; want both gates", list, err)
		}
		found := map[string]dedupe.GateInfo{}
		for _, info := range list.Gates {
			found[info.Key] = info
		}
		if found[gate].Ref != ref || found[gate].State != dedupe.GateParked || found[other.Gate()].State != dedupe.GateHeld {
			t.Fatalf("listed: %+v", list.Gates)
		}
		if one, err := g.ListGates(ctx, 1); err != nil || one.Total != 2 || len(one.Gates) != 1 {
			t.Fatalf("list of one: %+v, %v", one, err)
		}
		if f, err := g.End(ctx, gate, id("h")); err != nil || f != nil {
			t.Fatalf("end: %+v, %v", f, err)
		}
		if f, err := g.Unblock(ctx, other.Gate()); err != nil || f != nil {
			t.Fatalf("unblock: %+v, %v", f, err)
		}
		if list, err := g.ListGates(ctx, 10); err != nil || list.Total != 0 || len(list.Gates) != 0 {
			t.Fatalf("list once drained: %+v, %v", list, err)
		}
	})

	t.Run("gated claims: a gate outside the record's slot is refused", func(t *testing.T) {
		_, s, _ := stores(t)
		other := dedupe.GateRef{Group: "group", Topic: "topic", Partition: 3, Key: "u"}.Gate()
		if _, err := s.ClaimBatch(ctx, []dedupe.Claim{{Key: rec("f1"), Fingerprint: "fp", Gate: other}}); !errors.Is(err, dedupe.ErrInvalid) {
			t.Fatalf("claim with another key's gate: %v", err)
		}
	})
}
