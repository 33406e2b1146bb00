package dedupe_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/handlertest"
	"github.com/fleetworks/fleet/internal/redistest"
)

// TestEffectsMatchRedis is the differential test of effects. Random runs of
// effects (every kind, integers at and past the 64-bit limits, text that a
// loose parser takes for an integer, kinds meeting on one key, keys the
// store must refuse, times to live that delete) are completed through
// dedupe.Redis on a real redis-server, the truth, and through dedupe.Memory
// and the handler test kit. After every batch of completions they must
// agree on every completion (done or refused, and which effect was
// refused) and on every key: type, value, and time to live within
// effectsTTLSlack. One epoch in three is raw: its effects include some that
// no handler can stage through a Tx but a store can be handed (see
// effectsGen), and the kit sits it out.
//
// It runs for FLEET_EFFECTS_SECONDS (2 s by default), or exactly
// FLEET_EFFECTS_BATCHES batches; FLEET_EFFECTS_SEED replays a run:
//
//	FLEET_EFFECTS_SEED=<seed> FLEET_EFFECTS_BATCHES=<batch> go test ./dedupe -run TestEffectsMatchRedis -count=1 -v
func TestEffectsMatchRedis(t *testing.T) {
	seed, budget, batches := effectsOptions(t)
	t.Logf("effects differential: seed %d (replay: FLEET_EFFECTS_SEED=%d go test ./dedupe -run TestEffectsMatchRedis -count=1 -v)", seed, seed)
	d := newEffectsDiff(t, seed, redistest.Start(t).Client(t))
	start := time.Now()
	for batches < 0 && time.Since(start) < budget || d.batches < batches {
		if d.epochLeft == 0 {
			d.reset(d.gen.rng.IntN(3) == 0)
			d.epochLeft = 1 + d.gen.rng.IntN(30)
		}
		d.epochLeft--
		d.complete(d.gen.batch(d.raw))
		if d.failures == effectsMaxFailures {
			t.Fatalf("stopped after %d disagreements", d.failures)
		}
	}
	t.Logf("effects differential: seed %d, %d batches, %d completions (%d refused), %d epochs in %v",
		seed, d.batches, d.completions, d.refused, d.epoch, time.Since(start).Round(time.Millisecond))
	if d.completions == 0 || d.refused == 0 || d.refused == d.completions {
		t.Errorf("%d completions, %d refused: the runs tested nothing on one side", d.completions, d.refused)
	}
}

const (
	// effectsTTLSlack is how far the time to live of a key may differ
	// between two stores: they set it a few milliseconds apart, and no
	// generated time to live is positive and under a minute.
	effectsTTLSlack = 10 * time.Second
	// effectsGroup is the consumer group of the events' records.
	effectsGroup = "effects"
	// effectsMaxFailures stops a run that disagrees everywhere.
	effectsMaxFailures = 10
)

// effectsOptions reads the seed, the time budget and the number of batches
// (-1: until the budget is spent) from the environment.
func effectsOptions(t *testing.T) (seed uint64, budget time.Duration, batches int) {
	seed, budget, batches = uint64(time.Now().UnixNano()), 2*time.Second, -1
	if v := os.Getenv("FLEET_EFFECTS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("FLEET_EFFECTS_SEED=%q: %v", v, err)
		}
		seed = n
	}
	if v := os.Getenv("FLEET_EFFECTS_SECONDS"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			t.Fatalf("FLEET_EFFECTS_SECONDS=%q: want a positive number of seconds", v)
		}
		budget = time.Duration(f * float64(time.Second))
	}
	if v := os.Getenv("FLEET_EFFECTS_BATCHES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("FLEET_EFFECTS_BATCHES=%q: want a number of batches", v)
		}
		batches = n
	}
	return seed, budget, batches
}

// effectsDiff runs the same completions on the three implementations of
// effects. An epoch starts from empty stores; it ends after a few batches,
// or at the first disagreement.
type effectsDiff struct {
	t    *testing.T
	ctx  context.Context
	seed uint64
	gen  effectsGen
	cl   *redis.Client
	red  *dedupe.Redis
	mem  *dedupe.Memory
	kit  *handlertest.Kit
	// staged holds the effects each event's handler stages in the kit.
	staged map[string][]handlers.Op
	// raw is set in an epoch of raw effects, which the kit sits out.
	raw bool

	seq, epoch, epochLeft int
	history               []string
	batches, completions  int
	refused, failures     int
}

func newEffectsDiff(t *testing.T, seed uint64, cl *redis.Client) *effectsDiff {
	cfg := dedupe.Config{Lease: time.Minute, Retention: time.Hour}
	return &effectsDiff{
		t: t, ctx: context.Background(), seed: seed, cl: cl, red: loadedStore(t, cl, cfg),
		gen:    effectsGen{rng: rand.New(rand.NewPCG(seed, seed^0xd1b54a32d192ed03))}, // #nosec G404 -- a seeded test generator
		staged: map[string][]handlers.Op{},
	}
}

// reset empties the three stores and starts an epoch, raw or not.
func (d *effectsDiff) reset(raw bool) {
	if err := d.cl.FlushAll(d.ctx).Err(); err != nil {
		d.t.Fatalf("FLUSHALL: %v", err)
	}
	d.mem = dedupe.NewMemory(dedupe.Config{Lease: time.Minute, Retention: time.Hour}, nil)
	r := handlers.NewRouter()
	err := r.Register("effects", handlers.HandlerFunc(func(_ context.Context, ev handlers.Event, tx *handlers.Tx) error {
		for _, op := range d.staged[ev.ID] {
			tx.Stage(op)
		}
		return nil
	}))
	if err != nil {
		d.t.Fatal(err)
	}
	d.kit = handlertest.New(d.t, r, d.seed)
	d.raw = raw
	d.epoch++
	d.history = d.history[:0]
}

