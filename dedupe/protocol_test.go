package dedupe_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
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

// TestProtocolChecker is a randomized, seeded, sequential checker of the
// idempotency protocol. One PCG picks one step at a time (claims, re-sent
// claims, extensions, completions with good and bad effects, releases,
// crashes, zombies waking up, forged leases, clock jumps …); each step runs
// on dedupe.Redis (a real redis-server) and on dedupe.Memory (an injected
// clock) side by side, and after every step both are compared with each
// other and with a model of the protocol, and the guarantees are checked:
// effects at most once, a done record never runs again, fences only grow, the
// first payload stands, and no lease is lost without a takeover.
//
// It runs for FLEET_PROTOCOL_SECONDS (20 s by default, 2 s with -short), or
// exactly FLEET_PROTOCOL_STEPS steps; FLEET_PROTOCOL_SEED replays a run:
//
//	FLEET_PROTOCOL_SEED=<seed> FLEET_PROTOCOL_STEPS=<step> go test ./dedupe -run TestProtocolChecker -count=1 -v
func TestProtocolChecker(t *testing.T) {
	seed, budget, maxSteps := checkerRun(t, "FLEET_PROTOCOL", 20*time.Second, "STEPS", 0)
	t.Logf("protocol checker: seed %d (replay: FLEET_PROTOCOL_SEED=%d go test ./dedupe -run TestProtocolChecker -count=1 -v)", seed, seed)

	cl := redistest.Start(t).Client(t)
	cfg := dedupe.Config{Lease: time.Minute, Retention: time.Hour, PackDoneRecords: true}
	c := newPCChecker(t, seed, cfg, cl)
	c.reset()
	start := time.Now()
	for maxSteps < 0 && time.Since(start) < budget || c.step < maxSteps {
		if c.epochStep >= c.epochLen {
			c.sweep()
			c.reset()
		}
		c.step++
		c.epochStep++
		c.run()
		c.after()
	}
	c.sweep()
	elapsed := time.Since(start)
	t.Logf("protocol checker: %d steps, seed %d (%.0f steps/s, %d epochs); steps and answers:%s",
		c.step, seed, float64(c.step)/elapsed.Seconds(), c.epochs, c.stats())
}

const (
	pcWorkers = 5
	// An epoch (a fresh history: empty stores) runs for 30 to 300 steps,
	// one in ten for up to 2,000: by then most records of the small pool
	// are done.
	pcEpochShort, pcEpochMax = 300, 2000
	// pcMaxJumps bounds the clock jumps of an epoch: 55 × (lease + 1ms) stays
	// below the retention, so Memory never expires a record (Redis, on the
	// real clock, would not either).
	pcMaxJumps = 55
	pcTrace    = 20
	pcSweep    = 64 // steps between two Inspects of every record
	// pcEpochWall bounds the wall-clock time of an epoch: Redis leases run
	// on the real clock, and one minute later they would expire by
	// themselves in Redis only.
	pcEpochWall = 45 * time.Second
)

// The aggregates (Kafka message keys). The last one contains '}', so it can
// bind no effect key; it is used only for copies of events.
var pcAggs = []string{"acct-1", "a:b/{c", "x/y:z", "evil}:agg"}

// The events: separators in every part on purpose; events 1 and 2 (and 5 and
// 6) join to the same text; event 10's id looks like the tail of a record
// key, so that it has no key in the previous layout.
var pcEventDefs = []struct {
	group, source, id string
	home              int
}{
	{"ledger", "payments-api", "4f6c1d2e", 0},
	{"ledger", "src:a", "b:c", 0},
	{"ledger", "src:a:b", "c", 0},
	{"ledger", "src/x", "1/2", 1},
	{"ledger", "{src}", "{id}", 1},
	{"led:ger", "s", "x", 1},
	{"led", "ger:s", "x", 2},
	{"ledger", "s}:", "id}", 2},
	{"ledger", "s", "id:with:colons", 2},
	{"ledger", "", "empty-source", 0},
	{"ledger", "s", "}:AAAAAAAAAAAAAAAAAAAAAA", 1},
	{"ledger", "s{", "{", 2},
}

// pcUnbound is a key no aggregate binds.
const pcUnbound = "total:{other}"

type pcEvent struct {
	identity string
	home     int
	fps      [2]string
}

// pcRecord is the model of one record (event ev under aggregate agg).
type pcRecord struct {
	key, prevKey string
	ev, agg      int
	name         string

	state    byte // 0 absent, 'p' processing, 'd' done, 'r' released
	fp       string
	fence    int64
	attempts int
	owner    string // logical owner while processing
	// lastOwner is the logical owner that last let the record go (released
	// or taken over), until it is done: a late copy of its claim takes
	// nothing.
	lastOwner string
	expired   bool // the lease of a processing record expired (a jump)
	result    []byte
	maxFence  int64 // the highest fence any answer handed out
	everDone  bool
}

// pcLease is a lease as a worker holds it.
type pcLease struct {
	rec   int
	owner string    // logical owner
	tok   [2]string // owner token in Redis and in Memory (== owner unless the store made it)
	fence int64
	fp    string
}

type pcLeaseID struct {
	rec   int
	owner string
	fence int64
}

// pcLeaseInfo is what happened to a lease since it was acquired.
type pcLeaseInfo struct {
	jumped, takenOver, finished bool
}

type pcClaim struct {
	rec   int
	owner string    // logical owner
	tok   [2]string // tokens sent; "" lets the store make one
	fp    string
}

type pcComp struct {
	l       pcLease
	variant byte
	result  []byte
}

type pcWorker struct {
	id       int
	held     []pcLease
	past     []pcClaim // earlier claims, to re-send
	finished []pcComp  // completions that succeeded, to repeat
}

type pcChecker struct {
	t      *testing.T
	ctx    context.Context
	seed   uint64
	rng    *rand.Rand
	cfg    dedupe.Config
	cl     *redis.Client
	red    *dedupe.Redis
	mem    *dedupe.Memory
	stores [2]dedupe.Store
	admins [2]dedupe.Admin
	now    time.Time

	events  []pcEvent
	recs    []*pcRecord
	applied []int64 // per record: the expected HINCRBY applied:{agg} <identity>
	total   []int64 // per aggregate: the expected total:{agg}
	workers []*pcWorker
	zombies []pcLease
	leases  map[pcLeaseID]*pcLeaseInfo
	autos   [2]map[string]string // store-made owner token -> logical owner

	step, epochStep, epochLen, epochs, jumps, seq int
	epochStart                                    time.Time
	touched                                       []int
	desc                                          strings.Builder
	trace                                         []string
	counts                                        map[string]int
}

var pcStoreNames = [2]string{"redis", "memory"}

