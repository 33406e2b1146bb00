package dedupe_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/redistest"
)

// TestOrderProtocolChecker is the protocol checker of ordered retries
// (docs/ordering.md): a randomized, seeded, sequential model of the
// engine's use of the gates, run on dedupe.Redis (a real redis-server) and
// dedupe.Memory side by side. Each step delivers a copy of an event (from
// its source partition, in order per key; from a retry tier; from the
// parked topic), resends one (the same payload, or another), or unblocks a
// held key; the copy is claimed, parked, run (done, moved to a tier, or
// dead-lettered), and its head ended, as the engine does, with crashes
// between each store step and its Kafka write or offset commit (the copy is
// then delivered again). Every answer of the two stores is compared; the
// order is checked at every completion (every earlier event of the key is
// done or dead-lettered); and at the end of each epoch, once every copy is
// delivered without crashes, every event is done or dead-lettered, applied
// at most once, and no gate is left.
//
// It runs for FLEET_ORDER_SECONDS (5 s by default, 2 s with -short), or
// exactly FLEET_ORDER_EPOCHS epochs; FLEET_ORDER_SEED replays a run.
func TestOrderProtocolChecker(t *testing.T) {
	seed, budget, epochs := checkerRun(t, "FLEET_ORDER", 5*time.Second, "EPOCHS", 1)
	t.Logf("order checker: seed %d (replay: FLEET_ORDER_SEED=%d go test ./dedupe -run TestOrderProtocolChecker -count=1 -v)", seed, seed)
	c := &ocChecker{t: t, ctx: context.Background(), rng: rand.New(rand.NewPCG(seed, 0x6a7e5)), seed: seed,
		cl: redistest.Start(t).Client(t), stats: map[string]int{}}
	start := time.Now()
	for epochs < 0 && time.Since(start) < budget || c.epoch < epochs {
		c.reset()
		for range c.epochLen {
			c.step()
		}
		c.drain()
		c.checkDrained()
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range c.stats {
			if !yield(k) {
				return
			}
		}
	})
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, " %s %d,", k, c.stats[k])
	}
	t.Logf("order checker: %d epochs, %d steps in %v, seed %d:%s", c.epoch, c.steps, time.Since(start).Round(time.Millisecond), seed, strings.TrimSuffix(b.String(), ","))
}

// The keys: separators and braces on purpose ('{' and '}' inside, not
// first).
var ocKeys = []string{"acct-1", "x:{y}", "a}b:c"}

const (
	ocGroup, ocTopic = "ledger", "payments"
	ocPartition      = 2
	ocMaxTiers       = 3
)

func ocBindable(k int) bool        { return !strings.Contains(ocKeys[k], "}") }
func ocApplied(ev *ocEvent) string { return "applied:{" + ocKeys[ev.key] + "}:" + ev.name }

// ocEvent is one event of the model: number n of its key (source order).
type ocEvent struct {
	key, n int
	name   string
	id     string // identity
	rec    string // record key
	fp     string
	tiers  int // times moved to a tier
	// completed counts the completions that succeeded.
	completed int
	done      bool
	dead      bool // dead-lettered (at least once)
}

// ocCopy is a copy of an event waiting to be delivered. fp is its
// payload's fingerprint (a resend may carry another).
type ocCopy struct {
	ev int
	fp string
}

type ocChecker struct {
	t     *testing.T
	ctx   context.Context
	rng   *rand.Rand
	seed  uint64
	cl    *redis.Client
	red   *dedupe.Redis
	mem   *dedupe.Memory
	hold  bool // --on-dead-letter hold in this epoch
	crash int  // percent of crashes after a store step

	events []*ocEvent
	// source holds each key's copies in source order; next is the first
	// not yet committed. tier and parked are the copies waiting in the
	// retry tiers (any order) and in <topic>.parked (in order).
	source       [][]ocCopy
	next         []int
	claimed      []*dedupe.ClaimResult // a claim made ahead, by key
	tier, parked []ocCopy
	epoch, steps int
	epochLen     int
	trace        []string
	stats        map[string]int
	crashed      bool // the current delivery crashed
	owner        int
}