// throughTx returns ops as a handler's Tx hands them to the store.
func throughTx(ops []handlers.Op) []handlers.Op {
	tx := handlers.NewTx("", 0, 1)
	for _, op := range ops {
		tx.Stage(op)
	}
	return tx.Ops()
}

// complete completes one event per run, in one batch, on every store,
// and compares the answers and the keys. It returns Redis's answers.
func (d *effectsDiff) complete(runs [][]handlers.Op) []error {
	d.batches++
	evs := make([]handlers.Event, len(runs))
	for i := range evs {
		d.seq++
		id := "e" + strconv.Itoa(d.seq)
		evs[i] = handlers.Event{ID: id, Source: "effects", Type: "effects", Key: effectsAggregate, Data: []byte(id)}
		if !d.raw {
			runs[i] = throughTx(runs[i])
			d.staged[id] = runs[i]
		}
	}
	red := d.completeOn(d.red, evs, runs)
	mem := d.completeOn(d.mem, evs, runs)
	if !d.raw {
		d.kit.DeliverInOrder(evs...)
	}
	var diffs []string
	for i, ev := range evs {
		kit := "(raw: sits out)"
		if !d.raw {
			kit = errText(d.kit.Err(ev))
			diffs = append(diffs, kitAnswerDiffs(ev.ID, red[i], d.kit.Err(ev))...)
		}
		d.history = append(d.history, fmt.Sprintf("batch %d, %s: %s\n      redis %s | memory %s | kit %s",
			d.batches, ev.ID, runText(runs[i]), errText(red[i]), errText(mem[i]), kit))
		d.completions++
		if red[i] != nil {
			d.refused++
		}
		diffs = append(diffs, answerDiffs(ev.ID, red[i], mem[i])...)
		delete(d.staged, ev.ID)
	}
	diffs = append(diffs, d.keyDiffs()...)
	if len(diffs) > 0 {
		d.fail(diffs)
	}
	return red
}

// completeOn claims evs on s and completes them with runs in one batch.
func (d *effectsDiff) completeOn(s dedupe.Store, evs []handlers.Event, runs [][]handlers.Op) []error {
	claims := make([]dedupe.Claim, len(evs))
	for i := range evs {
		claims[i] = dedupe.NewClaim(effectsGroup, &evs[i])
	}
	res, err := s.ClaimBatch(d.ctx, claims)
	if err != nil {
		d.t.Fatalf("claim: %v", err)
	}
	comps := make([]dedupe.Completion, len(evs))
	for i, r := range res {
		if r.Outcome != dedupe.Acquired {
			d.t.Fatalf("claim of %s: %+v, want acquired", evs[i].ID, r)
		}
		comps[i] = dedupe.Completion{Lease: r.Lease, Effects: runs[i]}
	}
	errs, err := s.CompleteBatch(d.ctx, comps)
	if err != nil {
		d.t.Fatalf("complete: %v", err)
	}
	return errs
}

// effectIndex finds which effect an error names ("effect 3: …"), or -1.
var effectIndex = regexp.MustCompile(`effect (\d+):`)

func refusedEffect(err error) string {
	if err == nil {
		return ""
	}
	m := effectIndex.FindStringSubmatch(err.Error())
	if m == nil {
		return "?"
	}
	return m[1]
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// answerDiffs compares the answers to one completion: Memory must answer
// as Redis did, refusing the same effect.
func answerDiffs(id string, red, mem error) []string {
	if errClass(red) != errClass(mem) || refusedEffect(red) != refusedEffect(mem) {
		return []string{fmt.Sprintf("%s: redis answered %s, memory %s", id, errText(red), errText(mem))}
	}
	return nil
}

// kitAnswerDiffs compares the kit's answer with Redis's: the kit must fail
// the event exactly when Redis refused its completion, for the same effect.
func kitAnswerDiffs(id string, red, kit error) []string {
	if (red == nil) != (kit == nil) || refusedEffect(red) != refusedEffect(kit) {
		return []string{fmt.Sprintf("%s: redis answered %s, the kit %s", id, errText(red), errText(kit))}
	}
	return nil
}

// fail reports a disagreement with the epoch's history, and ends the epoch.
func (d *effectsDiff) fail(diffs []string) {
	d.t.Helper()
	d.failures++
	var b strings.Builder
	fmt.Fprintf(&b, "effects differential: seed %d, batch %d (epoch %d): Redis and the others disagree:\n", d.seed, d.batches, d.epoch)
	for _, s := range diffs {
		b.WriteString("  " + s + "\n")
	}
	if d.seed != 0 {
		fmt.Fprintf(&b, "replay: FLEET_EFFECTS_SEED=%d FLEET_EFFECTS_BATCHES=%d go test ./dedupe -run TestEffectsMatchRedis -count=1 -v\n", d.seed, d.batches)
	}
	b.WriteString("the epoch, from empty stores:\n")
	for _, h := range d.history {
		b.WriteString("  " + h + "\n")
	}
	d.t.Error(b.String())
	d.epochLeft = 0
}