func newPCChecker(t *testing.T, seed uint64, cfg dedupe.Config, cl *redis.Client) *pcChecker {
	c := &pcChecker{
		t: t, ctx: context.Background(), seed: seed, cfg: cfg, cl: cl,
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		counts: map[string]int{},
	}
	c.red = loadedStore(t, cl, cfg)
	for i, d := range pcEventDefs {
		ev := pcEvent{identity: handlers.IdempotencyKey(d.group, d.source, d.id), home: d.home,
			fps: [2]string{fmt.Sprintf("fp%d-first", i), fmt.Sprintf("fp%d-other", i)}}
		if i == 9 {
			ev.fps[0] = "" // an empty fingerprint is a fingerprint too
		}
		for _, e := range c.events {
			if e.identity == ev.identity {
				t.Fatalf("events %v: identity collision", d)
			}
		}
		c.events = append(c.events, ev)
		for a, agg := range pcAggs {
			c.recs = append(c.recs, &pcRecord{
				key:     dedupe.RecordKey(agg, ev.identity),
				prevKey: dedupe.PreviousKey(d.group, agg, d.source, d.id),
				ev:      i, agg: a, name: fmt.Sprintf("e%d@%d", i, a),
			})
		}
	}
	return c
}

func pcRec(ev, agg int) int { return ev*len(pcAggs) + agg }

func appliedKey(agg int) string { return "applied:{" + pcAggs[agg] + "}" }
func totalKey(agg int) string   { return "total:{" + pcAggs[agg] + "}" }

// bindable reports whether effect keys "…{<aggregate>}" are bound to the
// aggregate: not when it contains '}'.
func bindable(agg int) bool { return !strings.Contains(pcAggs[agg], "}") }

// reset starts a fresh history: empty Redis, a new Memory, an empty model.
func (c *pcChecker) reset() {
	if err := c.cl.FlushAll(c.ctx).Err(); err != nil {
		c.failf("FLUSHALL: %v", err)
	}
	c.now = time.Unix(1_700_000_000, 0)
	c.mem = dedupe.NewMemory(c.cfg, func() time.Time { return c.now })
	c.stores = [2]dedupe.Store{c.red, c.mem}
	c.admins = [2]dedupe.Admin{c.red, c.mem}
	for _, r := range c.recs {
		*r = pcRecord{key: r.key, prevKey: r.prevKey, ev: r.ev, agg: r.agg, name: r.name}
	}
	c.applied = make([]int64, len(c.recs))
	c.total = make([]int64, len(pcAggs))
	c.workers = c.workers[:0]
	for i := range pcWorkers {
		c.workers = append(c.workers, &pcWorker{id: i})
	}
	c.zombies = nil
	c.leases = map[pcLeaseID]*pcLeaseInfo{}
	c.autos = [2]map[string]string{{}, {}}
	c.jumps, c.epochStep = 0, 0
	c.epochLen = 30 + c.rng.IntN(pcEpochShort-30)
	if c.rng.IntN(10) == 0 {
		c.epochLen = pcEpochShort + c.rng.IntN(pcEpochMax-pcEpochShort+1)
	}
	c.epochs++
	c.epochStart = time.Now()
	c.trace = append(c.trace, fmt.Sprintf("(reset: epoch %d)", c.epochs))
}

// failf fails the test with the seed, the step and the last steps.
func (c *pcChecker) failf(format string, args ...any) {
	c.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "protocol checker: step %d (step %d of epoch %d), seed %d: %s\n", c.step, c.epochStep, c.epochs, c.seed, fmt.Sprintf(format, args...))
	fmt.Fprintf(&b, "replay: %sFLEET_PROTOCOL_SEED=%d FLEET_PROTOCOL_STEPS=%d go test ./dedupe -run TestProtocolChecker -count=1 -v\n", c.options(), c.seed, c.step)
	b.WriteString("last steps:\n")
	for _, s := range c.trace {
		b.WriteString("  " + s + "\n")
	}
	fmt.Fprintf(&b, "  #%d %s   <- failing step\n", c.step, c.desc.String())
	c.t.Fatal(b.String())
}

// options returns the settings a replay needs besides seed and steps.
func (c *pcChecker) options() string {
	var o string
	return o
}

func (c *pcChecker) logf(format string, args ...any) {
	fmt.Fprintf(&c.desc, format, args...)
}

func (c *pcChecker) stats() string {
	keys := make([]string, 0, len(c.counts))
	for k := range c.counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n    %-32s %d", k, c.counts[k])
	}
	return b.String()
}

// run picks and applies one step.
func (c *pcChecker) run() {
	if time.Since(c.epochStart) > pcEpochWall {
		c.failf("an epoch ran for more than %v: Redis leases (1 minute, real clock) could expire by themselves; the checker's results are not valid on a machine this slow", pcEpochWall)
	}
	c.desc.Reset()
	c.touched = c.touched[:0]
	w := c.workers[c.rng.IntN(len(c.workers))]
	x := c.rng.IntN(1000)
	// Steps on held leases go to a worker that holds some.
	if x >= 400 && x < 840 {
		if h := c.holder(); h != nil {
			w = h
		} else {
			x = 0
		}
	}
	switch {
	case x < 280:
		c.stepClaim(w)
	case x < 380:
		c.stepResend(w)
	case x < 400:
		c.stepSteal(w)
	case x < 490:
		c.stepExtend(w)
	case x < 680:
		c.stepComplete(w)
	case x < 730:
		c.stepCompleteMany(w)
	case x < 780:
		c.stepRelease(w, false)
	case x < 820:
		c.stepRelease(w, true)
	case x < 840:
		c.stepCrash(w)
	case x < 880:
		c.stepZombie(w)
	case x < 892:
		c.stepJump()
	case x < 920:
		c.stepForged(w)
	case x < 945:
		c.stepRecomplete(w)
	case x < 955:
		c.stepResetAttempts()
	case x < 960:
		c.stepBigBatch(w)
	case x < 965:
		c.stepEmptyKey(w)
	case x < 985:
		c.stepMixed(w)
	default:
		c.stepAttackRecords(w)
	}
}

// holder returns a random worker that holds leases, or nil.
func (c *pcChecker) holder() *pcWorker {
	var hs []*pcWorker
	for _, w := range c.workers {
		if len(w.held) > 0 {
			hs = append(hs, w)
		}
	}
	if len(hs) == 0 {
		return nil
	}
	return hs[c.rng.IntN(len(hs))]
}

// after checks the touched records and the effects after every step.
func (c *pcChecker) after() {
	for _, ri := range c.touched {
		c.inspect(ri)
	}
	if c.epochStep%pcSweep == 0 {
		c.sweep()
	}
	c.checkEffects()
	c.trace = append(c.trace, fmt.Sprintf("#%d %s", c.step, c.desc.String()))
	if len(c.trace) > pcTrace {
		c.trace = c.trace[len(c.trace)-pcTrace:]
	}
}

func (c *pcChecker) sweep() {
	for ri := range c.recs {
		c.inspect(ri)
	}
}

func (c *pcChecker) touch(ri int) { c.touched = append(c.touched, ri) }

func (c *pcChecker) token(w *pcWorker) string {
	c.seq++
	return fmt.Sprintf("w%d:%d", w.id, c.seq)
}