func (c *ocChecker) reset() {
	if err := c.cl.FlushAll(c.ctx).Err(); err != nil {
		c.t.Fatal(err)
	}
	cfg := dedupe.Config{Lease: time.Minute, Retention: time.Hour, PackDoneRecords: true}
	var err error
	if c.red, err = dedupe.NewRedis(c.cl, cfg); err != nil {
		c.t.Fatal(err)
	}
	c.mem = dedupe.NewMemory(cfg, nil)
	c.epoch++
	c.hold = c.rng.IntN(3) == 0
	c.crash = []int{0, 5, 20}[c.rng.IntN(3)]
	c.events, c.source, c.next, c.tier, c.parked = nil, make([][]ocCopy, len(ocKeys)), make([]int, len(ocKeys)), nil, nil
	c.claimed = make([]*dedupe.ClaimResult, len(ocKeys))
	for k := range ocKeys {
		for n := range 2 + c.rng.IntN(6) {
			name := fmt.Sprintf("e%d-%d-%d", c.epoch, k, n)
			id := handlers.IdempotencyKey(ocGroup, "src", name)
			ev := &ocEvent{key: k, n: n, name: name, id: id, rec: dedupe.RecordKey(ocKeys[k], id), fp: "fp-" + name}
			c.events = append(c.events, ev)
			c.source[k] = append(c.source[k], ocCopy{ev: len(c.events) - 1, fp: ev.fp})
		}
	}
	c.epochLen = 20 + c.rng.IntN(120)
	c.trace = []string{fmt.Sprintf("epoch %d: hold %v, crashes %d%%", c.epoch, c.hold, c.crash)}
}

func (c *ocChecker) logf(format string, args ...any) {
	c.trace = append(c.trace, fmt.Sprintf(format, args...))
	if len(c.trace) > 400 {
		c.trace = c.trace[len(c.trace)-400:]
	}
}

func (c *ocChecker) failf(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("order checker, seed %d, epoch %d, step %d: %s\nlast steps:\n  %s", c.seed, c.epoch, c.steps,
		fmt.Sprintf(format, args...), strings.Join(c.trace, "\n  "))
}

func (c *ocChecker) gate(ev *ocEvent) string {
	return dedupe.GateRef{Group: ocGroup, Topic: ocTopic, Partition: ocPartition, Key: ocKeys[ev.key]}.Gate()
}

func (c *ocChecker) ref(ev *ocEvent) dedupe.GateRef {
	return dedupe.GateRef{Group: ocGroup, Topic: ocTopic, Partition: ocPartition, Key: ocKeys[ev.key]}
}

// step is one random step of the chaos phase.
func (c *ocChecker) step() {
	c.steps++
	switch r := c.rng.IntN(100); {
	case r < 45:
		c.deliverSource(c.rng.IntN(len(ocKeys)))
	case r < 65 && len(c.tier) > 0:
		i := c.rng.IntN(len(c.tier))
		cp := c.tier[i]
		c.tier = slices.Delete(c.tier, i, i+1)
		if !c.deliver(cp, "tier") {
			c.tier = append(c.tier, cp)
		}
	case r < 85 && len(c.parked) > 0:
		c.deliverParked()
	case r < 93:
		c.resend()
	default:
		c.unblock()
	}
}

// deliverSource delivers the next source copy of key k, and commits it
// unless the delivery crashed.
// One in five times it only claims it, and goes on at the key's next
// delivery with that answer, as the engine claims a batch before its lanes
// take the events in turn: the events of other partitions (the tiers, the
// parked topic) move meanwhile.
func (c *ocChecker) deliverSource(k int) {
	if c.next[k] >= len(c.source[k]) {
		return
	}
	cp := c.source[k][c.next[k]]
	pre := c.claimed[k]
	if pre == nil && c.crash > 0 && c.rng.IntN(5) == 0 {
		ev := c.events[cp.ev]
		c.logf("claim ahead %s (%s)", ev.name, cp.fp)
		r := c.claim(ev, cp.fp)
		c.claimed[k] = &r
		return
	}
	c.claimed[k] = nil
	if c.deliverClaimed(cp, "source", pre) {
		c.next[k]++
	}
}

func (c *ocChecker) deliverParked() {
	if c.deliver(c.parked[0], "parked") {
		c.parked = c.parked[1:]
	}
}

// resend appends a producer's copy of an event already published to its
// key's source partition: the same payload, or (one in four) another.
func (c *ocChecker) resend() {
	ev := c.rng.IntN(len(c.events))
	cp := ocCopy{ev: ev, fp: c.events[ev].fp}
	if c.rng.IntN(4) == 0 {
		cp.fp = "other-" + c.events[ev].name
	}
	k := c.events[ev].key
	c.source[k] = append(c.source[k], cp)
	c.logf("resend %s (%s) on %s", c.events[ev].name, cp.fp, ocKeys[k])
}

