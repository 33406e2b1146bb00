package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/redistest"
)

// TestGatesMatchRedis runs random sequences of the gates' steps (Hold,
// Park, End, Unblock, and events completing) through Memory and a real
// redis-server, and compares every answer and every gate after each step:
// the in-memory twin means what the scripts mean. FLEET_GATES_SEED replays
// a run; FLEET_GATES_SECONDS sets its budget (1 s).
func TestGatesMatchRedis(t *testing.T) {
	seed, budget := uint64(time.Now().UnixNano()), time.Second
	if v := os.Getenv("FLEET_GATES_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = n
	}
	if v := os.Getenv("FLEET_GATES_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatal(err)
		}
		budget = time.Duration(n) * time.Second
	}
	t.Logf("gates differential: seed %d (replay: FLEET_GATES_SEED=%d go test ./dedupe -run TestGatesMatchRedis -count=1 -v)", seed, seed)
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	cfg := dedupe.Config{Lease: time.Minute, Retention: time.Hour}
	red, err := dedupe.NewRedis(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := red.Load(ctx); err != nil {
		t.Fatal(err)
	}
	var mem *dedupe.Memory
	reset := func() {
		if err := rdb.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		mem = dedupe.NewMemory(cfg, nil)
	}
	reset()
	rng := rand.New(rand.NewPCG(seed, seed^0x243f6a8885a308d3)) // #nosec G404 -- a reproducible test
	refs := []dedupe.GateRef{{Group: "g", Topic: "t", Key: "k1"}, {Group: "g", Topic: "t", Key: "k2"}, {Group: "g", Topic: "t", Partition: 1, Key: "k1"}}
	names := []string{"a", "b", "c", "d", "e", "f"}
	fps := []string{"fp", "fp", "fp", "other"}
	id := func(name string) string { return handlers.IdempotencyKey("g", "s", name) }
	steps, parked, released := 0, 0, 0
	start := time.Now()
	for time.Since(start) < budget {
		if rng.IntN(200) == 0 {
			reset()
		}
		ref := refs[rng.IntN(len(refs))]
		gate, name := ref.Gate(), names[rng.IntN(len(names))]
		record := dedupe.RecordKey(ref.Key, id(name))
		var step string
		var rAns, mAns any
		switch op := rng.IntN(10); {
		case op < 2:
			held := rng.IntN(3) == 0
			step = fmt.Sprintf("Hold(%s, %s, held %v)", ref.Key, name, held)
			rAns, mAns = errKind(red.Hold(ctx, ref, id(name), held)), errKind(mem.Hold(ctx, ref, id(name), held))
		case op < 6:
			f := dedupe.Follower{Identity: id(name), Fingerprint: fps[rng.IntN(len(fps))], Item: []byte(fmt.Sprintf("item %s\n%d", name, rng.IntN(3)))}
			limits := dedupe.GateLimits{MaxFollowers: rng.IntN(4)}
			step = fmt.Sprintf("Park(%s, %s, %s, max %d)", ref.Key, name, f.Fingerprint, limits.MaxFollowers)
			ra, rerr := red.Park(ctx, gate, record, f, limits)
			ma, merr := mem.Park(ctx, gate, record, f, limits)
			rAns, mAns = fmt.Sprint(ra, errKind(rerr)), fmt.Sprint(ma, errKind(merr))
			if ra == dedupe.ParkQueued {
				parked++
			}
		case op < 8:
			step = fmt.Sprintf("End(%s, %s)", ref.Key, name)
			rf, rerr := red.End(ctx, gate, id(name))
			mf, merr := mem.End(ctx, gate, id(name))
			rAns, mAns = followerOf(rf, rerr), followerOf(mf, merr)
			if rf != nil {
				released++
			}
		case op < 9:
			step = fmt.Sprintf("Unblock(%s)", ref.Key)
			rf, rerr := red.Unblock(ctx, gate)
			mf, merr := mem.Unblock(ctx, gate)
			rAns, mAns = followerOf(rf, rerr), followerOf(mf, merr)
		default:
			fp := fps[rng.IntN(len(fps))]
			step = fmt.Sprintf("complete(%s, %s, %s)", ref.Key, name, fp)
			rAns, mAns = completeOnce(ctx, red, record, fp), completeOnce(ctx, mem, record, fp)
		}
		steps++
		if rAns != mAns {
			t.Fatalf("seed %d, step %d, %s: Redis %v, Memory %v", seed, steps, step, rAns, mAns)
		}
		for _, r := range refs {
			rg, rerr := red.Gate(ctx, r.Gate())
			mg, merr := mem.Gate(ctx, r.Gate())
			if got, want := gateOf(rg, rerr), gateOf(mg, merr); got != want {
				t.Fatalf("seed %d, step %d, after %s, gate of %+v:\nRedis  %s\nMemory %s", seed, steps, step, r, got, want)
			}
		}
	}
	t.Logf("gates differential: seed %d, %d steps, %d parked, %d released", seed, steps, parked, released)
	if parked == 0 || released == 0 {
		t.Errorf("%d parked, %d released: the run tested nothing", parked, released)
	}
}

// completeOnce claims and completes record, as the engine would: the
// outcome of the claim, and whether the completion took.
func completeOnce(ctx context.Context, s dedupe.Store, record, fp string) string {
	res, err := s.ClaimBatch(ctx, []dedupe.Claim{{Key: record, Fingerprint: fp}})
	if err != nil {
		return "claim: " + err.Error()
	}
	if res[0].Outcome != dedupe.Acquired {
		return res[0].Outcome.String()
	}
	errs, err := s.CompleteBatch(ctx, []dedupe.Completion{{Lease: res[0].Lease}})
	if err != nil || errs[0] != nil {
		return fmt.Sprint("complete: ", err, errs)
	}
	return "completed"
}

// errKind is the part of an error both stores must agree on.
func errKind(err error) string {
	for _, e := range []error{dedupe.ErrNotHead, dedupe.ErrNotHeld, dedupe.ErrInvalid} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	if err != nil {
		return "error: " + err.Error()
	}
	return "ok"
}

func followerOf(f *dedupe.Follower, err error) string {
	if f == nil {
		return "none " + errKind(err)
	}
	return fmt.Sprintf("%s/%s/%q %s", f.Identity, f.Fingerprint, f.Item, errKind(err))
}

// gateOf is a gate as both stores must agree on it (its time aside).
func gateOf(g *dedupe.GateInfo, err error) string {
	if g == nil {
		return "none " + errKind(err)
	}
	return fmt.Sprintf("ref %+v head %s state %c by %s released %s queued %d bytes %d %s",
		g.Ref, g.Head, g.State, g.ReleasedBy, followerOf(g.Released, nil), g.Queued, g.Bytes, errKind(err))
}