// pickRecord picks an event, usually under its own aggregate, sometimes a
// copy under another one, and a fingerprint, usually the first.
//
// A third of the picks go to a record that is processing or released, if
// any (a rebalanced partition: another worker meets the same events), with
// the payload it was first claimed with.
func (c *pcChecker) pickRecord() (int, string) {
	if c.rng.IntN(3) == 0 {
		var live []int
		for ri, r := range c.recs {
			if r.state == 'p' || r.state == 'r' {
				live = append(live, ri)
			}
		}
		if len(live) > 0 {
			ri := live[c.rng.IntN(len(live))]
			return ri, c.recs[ri].fp
		}
	}
	ev := c.rng.IntN(len(c.events))
	agg := c.events[ev].home
	if c.rng.IntN(100) < 20 {
		agg = c.rng.IntN(len(pcAggs))
	}
	fp := c.events[ev].fps[0]
	if c.rng.IntN(100) < 15 {
		fp = c.events[ev].fps[1]
	}
	return pcRec(ev, agg), fp
}

// freshClaim is a claim of a random record with a new owner token, or, now
// and then, with none (the store makes one).
func (c *pcChecker) freshClaim(w *pcWorker) pcClaim {
	ri, fp := c.pickRecord()
	return c.claimOf(w, ri, fp)
}

func (c *pcChecker) claimOf(w *pcWorker, ri int, fp string) pcClaim {
	if c.rng.IntN(100) < 5 {
		c.seq++
		return pcClaim{rec: ri, owner: fmt.Sprintf("auto#%d", c.seq), fp: fp}
	}
	tok := c.token(w)
	return pcClaim{rec: ri, owner: tok, tok: [2]string{tok, tok}, fp: fp}
}

func (c *pcChecker) stepClaim(w *pcWorker) {
	c.counts["claim"]++
	n := 1
	if c.rng.IntN(100) < 20 {
		n = 2 + c.rng.IntN(5)
	}
	items := make([]pcClaim, 0, n)
	for i := range n {
		switch x := c.rng.IntN(100); {
		case i > 0 && x < 10: // the same record again, another owner
			items = append(items, c.claimOf(w, items[i-1].rec, items[i-1].fp))
		case i > 0 && x < 15: // the same claim twice in one batch
			it := items[i-1]
			if it.tok[0] == "" { // the store makes a token per item: another owner
				c.seq++
				it.owner = fmt.Sprintf("auto#%d", c.seq)
			}
			items = append(items, it)
		case x < 25 && len(w.past) > 0: // a re-sent claim in a batch of new ones
			items = append(items, w.past[c.rng.IntN(len(w.past))])
		default:
			items = append(items, c.freshClaim(w))
		}
	}
	c.claims(w, "claim", items)
}

func (c *pcChecker) stepResend(w *pcWorker) {
	if len(w.past) == 0 {
		c.stepClaim(w)
		return
	}
	c.counts["resend"]++
	c.claims(w, "resend", []pcClaim{w.past[c.rng.IntN(len(w.past))]})
}

// stepSteal: a careless deployment gives two workers one owner token (a
// fixed host name): w claims a record another worker holds, with its token.
func (c *pcChecker) stepSteal(w *pcWorker) {
	other := c.workers[c.rng.IntN(len(c.workers))]
	if other == w || len(other.held) == 0 {
		c.stepClaim(w)
		return
	}
	c.counts["steal"]++
	l := other.held[c.rng.IntN(len(other.held))]
	c.claims(w, fmt.Sprintf("steal-from-w%d", other.id), []pcClaim{{rec: l.rec, owner: l.owner, tok: l.tok, fp: l.fp}})
}

func (c *pcChecker) stepBigBatch(w *pcWorker) {
	c.counts["big-batch"]++
	n := 129 + c.rng.IntN(72)
	items := make([]pcClaim, n)
	for i := range items {
		items[i] = c.freshClaim(w)
	}
	c.claims(w, "big-batch", items)
}

// stepEmptyKey: a batch with an empty key fails whole, and claims nothing.
func (c *pcChecker) stepEmptyKey(w *pcWorker) {
	c.counts["empty-key"]++
	n := 1 + c.rng.IntN(4)
	bad := c.rng.IntN(n + 1)
	var claims [2][]dedupe.Claim
	c.logf("empty-key w%d [", w.id)
	for i := range n + 1 {
		if i == bad {
			for s := range 2 {
				claims[s] = append(claims[s], dedupe.Claim{Fingerprint: "x"})
			}
			c.logf(" <empty>")
			continue
		}
		it := c.freshClaim(w)
		r := c.recs[it.rec]
		c.touch(it.rec)
		c.logf(" %s", r.name)
		for s := range 2 {
			claims[s] = append(claims[s], dedupe.Claim{Key: r.key, Owner: it.tok[s], Fingerprint: it.fp, PreviousKey: r.prevKey, PreviousFingerprint: it.fp})
		}
	}
	c.logf(" ]")
	for s := range 2 {
		res, err := c.stores[s].ClaimBatch(c.ctx, claims[s])
		if !errors.Is(err, dedupe.ErrInvalid) || res != nil {
			c.failf("%s: a claim batch with an empty key answered %v, %v; want no answers and an error wrapping ErrInvalid", pcStoreNames[s], res, err)
		}
	}
	c.logf(" → invalid")
}

// pcWant is the model's answer to a claim, and what it knew before.
type pcWant struct {
	res      dedupe.ClaimResult
	resend   bool
	stale    bool // a late copy of a claim whose owner let go: busy, no wait
	existed  bool
	firstFP  string
	everDone bool
	maxFence int64
}

// modelClaim applies one claim to the model.
func (c *pcChecker) modelClaim(it pcClaim) pcWant {
	r := c.recs[it.rec]
	w := pcWant{existed: r.state != 0, firstFP: r.fp, everDone: r.everDone, maxFence: r.maxFence}
	acquire := func(took bool) {
		w.res = dedupe.ClaimResult{Outcome: dedupe.Acquired, TakenOver: took}
	}
	switch {
	case r.state == 0:
		r.state, r.fp, r.fence, r.attempts = 'p', it.fp, 1, 1
		r.owner, r.expired = it.owner, false
		acquire(false)
	case r.fp != it.fp:
		w.res = dedupe.ClaimResult{Outcome: dedupe.Conflict}
	case r.state == 'd':
		w.res = dedupe.ClaimResult{Outcome: dedupe.Duplicate, Result: r.result}
	case r.state == 'p' && r.owner == it.owner:
		w.res = dedupe.ClaimResult{Outcome: dedupe.Acquired}
		w.resend = true
	case r.lastOwner != "" && r.lastOwner == it.owner:
		w.res = dedupe.ClaimResult{Outcome: dedupe.Busy}
		w.stale = true
	case r.state == 'p' && !r.expired:
		w.res = dedupe.ClaimResult{Outcome: dedupe.Busy}
	default:
		took := r.state == 'p'
		if took {
			if info := c.leases[pcLeaseID{it.rec, r.owner, r.fence}]; info != nil {
				info.takenOver = true
			}
			r.lastOwner = r.owner
		}
		r.fence++
		r.attempts++
		r.state, r.owner, r.expired = 'p', it.owner, false
		acquire(took)
	}
	if w.res.Outcome == dedupe.Acquired {
		w.res.Lease = dedupe.Lease{Key: r.key, Owner: it.owner, Fence: r.fence}
		w.res.Attempts = r.attempts
		r.maxFence = max(r.maxFence, r.fence)
		id := pcLeaseID{it.rec, it.owner, r.fence}
		if c.leases[id] == nil {
			c.leases[id] = &pcLeaseInfo{}
		}
	}
	return w
}

