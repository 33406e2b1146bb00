package dedupetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// runGates is the contract of the gates of ordered retries
// (docs/ordering.md): every store is also a dedupe.Gates.
func runGates(t *testing.T, newHarness func(t *testing.T, cfg dedupe.Config) Harness, cfg dedupe.Config) {
	ctx := context.Background()
	ref := dedupe.GateRef{Group: "group", Topic: "topic", Partition: 3, Key: "t"}
	gate := ref.Gate()
	id := func(name string) string { return handlers.IdempotencyKey("group", "source", name) }
	rec := func(name string) string { return dedupe.RecordKey("t", id(name)) }
	follower := func(name, fp string) dedupe.Follower {
		return dedupe.Follower{Identity: id(name), Fingerprint: fp, Item: []byte("offset of " + name + "\nwith a line break")}
	}
	gatesOf := func(t *testing.T, h Harness) dedupe.Gates {
		t.Helper()
		g, ok := h.Store.(dedupe.Gates)
		if !ok {
			t.Fatalf("%T is not a dedupe.Gates", h.Store)
		}
		return g
	}
	park := func(t *testing.T, g dedupe.Gates, name, fp string, limits dedupe.GateLimits) dedupe.ParkAnswer {
		t.Helper()
		a, err := g.Park(ctx, gate, rec(name), follower(name, fp), limits)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	end := func(t *testing.T, g dedupe.Gates, head string) string {
		t.Helper()
		f, err := g.End(ctx, gate, id(head))
		if err != nil {
			t.Fatal(err)
		}
		if f == nil {
			return ""
		}
		for _, name := range []string{"f1", "f2", "f3"} {
			if f.Identity == id(name) {
				if want := follower(name, "fp"); string(f.Item) != string(want.Item) || f.Fingerprint != "fp" {
					t.Fatalf("released %s as %+v", name, f)
				}
				return name
			}
		}
		return fmt.Sprintf("unknown %+v", f)
	}
	none := dedupe.GateLimits{}

	t.Run("gates: followers wait behind the head and are released in order", func(t *testing.T) {
		g := gatesOf(t, newHarness(t, cfg))
		if a := park(t, g, "f1", "fp", none); a != dedupe.ParkFree {
			t.Fatalf("park without a gate: %v, want free", a)
		}
		if err := g.Hold(ctx, ref, id("h"), false); err != nil {
			t.Fatal(err)
		}
		for i, name := range []string{"f1", "f2", "f1"} { // f1 again: queued once
			want := dedupe.ParkQueued
			if i == 2 {
				want = dedupe.ParkQueuedBefore
			}
			if a := park(t, g, name, "fp", none); a != want {
				t.Fatalf("park %s: %v, want %v", name, a, want)
			}
		}
		if a := park(t, g, "h", "fp", none); a != dedupe.ParkHead {
			t.Fatalf("park the head: %v, want head", a)
		}
		info, err := g.Gate(ctx, gate)
		if err != nil || info == nil || info.Head != id("h") || info.State != dedupe.GateParked || info.Queued != 2 || info.Bytes <= 0 ||
			info.Since.IsZero() || info.Ref != ref {
			t.Fatalf("gate %+v, %v", info, err)
		}
		if got := end(t, g, "f2"); got != "" {
			t.Fatalf("the end of a follower that is not the head released %s", got)
		}
		if got := end(t, g, "h"); got != "f1" {
			t.Fatalf("the head's end released %q, want f1", got)
		}
		if got := end(t, g, "h"); got != "f1" {
			t.Fatalf("the head's end redone released %q, want f1 again", got)
		}
		info, _ = g.Gate(ctx, gate)
		if info.Head != id("f1") || info.State != dedupe.GateReleased || info.ReleasedBy != id("h") || info.Released == nil ||
			info.Released.Identity != id("f1") || info.Queued != 1 {
			t.Fatalf("gate after the head's end %+v", info)
		}
		if a := park(t, g, "f3", "fp", none); a != dedupe.ParkQueued {
			t.Fatalf("park f3 while draining: %v", a)
		}
		if got := end(t, g, "f1"); got != "f2" {
			t.Fatalf("f1's end released %q, want f2", got)
		}
		if got := end(t, g, "f2"); got != "f3" {
			t.Fatalf("f2's end released %q, want f3", got)
		}
		if got := end(t, g, "f3"); got != "" {
			t.Fatalf("the last end released %q", got)
		}
		if info, _ := g.Gate(ctx, gate); info != nil {
			t.Fatalf("the gate stays after its queue drained: %+v", info)
		}
		if a := park(t, g, "f4", "fp", none); a != dedupe.ParkFree {
			t.Fatalf("park after the drain: %v, want free", a)
		}
	})

	t.Run("gates: a follower's first payload stands, and a done one is a duplicate", func(t *testing.T) {
		h := newHarness(t, cfg)
		g := gatesOf(t, h)
		if err := g.Hold(ctx, ref, id("h"), false); err != nil {
			t.Fatal(err)
		}
		if a := park(t, g, "f1", "fp", none); a != dedupe.ParkQueued {
			t.Fatal(a)
		}
		if a := park(t, g, "f1", "other", none); a != dedupe.ParkConflict {
			t.Fatalf("f1 again with another payload: %v, want conflict", a)
		}
		res, err := h.Store.ClaimBatch(ctx, []dedupe.Claim{{Key: rec("done"), Fingerprint: "fp"}})
		if err != nil {
			t.Fatal(err)
		}
		if errs, err := h.Store.CompleteBatch(ctx, []dedupe.Completion{{Lease: res[0].Lease}}); err != nil || errs[0] != nil {
			t.Fatal(errs, err)
		}
		if a := park(t, g, "done", "fp", none); a != dedupe.ParkDuplicate {
			t.Fatalf("park a done event: %v, want duplicate", a)
		}
		if a := park(t, g, "done", "other", none); a != dedupe.ParkConflict {
			t.Fatalf("park a done event with another payload: %v, want conflict", a)
		}
		if info, _ := g.Gate(ctx, gate); info.Queued != 1 {
			t.Fatalf("queued %d, want 1", info.Queued)
		}
	})

	t.Run("gates: a full queue overflows, and Hold names one head", func(t *testing.T) {
		g := gatesOf(t, newHarness(t, cfg))
		if err := g.Hold(ctx, ref, id("h"), false); err != nil {
			t.Fatal(err)
		}
		limits := dedupe.GateLimits{MaxFollowers: 2}
		for i, want := range []dedupe.ParkAnswer{dedupe.ParkQueued, dedupe.ParkQueued, dedupe.ParkOverflow} {
			if a := park(t, g, fmt.Sprint("f", i+1), "fp", limits); a != want {
				t.Fatalf("park f%d: %v, want %v", i+1, a, want)
			}
		}
		if a := park(t, g, "f1", "fp", limits); a != dedupe.ParkQueuedBefore {
			t.Fatalf("a queued follower parked again on a full queue: %v, want queued before", a)
		}
		if err := g.Hold(ctx, ref, id("other"), false); !errors.Is(err, dedupe.ErrNotHead) {
			t.Fatalf("hold for another head: %v, want ErrNotHead", err)
		}
		if err := g.Hold(ctx, ref, id("h"), false); err != nil {
			t.Fatalf("hold for the head again: %v", err)
		}
	})

	t.Run("gates: a held key waits for unblock", func(t *testing.T) {
		g := gatesOf(t, newHarness(t, cfg))
		if _, err := g.Unblock(ctx, gate); !errors.Is(err, dedupe.ErrNotHeld) {
			t.Fatalf("unblock without a gate: %v, want ErrNotHeld", err)
		}
		if err := g.Hold(ctx, ref, id("h"), false); err != nil {
			t.Fatal(err)
		}
		if _, err := g.Unblock(ctx, gate); !errors.Is(err, dedupe.ErrNotHeld) {
			t.Fatalf("unblock a parked key: %v, want ErrNotHeld", err)
		}
		for _, name := range []string{"f1", "f2"} {
			if a := park(t, g, name, "fp", none); a != dedupe.ParkQueued {
				t.Fatal(a)
			}
		}
		if err := g.Hold(ctx, ref, id("h"), true); err != nil {
			t.Fatal(err)
		}
		if info, _ := g.Gate(ctx, gate); info.State != dedupe.GateHeld {
			t.Fatalf("state %c, want held", info.State)
		}
		for range 2 { // an unblock redone releases the same follower
			f, err := g.Unblock(ctx, gate)
			if err != nil || f == nil || f.Identity != id("f1") {
				t.Fatalf("unblock: %+v, %v; want f1", f, err)
			}
		}
		if got := end(t, g, "f1"); got != "f2" {
			t.Fatalf("f1's end released %q, want f2", got)
		}
		if _, err := g.Unblock(ctx, gate); !errors.Is(err, dedupe.ErrNotHeld) {
			t.Fatalf("unblock once the key moved on: %v, want ErrNotHeld", err)
		}
	})

	t.Run("gates: a held head without followers is let go whole", func(t *testing.T) {
		g := gatesOf(t, newHarness(t, cfg))
		if err := g.Hold(ctx, ref, id("h"), true); err != nil {
			t.Fatal(err)
		}
		if f, err := g.Unblock(ctx, gate); err != nil || f != nil {
			t.Fatalf("unblock with nothing queued: %+v, %v", f, err)
		}
		if info, _ := g.Gate(ctx, gate); info != nil {
			t.Fatalf("the gate stays: %+v", info)
		}
	})

	t.Run("gates: a key or head the store could not keep right is refused", func(t *testing.T) {
		g := gatesOf(t, newHarness(t, cfg))
		for _, key := range []string{"", "}", "}x"} {
			bad := ref
			bad.Key = key
			if err := g.Hold(ctx, bad, id("h"), false); !errors.Is(err, dedupe.ErrInvalid) {
				t.Errorf("hold for key %q: %v, want ErrInvalid", key, err)
			}
		}
		for _, head := range []string{"", "short", "abcdefghij\nklmnopqrstu"} {
			if err := g.Hold(ctx, ref, head, true); !errors.Is(err, dedupe.ErrInvalid) {
				t.Errorf("hold for head %q: %v, want ErrInvalid", head, err)
			}
			if _, err := g.End(ctx, gate, head); !errors.Is(err, dedupe.ErrInvalid) {
				t.Errorf("end of head %q: %v, want ErrInvalid", head, err)
			}
		}
		if info, _ := g.Gate(ctx, gate); info != nil {
			t.Fatalf("a refused hold made a gate: %+v", info)
		}
	})

	t.Run("gates: a follower the store could not keep whole is refused", func(t *testing.T) {
		g := gatesOf(t, newHarness(t, cfg))
		for _, f := range []dedupe.Follower{{Identity: "short", Fingerprint: "fp"}, {Identity: id("f"), Fingerprint: "a\nb"}, {Identity: id("f")},
			{Identity: "abcdefghij\nklmnopqrstu", Fingerprint: "fp"}, {Identity: "abcdefghij:klmnopqrstu", Fingerprint: "fp"}} {
			if _, err := g.Park(ctx, gate, rec("f"), f, none); !errors.Is(err, dedupe.ErrInvalid) {
				t.Errorf("park %+v: %v, want ErrInvalid", f, err)
			}
		}
	})
}