// unblock unblocks a held key, as fleet keys unblock does.
func (c *ocChecker) unblock() {
	k := c.rng.IntN(len(ocKeys))
	ev := &ocEvent{key: k}
	red, rerr := c.red.Unblock(c.ctx, c.gate(ev))
	mem, merr := c.mem.Unblock(c.ctx, c.gate(ev))
	c.same("unblock", rerr, merr, red, mem)
	c.logf("unblock %s: %v %v", ocKeys[k], followerName(c, red), rerr)
	c.stats["unblock"]++
	if rerr == nil && !c.crashes() {
		c.release(red)
	}
}

// crashes decides whether the worker crashes after the store step it just
// made: the copy it delivers is then delivered again.
func (c *ocChecker) crashes() bool {
	if c.rng.IntN(100) < c.crash {
		c.crashed = true
		c.stats["crash"]++
		c.logf("  crash")
		return true
	}
	return false
}

// deliver runs a copy through the engine's steps; it reports whether the
// copy's offset is committed (false: a crash, it is delivered again).
func (c *ocChecker) deliver(cp ocCopy, from string) bool { return c.deliverClaimed(cp, from, nil) }

// deliverClaimed is deliver with the claim's answer when it was made
// ahead (pre), else nil.
func (c *ocChecker) deliverClaimed(cp ocCopy, from string, pre *dedupe.ClaimResult) bool {
	ev := c.events[cp.ev]
	c.crashed = false
	c.logf("deliver %s (%s) from %s", ev.name, cp.fp, from)
	for range 3 { // a park that finds the gate gone, or naming it, claims again
		var res dedupe.ClaimResult
		if pre != nil {
			res, pre = *pre, nil
		} else {
			res = c.claim(ev, cp.fp)
		}
		switch res.Outcome {
		case dedupe.Duplicate:
			if res.Head && !c.end(ev) {
				return false
			}
			return true
		case dedupe.Conflict:
			c.stats["conflict"]++
			return true
		case dedupe.Busy: // a claim made ahead holds it: delivered again later
			return false
		case dedupe.Acquired:
			return c.run(ev, cp, from, res)
		case dedupe.Parked:
			again, ok := c.park(ev, cp, dedupe.Lease{})
			if !again {
				return ok
			}
		default:
			c.failf("claim of %s answered %v", ev.name, res)
		}
	}
	c.failf("%s: claimed three times without a decision", ev.name)
	return false
}

// claim claims ev on both stores and compares the answers.
func (c *ocChecker) claim(ev *ocEvent, fp string) dedupe.ClaimResult {
	c.owner++
	owner := "o" + strconv.Itoa(c.owner)
	cl := []dedupe.Claim{{Key: ev.rec, Owner: owner, Fingerprint: fp, Gate: c.gate(ev)}}
	red, rerr := c.red.ClaimBatch(c.ctx, cl)
	mem, merr := c.mem.ClaimBatch(c.ctx, cl)
	if rerr != nil || merr != nil {
		c.failf("claim %s: %v / %v", ev.name, rerr, merr)
	}
	r, m := red[0], mem[0]
	if r.Outcome != m.Outcome || r.Head != m.Head || r.Attempts != m.Attempts || r.Lease != m.Lease {
		c.failf("claim %s: redis %+v, memory %+v", ev.name, r, m)
	}
	c.logf("  claim: %v head %v attempts %d", r.Outcome, r.Head, r.Attempts)
	c.stats["claim "+r.Outcome.String()]++
	return r
}

// park parks ev (giving back lease if held). It reports whether to claim
// again, and else whether the copy is committed.
func (c *ocChecker) park(ev *ocEvent, cp ocCopy, lease dedupe.Lease) (again, committed bool) {
	if lease.Owner != "" {
		rerr, merr := c.red.Unclaim(c.ctx, lease), c.mem.Unclaim(c.ctx, lease)
		c.same("unclaim", rerr, merr, nil, nil)
	}
	f := dedupe.Follower{Identity: ev.id, Fingerprint: cp.fp, Item: []byte(strconv.Itoa(cp.ev))}
	red, rerr := c.red.Park(c.ctx, c.gate(ev), ev.rec, f, dedupe.GateLimits{})
	mem, merr := c.mem.Park(c.ctx, c.gate(ev), ev.rec, f, dedupe.GateLimits{})
	if rerr != nil || merr != nil || red != mem {
		c.failf("park %s: redis %v %v, memory %v %v", ev.name, red, rerr, mem, merr)
	}
	c.logf("  park: %v", red)
	c.stats["park "+red.String()]++
	switch red {
	case dedupe.ParkFree, dedupe.ParkHead:
		return true, false
	case dedupe.ParkQueued:
		return false, !c.crashes()
	}
	return false, true // a duplicate or a conflict: acknowledged or dead-lettered
}