func outcomeText(r dedupe.ClaimResult) string {
	switch r.Outcome {
	case dedupe.Acquired:
		s := fmt.Sprintf("acq f%d a%d", r.Lease.Fence, r.Attempts)
		if r.TakenOver {
			s += " took"
		}
		return s
	case dedupe.Duplicate:
		return fmt.Sprintf("dup %q", r.Result)
	case dedupe.Busy:
		return "busy"
	case dedupe.Conflict:
		return "conflict"
	}
	return r.Outcome.String()
}

// claims sends one claim batch to both stores and checks the answers.
func (c *pcChecker) claims(w *pcWorker, label string, items []pcClaim) {
	wants := make([]pcWant, len(items))
	for i, it := range items {
		wants[i] = c.modelClaim(it)
		c.touch(it.rec)
	}
	var got [2][]dedupe.ClaimResult
	for s := range 2 {
		cl := make([]dedupe.Claim, len(items))
		for i, it := range items {
			r := c.recs[it.rec]
			cl[i] = dedupe.Claim{Key: r.key, Owner: it.tok[s], Fingerprint: it.fp, PreviousKey: r.prevKey, PreviousFingerprint: it.fp}
		}
		res, err := c.stores[s].ClaimBatch(c.ctx, cl)
		if err != nil {
			c.failf("%s: ClaimBatch of %d claims: %v", pcStoreNames[s], len(cl), err)
		}
		if len(res) != len(items) {
			c.failf("%s: ClaimBatch: %d answers for %d claims", pcStoreNames[s], len(res), len(items))
		}
		got[s] = res
	}
	c.logf("%s w%d [", label, w.id)
	for i, it := range items {
		if len(items) <= 8 {
			c.logf(" %s/%s tok=%s → %s", c.recs[it.rec].name, fpName(c, it), it.owner, outcomeText(got[0][i]))
		}
		c.checkClaim(it, wants[i], got[0][i], got[1][i])
	}
	if len(items) > 8 {
		n := map[dedupe.Outcome]int{}
		for _, r := range got[0] {
			n[r.Outcome]++
		}
		c.logf(" %d claims: %d acquired, %d busy, %d duplicate, %d conflict", len(items), n[dedupe.Acquired], n[dedupe.Busy], n[dedupe.Duplicate], n[dedupe.Conflict])
	}
	c.logf(" ]")
	for i, it := range items {
		if got[0][i].Outcome != dedupe.Acquired {
			continue
		}
		l := pcLease{rec: it.rec, owner: it.owner, tok: it.tok, fence: got[0][i].Lease.Fence, fp: it.fp}
		for s := range 2 {
			if it.tok[s] == "" {
				l.tok[s] = got[s][i].Lease.Owner
				c.autos[s][l.tok[s]] = it.owner
			}
		}
		w.addHeld(l)
		w.addPast(pcClaim{rec: it.rec, owner: it.owner, tok: l.tok, fp: it.fp})
	}
	for i, it := range items {
		if got[0][i].Outcome != dedupe.Acquired && it.tok[0] != "" {
			w.addPast(it)
		}
	}
}

func fpName(c *pcChecker, it pcClaim) string {
	if it.fp == c.events[c.recs[it.rec].ev].fps[0] {
		return "fp1"
	}
	return "fp2"
}

func (w *pcWorker) addHeld(l pcLease) {
	for _, h := range w.held {
		if h.rec == l.rec && h.owner == l.owner && h.fence == l.fence {
			return
		}
	}
	w.held = append(w.held, l)
}

func (w *pcWorker) addPast(it pcClaim) {
	w.past = append(w.past, it)
	if len(w.past) > 16 {
		w.past = w.past[1:]
	}
}

func (w *pcWorker) drop(l pcLease) {
	for i, h := range w.held {
		if h.rec == l.rec && h.owner == l.owner && h.fence == l.fence {
			w.held = append(w.held[:i], w.held[i+1:]...)
			return
		}
	}
}

// checkClaim compares the answers of both stores to one claim with each
// other, with the guarantees, and with the model.
func (c *pcChecker) checkClaim(it pcClaim, want pcWant, red, mem dedupe.ClaimResult) {
	r := c.recs[it.rec]
	if d := claimDiff(red, mem); d != "" {
		c.failf("Redis and Memory disagree on the claim of %s (owner %s): redis %s, memory %s: %s", r.name, it.owner, outcomeText(red), outcomeText(mem), d)
	}
	c.counts["claim:"+claimStat(red, want)]++
	for s, a := range [2]dedupe.ClaimResult{red, mem} {
		name := pcStoreNames[s]
		if want.everDone && a.Outcome != dedupe.Duplicate && a.Outcome != dedupe.Conflict {
			c.failf("%s: done record %s ran again: a later claim answered %s", name, r.name, outcomeText(a))
		}
		if want.existed && it.fp != want.firstFP && a.Outcome != dedupe.Conflict {
			c.failf("%s: the first payload of %s did not stand: a claim with another fingerprint answered %s", name, r.name, outcomeText(a))
		}
		if a.Outcome == dedupe.Acquired && !want.resend && a.Lease.Fence <= want.maxFence {
			c.failf("%s: the fence of %s did not grow: acquired at fence %d, fence %d was handed out before", name, r.name, a.Lease.Fence, want.maxFence)
		}
		if a.Outcome == dedupe.Acquired {
			if a.Lease.Key != r.key {
				c.failf("%s: lease key %q, want %q", name, a.Lease.Key, r.key)
			}
			if it.tok[s] != "" && a.Lease.Owner != it.tok[s] || a.Lease.Owner == "" {
				c.failf("%s: lease owner %q, sent %q", name, a.Lease.Owner, it.tok[s])
			}
		}
		if a.Outcome == dedupe.Busy && a.RetryAfter <= 0 && !want.stale {
			c.failf("%s: busy with RetryAfter %v", name, a.RetryAfter)
		}
		w := want.res
		if a.Outcome != w.Outcome || a.Lease.Fence != w.Lease.Fence || a.Attempts != w.Attempts || a.TakenOver != w.TakenOver || !bytes.Equal(a.Result, w.Result) {
			c.failf("%s: claim of %s (owner %s, %s) answered %s, the model says %s", name, r.name, it.owner, fpName(c, it), outcomeText(a), outcomeText(w))
		}
	}
}

func claimStat(r dedupe.ClaimResult, w pcWant) string {
	switch {
	case r.Outcome == dedupe.Acquired && w.resend:
		return "acquired again (resent)"
	case r.TakenOver:
		return "taken over"
	case r.Outcome == dedupe.Acquired && r.Lease.Fence > 1:
		return "acquired after release"
	}
	return r.Outcome.String()
}

// claimDiff says how two answers to one claim differ; Busy's RetryAfter and
// store-made owner tokens may.
func claimDiff(a, b dedupe.ClaimResult) string {
	switch {
	case a.Outcome != b.Outcome:
		return "outcome"
	case a.Outcome == dedupe.Acquired && (a.Lease.Fence != b.Lease.Fence || a.Attempts != b.Attempts || a.TakenOver != b.TakenOver || a.Lease.Key != b.Lease.Key):
		return "lease"
	case a.Outcome == dedupe.Duplicate && !bytes.Equal(a.Result, b.Result):
		return "result"
	}
	return ""
}

