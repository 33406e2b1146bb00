package consumer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fleetworks/fleet/dedupe"
)

// clock is a test clock for dedupe.Memory.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

const testLease = 3 * time.Second

// keeperFixture is a lease keeper over an in-memory store with a test clock.
type keeperFixture struct {
	clock    *clock
	store    *dedupe.Memory
	keeper   *leaseKeeper
	forfeits []*delivery
	extends  int
}

func newKeeperFixture() *keeperFixture {
	f := &keeperFixture{clock: &clock{now: time.Unix(1_700_000_000, 0)}}
	f.store = dedupe.NewMemory(dedupe.Config{Lease: testLease, Retention: time.Hour}, f.clock.Now)
	extend := func(ctx context.Context, ls []dedupe.Lease) ([]error, error) {
		f.extends++
		return f.store.ExtendBatch(ctx, ls)
	}
	f.keeper = newLeaseKeeper(testLease, extend, func(d *delivery) { f.forfeits = append(f.forfeits, d) })
	return f
}

// claim claims key for owner and returns the answer.
func (f *keeperFixture) claim(t *testing.T, key, owner string) dedupe.ClaimResult {
	t.Helper()
	res, err := f.store.ClaimBatch(context.Background(), []dedupe.Claim{{Key: key, Owner: owner, Fingerprint: "fp"}})
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

// held claims key and holds it in the keeper.
func (f *keeperFixture) held(t *testing.T, key string) *delivery {
	t.Helper()
	res := f.claim(t, key, "keeper-"+key)
	if res.Outcome != dedupe.Acquired {
		t.Fatalf("claim %s: %v", key, res.Outcome)
	}
	d := &delivery{}
	d.attempt.res, d.attempt.lease = res, res.Lease
	f.keeper.hold(d)
	return d
}

func (f *keeperFixture) beat(t *testing.T, now time.Time) {
	t.Helper()
	if err := f.keeper.beat(context.Background(), now); err != nil {
		t.Fatalf("beat: %v", err)
	}
}

func TestLeaseKeeperExtendsEveryHeldClaim(t *testing.T) {
	f := newKeeperFixture()
	a, b := f.held(t, "a"), f.held(t, "b")
	// Two thirds of a lease, twice: past the first deadline, but extended.
	for range 2 {
		f.beat(t, f.clock.advance(2*time.Second))
	}
	for _, key := range []string{"a", "b"} {
		if res := f.claim(t, key, "intruder"); res.Outcome != dedupe.Busy {
			t.Errorf("claim of %s held by the keeper: %v, want busy", key, res.Outcome)
		}
	}
	if a.attempt.lost.Load() || b.attempt.lost.Load() {
		t.Error("an extended claim is marked lost")
	}
	// Dropped, a claim is no longer extended: it expires.
	f.keeper.drop(a)
	f.beat(t, f.clock.advance(2*time.Second))
	f.clock.advance(2 * time.Second)
	if res := f.claim(t, "a", "intruder"); res.Outcome != dedupe.Acquired || !res.TakenOver {
		t.Errorf("claim of a dropped claim past its lease: %+v, want taken over", res)
	}
	if res := f.claim(t, "b", "intruder"); res.Outcome != dedupe.Busy {
		t.Errorf("claim of b: %v, want busy", res.Outcome)
	}
}

func TestLeaseKeeperCancelsTheRunOfALostClaim(t *testing.T) {
	f := newKeeperFixture()
	d := f.held(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	f.keeper.startRun(d, ctx, cancel)
	// A pause longer than the lease: another owner takes the event over.
	f.clock.advance(testLease + time.Second)
	if res := f.claim(t, "a", "intruder"); !res.TakenOver {
		t.Fatalf("claim past the lease: %+v, want taken over", res)
	}
	f.beat(t, f.clock.Now())
	if !d.attempt.lost.Load() {
		t.Fatal("a claim the store refused to extend is not marked lost")
	}
	if ctx.Err() == nil {
		t.Fatal("the run of a lost claim goes on")
	}
	if f.keeper.running() != 1 {
		t.Errorf("running: %d, want the run counted until it ends", f.keeper.running())
	}
	f.keeper.endRun(d)
	if f.keeper.running() != 0 {
		t.Errorf("running after endRun: %d", f.keeper.running())
	}
}

func TestLeaseKeeperStartingARunOnALostClaimCancelsIt(t *testing.T) {
	f := newKeeperFixture()
	d := f.held(t, "a")
	d.attempt.lost.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	f.keeper.startRun(d, ctx, cancel)
	if ctx.Err() == nil {
		t.Fatal("a run started under a lost claim is not cancelled")
	}
}

func TestLeaseKeeperForfeitsARunThatOutlivesItsContext(t *testing.T) {
	f := newKeeperFixture()
	d := f.held(t, "a")
	ctx, cancel := context.WithCancel(context.Background())
	f.keeper.startRun(d, ctx, cancel)
	cancel() // timed out, but the handler goes on
	f.beat(t, f.clock.advance(time.Second))
	if f.extends != 0 {
		t.Fatalf("a run whose context ended is still extended (%d calls)", f.extends)
	}
	f.beat(t, f.clock.advance(testLease))
	if d.attempt.lost.Load() || len(f.forfeits) != 0 {
		t.Fatal("forfeited before a whole lease past the end of its context")
	}
	f.beat(t, f.clock.advance(time.Millisecond))
	if !d.attempt.lost.Load() || len(f.forfeits) != 1 || f.forfeits[0] != d {
		t.Fatalf("a run a whole lease past its context: lost %v, forfeits %d", d.attempt.lost.Load(), len(f.forfeits))
	}
	f.beat(t, f.clock.advance(time.Second))
	if len(f.forfeits) != 1 {
		t.Errorf("forfeit told %d times, want once", len(f.forfeits))
	}
	// Once the run ends, the claim is extended again (and refused: it
	// expired meanwhile).
	f.keeper.endRun(d)
	f.beat(t, f.clock.advance(time.Second))
	if f.extends != 1 {
		t.Errorf("extends after the run ended: %d, want 1", f.extends)
	}
}

func TestLeaseKeeperLeavesAClaimHeldAgainAlone(t *testing.T) {
	f := newKeeperFixture()
	d := f.held(t, "a")
	ds, ls := f.keeper.due(f.clock.Now())
	// Meanwhile the delivery claimed again, under a new lease; the answer to
	// the old one must not mark the new one lost.
	f.keeper.drop(d)
	d.attempt.lease.Fence++
	f.keeper.hold(d)
	f.keeper.lost(ds, ls, []error{dedupe.ErrLeaseLost})
	if d.attempt.lost.Load() {
		t.Error("a refusal of the previous lease marked the new one lost")
	}
	// And a claim dropped meanwhile is left alone too.
	ds, ls = f.keeper.due(f.clock.Now())
	f.keeper.drop(d)
	f.keeper.lost(ds, ls, []error{dedupe.ErrLeaseLost})
	if d.attempt.lost.Load() {
		t.Error("a refusal marked a dropped claim lost")
	}
}

func TestLeaseKeeperStoreErrorLosesNothing(t *testing.T) {
	down := errors.New("connection refused")
	k := newLeaseKeeper(testLease, func(context.Context, []dedupe.Lease) ([]error, error) { return nil, down },
		func(*delivery) { t.Error("forfeit") })
	d := &delivery{}
	k.hold(d)
	if err := k.beat(context.Background(), time.Now()); !errors.Is(err, down) {
		t.Fatalf("beat: %v, want the store's error", err)
	}
	if d.attempt.lost.Load() {
		t.Error("a store that cannot be asked marked a claim lost")
	}
}

func TestLeaseKeeperBeatsUntilCancelled(t *testing.T) {
	beats := make(chan int, 1)
	k := newLeaseKeeper(150*time.Millisecond, func(_ context.Context, ls []dedupe.Lease) ([]error, error) {
		select {
		case beats <- len(ls):
		default:
		}
		return make([]error, len(ls)), nil
	}, func(*delivery) {})
	k.hold(&delivery{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		k.run(ctx)
		close(done)
	}()
	if n := <-beats; n != 1 {
		t.Errorf("a beat extended %d claims, want 1", n)
	}
	cancel()
	<-done
}

// TestLeaseKeeperBeatsOnlyWhileHolding runs the heartbeat from the first
// claim held until a beat finds none, and again with the next claim.
func TestLeaseKeeperBeatsOnlyWhileHolding(t *testing.T) {
	beats := make(chan int, 16)
	k := newLeaseKeeper(60*time.Millisecond, func(_ context.Context, ls []dedupe.Lease) ([]error, error) {
		beats <- len(ls)
		return make([]error, len(ls)), nil
	}, func(*delivery) {})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k.keep(ctx)
	if k.isBeating() {
		t.Fatal("a heartbeat runs without a claim held")
	}
	for round := range 2 {
		d := &delivery{}
		k.hold(d)
		if n := <-beats; n != 1 {
			t.Fatalf("round %d: a beat extended %d claims, want 1", round, n)
		}
		k.drop(d)
		deadline := time.Now().Add(5 * time.Second)
		for k.isBeating() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the heartbeat still runs with no claim held", round)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	k.stop()
	k.hold(&delivery{})
	if k.isBeating() {
		t.Error("a stopped keeper started its heartbeat again")
	}
}

// isBeating reports whether the heartbeat runs.
func (k *leaseKeeper) isBeating() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.beating
}