// run runs an acquired claim: done (two in three), to a tier, or
// dead-lettered.
func (c *ocChecker) run(ev *ocEvent, cp ocCopy, from string, res dedupe.ClaimResult) bool {
	switch r := c.rng.IntN(10); {
	case r < 6:
		return c.complete(ev, res)
	case r < 9 && ev.tiers < ocMaxTiers:
		ev.tiers++
		c.tier = append(c.tier, cp) // the retry message is written first
		c.stats["to tier"]++
		f, err := c.releaseGate(ev, res.Lease, dedupe.GateHoldParked)
		if f != nil {
			c.failf("a hold released %s", followerName(c, f))
		}
		if errors.Is(err, dedupe.ErrNotHead) {
			// Another event holds the key (a dead-lettered event that ran
			// again made it): park this one in its place now; its tier
			// copy then finds it parked.
			c.stats["hold refused"]++
			_, ok := c.park(ev, cp, dedupe.Lease{})
			return ok
		}
		return !c.crashes()
	}
	ev.dead = true // the dead letter is written first
	c.stats["dead letter"]++
	step := dedupe.GateEndHead
	if c.hold {
		step = dedupe.GateHoldHeld
	}
	f, _ := c.releaseGate(ev, res.Lease, step)
	if c.crashes() {
		return false
	}
	c.release(f)
	return true
}

// complete completes a run, checking the order first.
func (c *ocChecker) complete(ev *ocEvent, res dedupe.ClaimResult) bool {
	// As the engine: no gate probe (a claim fenced any raced run off). A
	// key with '}' can bind no effect key.
	comp := []dedupe.Completion{{Lease: res.Lease}}
	if ocBindable(ev.key) {
		comp[0].Effects = []handlers.Op{{Kind: handlers.OpIncrBy, Key: ocApplied(ev), Delta: 1}}
	}
	red, rerr := c.red.CompleteBatch(c.ctx, comp)
	mem, merr := c.mem.CompleteBatch(c.ctx, comp)
	if rerr != nil || merr != nil || errClass(red[0]) != errClass(mem[0]) {
		c.failf("complete %s: redis %v %v, memory %v %v", ev.name, red, rerr, mem, merr)
	}
	c.logf("  complete: %v", red[0])
	switch err := red[0]; {
	case err != nil:
		c.failf("complete %s: %v", ev.name, err)
	}
	c.stats["done"]++
	for _, other := range c.events {
		if other.key == ev.key && other.n < ev.n && !other.done && !other.dead {
			c.failf("order violated: %s completed before %s (neither done nor dead-lettered)", ev.name, other.name)
		}
	}
	ev.done = true
	ev.completed++
	if c.crashes() {
		return false
	}
	return !res.Head || c.end(ev)
}

// end ends the head ev and writes the follower it releases.
func (c *ocChecker) end(ev *ocEvent) bool {
	red, rerr := c.red.End(c.ctx, c.gate(ev), ev.id)
	mem, merr := c.mem.End(c.ctx, c.gate(ev), ev.id)
	c.same("end "+ev.name, rerr, merr, red, mem)
	c.logf("  end: released %s", followerName(c, red))
	c.stats["end"]++
	if rerr != nil {
		c.failf("end %s: %v", ev.name, rerr)
	}
	if c.crashes() {
		return false
	}
	c.release(red)
	return true
}

// releaseGate releases a lease with a step on its gate, on both stores.
// A hold refused (ErrNotHead) is returned; any other error fails.
func (c *ocChecker) releaseGate(ev *ocEvent, l dedupe.Lease, step dedupe.GateStep) (*dedupe.Follower, error) {
	red, rerr := c.red.ReleaseGate(c.ctx, l, c.ref(ev), step)
	mem, merr := c.mem.ReleaseGate(c.ctx, l, c.ref(ev), step)
	c.same("release "+ev.name, rerr, merr, red, mem)
	c.logf("  release (step %d): %s %v", step, followerName(c, red), rerr)
	if rerr != nil && !errors.Is(rerr, dedupe.ErrNotHead) {
		c.failf("release %s: %v", ev.name, rerr)
	}
	return red, rerr
}