func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, dedupe.ErrLeaseLost):
		return "lost"
	case errors.Is(err, dedupe.ErrInvalid):
		return "invalid"
	}
	return "error: " + err.Error()
}

// checkItem compares per-item answers of both stores with each other, with
// the model, and checks that a lost lease had been taken over.
func (c *pcChecker) checkItem(op string, l pcLease, want string, allowLost bool, red, mem error) {
	r := c.recs[l.rec]
	cr, cm := errClass(red), errClass(mem)
	c.counts[op+":"+cr]++
	if cr != cm {
		c.failf("Redis and Memory disagree on %s of %s (owner %s, fence %d): redis %v, memory %v", op, r.name, l.owner, l.fence, red, mem)
	}
	for s, got := range [2]string{cr, cm} {
		if got == "lost" && !allowLost {
			c.failf("%s: %s of %s (owner %s, fence %d) answered ErrLeaseLost, but no jump expired that lease and no other claim took it over, and it was not completed or released", pcStoreNames[s], op, r.name, l.owner, l.fence)
		}
		if got != want {
			c.failf("%s: %s of %s (owner %s, fence %d) answered %s (%v), the model says %s", pcStoreNames[s], op, r.name, l.owner, l.fence, got, [2]error{red, mem}[s], want)
		}
	}
}

// info returns the lease info of l and whether losing l is allowed now:
// taken over after a jump, or completed or released by l before. A lease
// the model does not know (a forged one) may be lost.
func (c *pcChecker) info(l pcLease) (*pcLeaseInfo, bool) {
	info := c.leases[pcLeaseID{l.rec, l.owner, l.fence}]
	if info == nil {
		return nil, true
	}
	return info, info.finished || info.jumped && info.takenOver
}

func (c *pcChecker) owns(l pcLease) bool {
	r := c.recs[l.rec]
	return r.state == 'p' && r.owner == l.owner && r.fence == l.fence
}

func (l pcLease) lease(c *pcChecker, s int) dedupe.Lease {
	return dedupe.Lease{Key: c.recs[l.rec].key, Owner: l.tok[s], Fence: l.fence}
}

func (c *pcChecker) stepExtend(w *pcWorker) {
	if len(w.held) == 0 {
		c.stepClaim(w)
		return
	}
	c.counts["extend"]++
	c.logf("extend w%d [", w.id)
	c.extend(w.held)
	c.logf(" ]")
	var keep []pcLease
	for _, l := range w.held {
		if c.owns(l) {
			keep = append(keep, l)
		}
	}
	w.held = keep
}

// extend sends one ExtendBatch of leases to both stores and checks it.
func (c *pcChecker) extend(leases []pcLease) []string {
	wants := make([]string, len(leases))
	allow := make([]bool, len(leases))
	for i, l := range leases {
		c.touch(l.rec)
		_, allow[i] = c.info(l)
		wants[i] = "lost"
		if c.owns(l) {
			wants[i] = "ok"
			c.recs[l.rec].expired = false
		}
	}
	var got [2][]error
	for s := range 2 {
		ls := make([]dedupe.Lease, len(leases))
		for i, l := range leases {
			ls[i] = l.lease(c, s)
		}
		errs, err := c.stores[s].ExtendBatch(c.ctx, ls)
		if err != nil || len(errs) != len(ls) {
			c.failf("%s: ExtendBatch of %d leases: %d answers, %v", pcStoreNames[s], len(ls), len(errs), err)
		}
		got[s] = errs
	}
	for i, l := range leases {
		c.logf(" %s/%s/f%d → %s", c.recs[l.rec].name, l.owner, l.fence, errClass(got[0][i]))
		c.checkItem("extend", l, wants[i], allow[i], got[0][i], got[1][i])
	}
	return wants
}

// chooseVariant picks the effects of a completion:
//
//	A  HINCRBY applied:{agg} <identity> 1, INCRBY total:{agg} 1
//	F  INCRBY total:{agg} 1 alone (the script's fast path)
//	U  A and INCRBY total:{other} 1, a key of no aggregate: refused
//	T  A and INCRBY applied:{agg} 1, a hash: refused, nothing applied
//	O  A and INCRBY total:{agg} by MaxInt64: overflow, refused
//	R  HINCRBY, then HSET on the record itself: refused
//	W  INCRBY applied:{agg} 1 alone when it is a hash (fast path): refused
//	E  no effects (for the aggregate that binds no key)
func (c *pcChecker) chooseVariant(l pcLease) byte {
	agg := c.recs[l.rec].agg
	if !bindable(agg) && c.rng.IntN(2) == 0 {
		return 'E'
	}
	switch x := c.rng.IntN(100); {
	case x < 10:
		return 'U'
	case x < 16:
		return 'F'
	case x < 19:
		return 'T'
	case x < 22:
		return 'O'
	case x < 24:
		return 'R'
	case x < 27 && c.hashExists(agg):
		return 'W'
	}
	return 'A'
}

func (c *pcChecker) hashExists(agg int) bool {
	for ev := range c.events {
		if c.applied[pcRec(ev, agg)] != 0 {
			return true
		}
	}
	return false
}

func (c *pcChecker) newComp(l pcLease) pcComp {
	pc := pcComp{l: l, variant: c.chooseVariant(l)}
	if c.rng.IntN(2) == 0 {
		pc.result = fmt.Appendf(nil, "res:%s:%d", l.owner, l.fence)
	}
	return pc
}

func (c *pcChecker) completion(pc pcComp, s int) dedupe.Completion {
	r := c.recs[pc.l.rec]
	ak, tk := appliedKey(r.agg), totalKey(r.agg)
	hincr := handlers.Op{Kind: handlers.OpHIncrBy, Key: ak, Field: c.events[r.ev].identity, Delta: 1}
	incr := handlers.Op{Kind: handlers.OpIncrBy, Key: tk, Delta: 1}
	var ops []handlers.Op
	switch pc.variant {
	case 'A':
		ops = []handlers.Op{hincr, incr}
	case 'F':
		ops = []handlers.Op{incr}
	case 'U':
		ops = []handlers.Op{hincr, incr, {Kind: handlers.OpIncrBy, Key: pcUnbound, Delta: 1}}
	case 'T':
		ops = []handlers.Op{hincr, incr, {Kind: handlers.OpIncrBy, Key: ak, Delta: 1}}
	case 'O':
		ops = []handlers.Op{hincr, incr, {Kind: handlers.OpIncrBy, Key: tk, Delta: math.MaxInt64}}
	case 'R':
		ops = []handlers.Op{hincr, {Kind: handlers.OpHSet, Key: r.key, Field: "s", Value: "d"}}
	case 'W':
		ops = []handlers.Op{{Kind: handlers.OpIncrBy, Key: ak, Delta: 1}}
	case 'X': // the attack: another event's record of the same aggregate, marked done
		victim := c.recs[pcRec((r.ev+1)%len(c.events), r.agg)]
		ops = []handlers.Op{hincr, incr,
			{Kind: handlers.OpHSet, Key: victim.key, Field: "s", Value: "d"},
			{Kind: handlers.OpHSet, Key: victim.key, Field: "f", Value: "1"},
			{Kind: handlers.OpHSet, Key: victim.key, Field: "a", Value: "1"},
			{Kind: handlers.OpHSet, Key: victim.key, Field: "p", Value: c.events[victim.ev].fps[0]}}
	}
	return dedupe.Completion{Lease: pc.l.lease(c, s), Effects: ops, Result: pc.result}
}

// modelComplete applies one completion to the model: the effects are
// checked for their binding first, then a record done at the lease's fence
// answers ok, a lease that is not the record's is lost, and effects Redis
// would refuse make it invalid.
func (c *pcChecker) modelComplete(pc pcComp) (string, bool) {
	r := c.recs[pc.l.rec]
	info, allow := c.info(pc.l)
	// Effects on fleet's own keys (the record itself, another record) are
	// refused before anything else, like unbound ones.
	bound := pc.variant == 'E' || pc.variant != 'U' && pc.variant != 'R' && pc.variant != 'X' && bindable(r.agg)
	switch {
	case !bound:
		return "invalid", allow
	case r.state == 'd' && r.fence == pc.l.fence:
		return "ok", allow
	case !c.owns(pc.l):
		return "lost", allow
	case strings.IndexByte("TOW", pc.variant) >= 0:
		return "invalid", allow
	}
	switch pc.variant {
	case 'A', 'X':
		c.applied[pc.l.rec]++
		c.total[r.agg]++
	case 'F':
		c.total[r.agg]++
	}
	r.state, r.owner, r.lastOwner, r.expired, r.everDone = 'd', "", "", false, true
	if len(pc.result) > 0 {
		r.result = pc.result
	}
	if info != nil {
		info.finished = true
	}
	return "ok", allow
}

// complete sends one CompleteBatch to both stores and checks it.
func (c *pcChecker) complete(comps []pcComp) []string {
	answers := make([]string, len(comps))
	var sent []pcComp
	var wants []string
	var allow []bool
	for i, pc := range comps {
		c.touch(pc.l.rec)
		want, ok := c.modelComplete(pc)
		answers[i] = want
		sent, wants, allow = append(sent, pc), append(wants, want), append(allow, ok)
	}
	if len(sent) == 0 {
		return answers
	}
	var got [2][]error
	for s := range 2 {
		cs := make([]dedupe.Completion, len(sent))
		for i, pc := range sent {
			cs[i] = c.completion(pc, s)
		}
		errs, err := c.stores[s].CompleteBatch(c.ctx, cs)
		if err != nil || len(errs) != len(cs) {
			c.failf("%s: CompleteBatch of %d completions: %d answers, %v", pcStoreNames[s], len(cs), len(errs), err)
		}
		got[s] = errs
	}
	for i, pc := range sent {
		c.logf(" %s/%s/f%d/%c → %s", c.recs[pc.l.rec].name, pc.l.owner, pc.l.fence, pc.variant, errClass(got[0][i]))
		c.checkItem("complete", pc.l, wants[i], allow[i], got[0][i], got[1][i])
	}
	return answers
}

// settle updates a worker's holdings after a completion answered.
func (w *pcWorker) settle(pc pcComp, answer string) {
	switch answer {
	case "ok":
		w.drop(pc.l)
		w.finished = append(w.finished, pc)
		if len(w.finished) > 8 {
			w.finished = w.finished[1:]
		}
	case "lost", "skipped":
		w.drop(pc.l)
	}
}

func (c *pcChecker) stepComplete(w *pcWorker) {
	if len(w.held) == 0 {
		c.stepClaim(w)
		return
	}
	c.counts["complete"]++
	pc := c.newComp(w.held[c.rng.IntN(len(w.held))])
	switch x := c.rng.IntN(100); {
	case x < 10: // the same completion twice in one batch
		c.logf("complete-twice-in-batch w%d [", w.id)
		ans := c.complete([]pcComp{pc, pc})
		w.settle(pc, ans[0])
	case x < 20: // the same completion sent again (a timed-out reply)
		c.logf("complete-resent w%d [", w.id)
		ans := c.complete([]pcComp{pc})
		c.logf(" ] again [")
		c.complete([]pcComp{pc})
		w.settle(pc, ans[0])
	default:
		c.logf("complete w%d [", w.id)
		ans := c.complete([]pcComp{pc})
		w.settle(pc, ans[0])
	}
	c.logf(" ]")
}

// stepCompleteMany: a worker completes several of its leases in one batch,
// each with its own effects.
func (c *pcChecker) stepCompleteMany(w *pcWorker) {
	if len(w.held) == 0 {
		c.stepClaim(w)
		return
	}
	c.counts["complete-many"]++
	var comps []pcComp
	for _, l := range w.held {
		if c.rng.IntN(100) < 70 {
			comps = append(comps, c.newComp(l))
		}
	}
	if len(comps) == 0 {
		comps = append(comps, c.newComp(w.held[0]))
	}
	c.logf("complete-many w%d [", w.id)
	ans := c.complete(comps)
	c.logf(" ]")
	for i, pc := range comps {
		w.settle(pc, ans[i])
	}
}

// stepRecomplete: a completion that succeeded earlier is sent again, maybe
// long after (a retried batch): it answers ok and applies nothing.
func (c *pcChecker) stepRecomplete(w *pcWorker) {
	if len(w.finished) == 0 {
		c.stepComplete(w)
		return
	}
	c.counts["recomplete"]++
	c.logf("recomplete w%d [", w.id)
	c.complete([]pcComp{w.finished[c.rng.IntN(len(w.finished))]})
	c.logf(" ]")
}

// release sends Release or Unclaim of l to both stores and checks it.
func (c *pcChecker) release(l pcLease, unclaim bool) string {
	op := "release"
	if unclaim {
		op = "unclaim"
	}
	c.touch(l.rec)
	r := c.recs[l.rec]
	info, allow := c.info(l)
	want := "lost"
	switch {
	case r.state == 'r' && r.fence == l.fence:
		want = "ok"
	case c.owns(l):
		want = "ok"
		r.state, r.lastOwner, r.owner, r.expired = 'r', r.owner, "", false
		if unclaim && r.attempts > 0 {
			r.attempts--
		}
		if info != nil {
			info.finished = true
		}
	}
	var got [2]error
	for s := range 2 {
		if unclaim {
			got[s] = c.stores[s].Unclaim(c.ctx, l.lease(c, s))
		} else {
			got[s] = c.stores[s].Release(c.ctx, l.lease(c, s))
		}
		if cl := errClass(got[s]); cl != "ok" && cl != "lost" {
			c.failf("%s: %s: %v", pcStoreNames[s], op, got[s])
		}
	}
	c.logf(" %s/%s/f%d → %s", r.name, l.owner, l.fence, errClass(got[0]))
	c.checkItem(op, l, want, allow, got[0], got[1])
	return want
}

func (c *pcChecker) stepRelease(w *pcWorker, unclaim bool) {
	if len(w.held) == 0 {
		c.stepClaim(w)
		return
	}
	op := "release"
	if unclaim {
		op = "unclaim"
	}
	c.counts[op]++
	l := w.held[c.rng.IntN(len(w.held))]
	c.logf("%s w%d [", op, w.id)
	c.release(l, unclaim)
	if c.rng.IntN(100) < 10 { // sent again
		c.release(l, unclaim)
	}
	c.logf(" ]")
	w.drop(l)
}