// release writes a released follower to the parked topic.
func (c *ocChecker) release(f *dedupe.Follower) {
	if f == nil {
		return
	}
	i, err := strconv.Atoi(string(f.Item))
	if err != nil || i < 0 || i >= len(c.events) || c.events[i].id != f.Identity {
		c.failf("released %+v is no event of this epoch", f)
	}
	c.parked = append(c.parked, ocCopy{ev: i, fp: f.Fingerprint})
	c.stats["released"]++
}

// same fails unless both stores answered alike.
func (c *ocChecker) same(op string, rerr, merr error, red, mem *dedupe.Follower) {
	if errClass(rerr) != errClass(merr) || (red == nil) != (mem == nil) ||
		red != nil && (red.Identity != mem.Identity || red.Fingerprint != mem.Fingerprint || string(red.Item) != string(mem.Item)) {
		c.failf("%s: redis %+v %v, memory %+v %v", op, red, rerr, mem, merr)
	}
}

func followerName(c *ocChecker, f *dedupe.Follower) string {
	if f == nil {
		return "none"
	}
	for _, ev := range c.events {
		if ev.id == f.Identity {
			return ev.name
		}
	}
	return f.Identity
}

// drain delivers every copy without crashes, unblocking held keys, until
// nothing waits.
func (c *ocChecker) drain() {
	c.crash = 0
	for round := 0; ; round++ {
		if round > 10_000 {
			c.failf("the epoch does not drain: %d tier copies, %d parked copies waiting", len(c.tier), len(c.parked))
		}
		moved := false
		for k := range ocKeys {
			for c.next[k] < len(c.source[k]) {
				c.deliverSource(k)
				moved = true
			}
		}
		for len(c.tier) > 0 {
			cp := c.tier[0]
			c.tier = c.tier[1:]
			c.deliver(cp, "tier")
			moved = true
		}
		for len(c.parked) > 0 {
			c.deliverParked()
			moved = true
		}
		if !moved {
			// The operator unblocks the held keys, and runs again an
			// unblock that crashed (it releases the same event again).
			for k := range ocKeys {
				ev := &ocEvent{key: k}
				f, err := c.red.Unblock(c.ctx, c.gate(ev))
				mf, merr := c.mem.Unblock(c.ctx, c.gate(ev))
				c.same("unblock", err, merr, f, mf)
				if err == nil && f != nil && !c.waiting(f) {
					c.logf("drain: unblock %s released %s", ocKeys[k], followerName(c, f))
					c.release(f)
					moved = true
				}
			}
		}
		if !moved {
			return
		}
	}
}

// waiting reports whether a copy of f waits in the parked topic.
func (c *ocChecker) waiting(f *dedupe.Follower) bool {
	return slices.ContainsFunc(c.parked, func(cp ocCopy) bool { return c.events[cp.ev].id == f.Identity })
}

// checkDrained checks the end of an epoch: every event done or
// dead-lettered, applied at most once (once when done), no gate left.
func (c *ocChecker) checkDrained() {
	for _, ev := range c.events {
		if !ev.done && !ev.dead {
			c.failf("%s is neither done nor dead-lettered once everything was delivered", ev.name)
		}
		if ev.completed > 1 {
			c.failf("%s completed %d times", ev.name, ev.completed)
		}
		if !ocBindable(ev.key) {
			continue
		}
		n, _ := c.cl.Get(c.ctx, ocApplied(ev)).Int()
		if m := c.mem.Int(ocApplied(ev)); int64(n) != m || n > 1 || ev.done != (n == 1) {
			c.failf("%s applied %d times in Redis, %d in memory (done %v)", ev.name, n, m, ev.done)
		}
	}
	for _, s := range []dedupe.Gates{c.red, c.mem} {
		list, err := s.ListGates(c.ctx, 100)
		if err != nil || list.Total != 0 || len(list.Gates) != 0 {
			c.failf("gates left once drained (%T): %+v, %v", s, list, err)
		}
	}
	if n := c.cl.Keys(c.ctx, "fleet:order:*").Val(); len(n) != 0 {
		c.failf("order keys left in Redis: %v", n)
	}
	c.stats["epochs drained"]++
}