// stepCrash: the worker dies without releasing anything; its leases live on
// as zombies (a paused process that may wake up).
func (c *pcChecker) stepCrash(w *pcWorker) {
	c.counts["crash"]++
	c.logf("crash w%d (%d leases become zombies)", w.id, len(w.held))
	c.zombies = append(c.zombies, w.held...)
	if len(c.zombies) > 32 {
		c.zombies = c.zombies[len(c.zombies)-32:]
	}
	w.held, w.past, w.finished = nil, nil, nil
}

// stepZombie: a paused worker wakes up and uses an old lease.
func (c *pcChecker) stepZombie(w *pcWorker) {
	if len(c.zombies) == 0 {
		c.stepClaim(w)
		return
	}
	c.counts["zombie"]++
	i := c.rng.IntN(len(c.zombies))
	l := c.zombies[i]
	var ans string
	switch x := c.rng.IntN(100); {
	case x < 60:
		c.logf("zombie complete [")
		ans = c.complete([]pcComp{c.newComp(l)})[0]
	case x < 80:
		c.logf("zombie extend [")
		ans = c.extend([]pcLease{l})[0]
	case x < 90:
		c.logf("zombie release [")
		ans = c.release(l, false)
	default:
		c.logf("zombie unclaim [")
		ans = c.release(l, true)
	}
	c.logf(" ]")
	if ans == "lost" || ans == "skipped" || ans == "ok" && !c.owns(l) || c.rng.IntN(2) == 0 {
		c.zombies = append(c.zombies[:i], c.zombies[i+1:]...)
	}
}

// stepJump expires every lease at once: the clock jumps past the lease (or
// every worker was paused). Memory's clock moves by Lease+1ms; in Redis the
// deadline field of every processing record is set in the past.
func (c *pcChecker) stepJump() {
	if c.jumps == pcMaxJumps {
		c.logf("jump → epoch full of jumps: ")
		c.sweep()
		c.reset()
		c.logf("reset")
		return
	}
	c.counts["jump"]++
	c.jumps++
	c.now = c.now.Add(c.cfg.Lease + time.Millisecond)
	pipe := c.cl.Pipeline()
	states := make([]*redis.StringCmd, len(c.recs))
	for i, r := range c.recs {
		states[i] = pipe.HGet(c.ctx, r.key, "s")
	}
	if _, err := pipe.Exec(c.ctx); err != nil && !errors.Is(err, redis.Nil) {
		c.failf("jump: %v", err)
	}
	pipe = c.cl.Pipeline()
	n := 0
	for i, r := range c.recs {
		if states[i].Val() == "p" {
			pipe.HSet(c.ctx, r.key, "l", 1)
			n++
		}
		if (states[i].Val() == "p") != (r.state == 'p') {
			c.failf("jump: redis record %s in state %q, the model says %q", r.name, states[i].Val(), string(r.state))
		}
		if r.state == 'p' {
			r.expired = true
		}
	}
	if n > 0 {
		if _, err := pipe.Exec(c.ctx); err != nil {
			c.failf("jump: %v", err)
		}
	}
	for _, info := range c.leases {
		info.jumped = true
	}
	c.logf("jump (%d leases expire)", n)
}

// stepForged: a lease tampered with (a stale or future fence, another
// owner's token) is used to complete, extend or release.
func (c *pcChecker) stepForged(w *pcWorker) {
	var pool []pcLease
	for _, x := range c.workers {
		pool = append(pool, x.held...)
		for _, f := range x.finished {
			pool = append(pool, f.l)
		}
	}
	pool = append(pool, c.zombies...)
	if len(pool) == 0 {
		c.stepClaim(w)
		return
	}
	c.counts["forged"]++
	l := pool[c.rng.IntN(len(pool))]
	switch c.rng.IntN(4) {
	case 0:
		l.fence++
	case 1:
		l.fence--
	case 2:
		tok := fmt.Sprintf("forged:%d", c.step)
		l.owner, l.tok = tok, [2]string{tok, tok}
	default:
		o := pool[c.rng.IntN(len(pool))]
		l.owner, l.tok = o.owner, o.tok
	}
	switch c.rng.IntN(4) {
	case 0, 1:
		c.logf("forged complete [")
		c.complete([]pcComp{c.newComp(l)})
	case 2:
		c.logf("forged extend [")
		c.extend([]pcLease{l})
	default:
		c.logf("forged release [")
		c.release(l, c.rng.IntN(2) == 0)
	}
	c.logf(" ]")
}

// stepMixed: one CompleteBatch mixing many records and leases: held ones of
// several workers, zombies, finished ones again, in random order.
func (c *pcChecker) stepMixed(w *pcWorker) {
	var pool []pcComp
	for _, x := range c.workers {
		for _, l := range x.held {
			pool = append(pool, c.newComp(l))
		}
		pool = append(pool, x.finished...)
	}
	for _, l := range c.zombies {
		pool = append(pool, c.newComp(l))
	}
	if len(pool) == 0 {
		c.stepClaim(w)
		return
	}
	c.counts["mixed"]++
	c.rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	pool = pool[:min(len(pool), 2+c.rng.IntN(8))]
	c.logf("mixed [")
	ans := c.complete(pool)
	c.logf(" ]")
	for i, pc := range pool {
		for _, x := range c.workers {
			if ans[i] != "invalid" {
				x.drop(pc.l)
			}
		}
	}
}

// stepResetAttempts: an operator gives a record a fresh attempt budget.
func (c *pcChecker) stepResetAttempts() {
	c.counts["reset-attempts"]++
	ri, _ := c.pickRecord()
	r := c.recs[ri]
	c.touch(ri)
	want := r.state != 0 && r.state != 'd'
	if want {
		r.attempts = 0
	}
	for s := range 2 {
		got, err := c.admins[s].ResetAttempts(c.ctx, r.key)
		if err != nil || got != want {
			c.failf("%s: ResetAttempts(%s) = %v, %v; the model says %v", pcStoreNames[s], r.name, got, err, want)
		}
	}
	c.logf("reset-attempts %s → %v", r.name, want)
}

// stepAttackRecords: a completion stages effects on another event's record
// of the same aggregate (its key is bound to the aggregate), marking it done:
// refused, since keys starting with fleet: are fleet's own.
func (c *pcChecker) stepAttackRecords(w *pcWorker) {
	var ls []pcLease
	for _, l := range w.held {
		if bindable(c.recs[l.rec].agg) {
			ls = append(ls, l)
		}
	}
	if len(ls) == 0 {
		c.stepClaim(w)
		return
	}
	c.counts["attack"]++
	l := ls[c.rng.IntN(len(ls))]
	pc := pcComp{l: l, variant: 'X'}
	victim := c.recs[pcRec((c.recs[l.rec].ev+1)%len(c.events), c.recs[l.rec].agg)]
	c.touch(pcRec(victim.ev, victim.agg))
	c.logf("attack-records w%d (effects on %s's record) [", w.id, victim.name)
	ans := c.complete([]pcComp{pc})
	c.logf(" ]")
	w.settle(pc, ans[0])
}

// inspect compares a record in both stores (Admin.Inspect) with the model.
func (c *pcChecker) inspect(ri int) {
	r := c.recs[ri]
	for s := range 2 {
		name := pcStoreNames[s]
		got, err := c.admins[s].Inspect(c.ctx, r.key)
		if r.state == 0 {
			if !errors.Is(err, dedupe.ErrNotFound) {
				c.failf("%s: Inspect(%s) = %+v, %v; the model has no record", name, r.name, got, err)
			}
			continue
		}
		if err != nil {
			c.failf("%s: Inspect(%s): %v; the model has %s at fence %d", name, r.name, err, pcStateName(r.state), r.fence)
		}
		owner := got.Owner
		if l, ok := c.autos[s][owner]; ok {
			owner = l
		}
		var expired bool
		if s == 0 {
			expired = got.LeaseDeadline.UnixMilli() == 1
		} else {
			expired = !got.LeaseDeadline.After(c.now)
		}
		switch {
		case got.State != pcStateName(r.state) || got.Fence != r.fence || got.Attempts != r.attempts:
			c.failf("%s: record %s is %s at fence %d with %d attempts, the model says %s at fence %d with %d attempts",
				name, r.name, got.State, got.Fence, got.Attempts, pcStateName(r.state), r.fence, r.attempts)
		case got.Fingerprint != r.fp:
			c.failf("%s: the first payload of %s did not stand: Inspect reports fingerprint %q, it was first claimed with %q", name, r.name, got.Fingerprint, r.fp)
		case !bytes.Equal(got.Result, r.result):
			c.failf("%s: record %s holds result %q, want %q", name, r.name, got.Result, r.result)
		case got.TTL <= 0:
			c.failf("%s: record %s has TTL %v", name, r.name, got.TTL)
		case r.state == 'p' && owner != r.owner:
			c.failf("%s: record %s is processing under owner %s, the model says %s", name, r.name, owner, r.owner)
		case r.state == 'p' && expired != r.expired:
			c.failf("%s: record %s has lease deadline %v (expired %v), the model says expired %v", name, r.name, got.LeaseDeadline, expired, r.expired)
		case r.state != 'p' && (got.Owner != "" || !got.LeaseDeadline.IsZero()):
			c.failf("%s: record %s is %s but keeps owner %q and deadline %v", name, r.name, got.State, got.Owner, got.LeaseDeadline)
		}
	}
}

// bucketKeys counts the keys in Redis that hold packed done records, and
// the slice those are kept by.
func (c *pcChecker) bucketKeys() int {
	all, err := c.cl.Keys(c.ctx, "fleet:idem:*").Result()
	if err != nil {
		c.failf("KEYS: %v", err)
	}
	n := 0
	for _, k := range all {
		if strings.Contains(k, "}:~") || k == dedupe.SliceKey {
			n++
		}
	}
	return n
}

func pcStateName(s byte) string {
	switch s {
	case 'p':
		return dedupe.StateProcessing
	case 'd':
		return dedupe.StateDone
	case 'r':
		return dedupe.StateReleased
	}
	return "absent"
}

// checkEffects checks the effect keys in both stores against the model:
// every record's effects applied at most once (and exactly once when it is
// done), total:{agg} the number of done records, nothing at a key no
// aggregate binds, and no key in Redis but the records and effect keys.
func (c *pcChecker) checkEffects() {
	pipe := c.cl.Pipeline()
	hashes := make([]*redis.MapStringStringCmd, len(pcAggs))
	totals := make([]*redis.StringCmd, len(pcAggs))
	for a := range pcAggs {
		hashes[a] = pipe.HGetAll(c.ctx, appliedKey(a))
		totals[a] = pipe.Get(c.ctx, totalKey(a))
	}
	other := pipe.Exists(c.ctx, pcUnbound)
	size := pipe.DBSize(c.ctx)
	if _, err := pipe.Exec(c.ctx); err != nil && !errors.Is(err, redis.Nil) {
		c.failf("reading effects: %v", err)
	}
	// Records in process or released are hashes of their own; done ones
	// are packed into their aggregate's buckets.
	keys := int64(c.bucketKeys())
	for _, r := range c.recs {
		if r.state == 'p' || r.state == 'r' {
			keys++
		}
	}
	for a := range pcAggs {
		done := int64(0)
		fields := 0
		for ev := range c.events {
			ri := pcRec(ev, a)
			r := c.recs[ri]
			if r.state == 'd' {
				done++
			}
			want := c.applied[ri]
			if want != 0 {
				fields++
			}
			id := c.events[ev].identity
			rv, rok := hashes[a].Val()[id]
			mv, mok := c.mem.HGet(appliedKey(a), id)
			for s, v := range [2]string{rv, mv} {
				ok := [2]bool{rok, mok}[s]
				n, err := strconv.ParseInt(v, 10, 64)
				if ok && err != nil {
					c.failf("%s: HGET %s %s = %q", pcStoreNames[s], appliedKey(a), id, v)
				}
				if n > 1 {
					c.failf("%s: the effects of %s were applied %d times", pcStoreNames[s], r.name, n)
				}
				if n != want || ok != (want != 0) {
					c.failf("%s: HGET %s <identity of %s> = %q (present %v), the model says %d", pcStoreNames[s], appliedKey(a), r.name, v, ok, want)
				}
			}
		}
		if len(hashes[a].Val()) != fields {
			c.failf("redis: %s has %d fields, the model says %d: %v", appliedKey(a), len(hashes[a].Val()), fields, hashes[a].Val())
		}
		if fields > 0 {
			keys++
		}
		rt, rerr := totals[a].Int64()
		if rerr != nil && !errors.Is(rerr, redis.Nil) {
			c.failf("redis: GET %s: %v", totalKey(a), rerr)
		}
		mt, mok := c.mem.Lookup(totalKey(a))
		if (rerr == nil) != mok || (rerr == nil) != (c.total[a] != 0) {
			c.failf("%s exists in redis %v, in memory %v; the model says total %d", totalKey(a), rerr == nil, mok, c.total[a])
		}
		if rerr == nil {
			keys++
		}
		for s, got := range [2]string{strconv.FormatInt(rt, 10), mt} {
			if !mok && s == 1 {
				got = "0"
			}
			if got != strconv.FormatInt(c.total[a], 10) {
				c.failf("%s: %s = %s, the model says %d", pcStoreNames[s], totalKey(a), got, c.total[a])
			}
			if bindable(a) && got != strconv.FormatInt(done, 10) {
				c.failf("%s: %s = %s, but %d records of the aggregate are done", pcStoreNames[s], totalKey(a), got, done)
			}
		}
	}
	if other.Val() != 0 {
		c.failf("redis: an unbound effect was applied: %s exists", pcUnbound)
	}
	if v, ok := c.mem.Lookup(pcUnbound); ok {
		c.failf("memory: an unbound effect was applied: %s = %s", pcUnbound, v)
	}
	if size.Val() != keys {
		all, _ := c.cl.Keys(c.ctx, "*").Result()
		c.failf("redis holds %d keys, the model says %d: %q", size.Val(), keys, all)
	}
}
