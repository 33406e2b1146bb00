package dedupe_test

import (
	"math"
	"testing"
	"time"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/redistest"
)

// effectsCase is a fixed sequence of completions, one per batch, each with
// Redis's expected answer: true for done, false for refused.
type effectsCase struct {
	name string
	// raw: some effects cannot be staged through a Tx, and the kit sits
	// the case out.
	raw  bool
	runs [][]handlers.Op
	done []bool
}

// Effects on the case keys, for short tables.
var (
	ca, cb = effectsBoundKeys[0], effectsBoundKeys[1]

	set  = func(k, v string) handlers.Op { return handlers.Op{Kind: handlers.OpSet, Key: k, Value: v} }
	incr = func(k string, d int64) handlers.Op { return handlers.Op{Kind: handlers.OpIncrBy, Key: k, Delta: d} }
	del  = func(k string) handlers.Op { return handlers.Op{Kind: handlers.OpDel, Key: k} }
	hset = func(k, f, v string) handlers.Op {
		return handlers.Op{Kind: handlers.OpHSet, Key: k, Field: f, Value: v}
	}
	hincr = func(k, f string, d int64) handlers.Op {
		return handlers.Op{Kind: handlers.OpHIncrBy, Key: k, Field: f, Delta: d}
	}
	hdel   = func(k, f string) handlers.Op { return handlers.Op{Kind: handlers.OpHDel, Key: k, Field: f} }
	expire = func(k string, ttl time.Duration) handlers.Op {
		return handlers.Op{Kind: handlers.OpExpire, Key: k, TTL: ttl}
	}
	steps = func(rs ...[]handlers.Op) [][]handlers.Op { return rs }
	run   = func(os ...handlers.Op) []handlers.Op { return os }
)

// effectsCases are the disagreements TestEffectsMatchRedis found, and the
// edges around them, kept as fixed cases.
var effectsCases = []effectsCase{
	// The kit refused SET on a hash: SET replaces a key of any type.
	{name: "SET replaces a hash", runs: steps(run(hset(ca, "f", "1")), run(set(ca, "5")), run(incr(ca, 1))), done: []bool{true, true, true}},
	// The kit kept an empty hash after HDEL of its last field, or of a
	// field of no hash, and then refused string effects on the key.
	{name: "HDEL of the last field deletes the hash", runs: steps(run(hset(ca, "f", "1")), run(hdel(ca, "f"), incr(ca, 1))), done: []bool{true, true}},
	{name: "HDEL on a missing key creates nothing", runs: steps(run(hdel(ca, "f")), run(incr(ca, 1))), done: []bool{true, true}},
	{name: "HDEL of the last field, then HSET, in one run", runs: steps(run(hset(ca, "f", "1")), run(hdel(ca, "f"), hset(ca, "g", "2"), hdel(ca, "g"), set(ca, "x"))), done: []bool{true, true}},
	// The kit parsed integers with strconv: '+', leading zeros, "-0",
	// and took "" for 0.
	{name: `INCRBY refuses "+5"`, runs: steps(run(set(ca, "+5")), run(incr(ca, 1))), done: []bool{true, false}},
	{name: `INCRBY refuses "007"`, runs: steps(run(set(ca, "007")), run(incr(ca, 1))), done: []bool{true, false}},
	{name: `INCRBY refuses "-0"`, runs: steps(run(set(ca, "-0")), run(incr(ca, 1))), done: []bool{true, false}},
	{name: `INCRBY refuses ""`, runs: steps(run(set(ca, "")), run(incr(ca, 1))), done: []bool{true, false}},
	{name: "INCRBY refuses spaces", runs: steps(run(set(ca, " 5")), run(incr(ca, 1)), run(set(ca, "5 ")), run(incr(ca, 1))), done: []bool{true, false, true, false}},
	{name: `INCRBY takes "0" and "-7"`, runs: steps(run(set(ca, "0"), incr(ca, 1)), run(set(ca, "-7"), incr(ca, 1))), done: []bool{true, true}},
	{name: `HINCRBY refuses "+5", "007" and ""`, runs: steps(run(hset(cb, "p", "+5"), hset(cb, "z", "007"), hset(cb, "e", "")), run(hincr(cb, "p", 1)), run(hincr(cb, "z", 1)), run(hincr(cb, "e", 1)), run(hincr(cb, "new", 1))), done: []bool{true, false, false, false, true}},
	// Integers at the 64-bit limits.
	{name: "INCRBY up to the limit and past it", runs: steps(run(set(ca, "9223372036854775806"), incr(ca, 1)), run(incr(ca, 1)), run(incr(ca, math.MinInt64), incr(ca, math.MinInt64))), done: []bool{true, false, false}},
	{name: "INCRBY down to the limit and past it", runs: steps(run(incr(ca, math.MinInt64)), run(incr(ca, -1)), run(incr(ca, math.MaxInt64), incr(ca, math.MaxInt64))), done: []bool{true, false, true}},
	{name: "INCRBY refuses a value past the limit", runs: steps(run(set(ca, "9223372036854775808")), run(incr(ca, 0)), run(set(ca, "-9223372036854775809"), incr(ca, 0))), done: []bool{true, false, false}},
	{name: "HINCRBY past the limit", runs: steps(run(hincr(cb, "f", math.MaxInt64)), run(hincr(cb, "f", 1)), run(hincr(cb, "g", -1), hincr(cb, "g", math.MinInt64))), done: []bool{true, false, false}},
	// Types.
	{name: "string effects refuse a hash", runs: steps(run(hset(cb, "f", "1")), run(incr(cb, 1)), run(incr(ca, 1), incr(cb, 1))), done: []bool{true, false, false}},
	{name: "hash effects refuse a string", runs: steps(run(set(ca, "1")), run(hset(ca, "f", "1")), run(hincr(ca, "f", 1)), run(hdel(ca, "f"))), done: []bool{true, false, false, false}},
	{name: "DEL, then any type", runs: steps(run(hset(ca, "f", "1"), del(ca), incr(ca, 2)), run(del(ca), hset(ca, "f", "1"))), done: []bool{true, true}},
	// The kit took effects on fleet's own keys.
	{name: "effects on fleet's keys are refused", runs: steps(run(incr(ca, 1), hset("fleet:{acct}a", "s", "d")), run(del("fleet:{acct}a"))), done: []bool{false, false}},
	{name: "effects on unbound keys are refused", runs: steps(run(incr(ca, 1), incr("{other}a", 1)), run(incr("acct", 1)), run(incr("{}{acct}a", 1))), done: []bool{false, false, false}},
	// Times to live.
	{name: "SET clears a time to live, INCRBY keeps it", runs: steps(run(set(ca, "1"), expire(ca, time.Hour), incr(ca, 1)), run(set(cb, "1"), expire(cb, time.Hour)), run(set(cb, "2"))), done: []bool{true, true, true}},
	{name: "DEL clears a time to live", runs: steps(run(set(ca, "1"), expire(ca, time.Hour)), run(del(ca), set(ca, "2"))), done: []bool{true, true}},
	{name: "PEXPIRE on a missing key sets nothing", runs: steps(run(expire(ca, time.Hour)), run(set(ca, "1")), run(expire(cb, time.Hour), hset(cb, "f", "1"))), done: []bool{true, true, true}},
	{name: "HDEL of the last field drops the time to live", runs: steps(run(hset(cb, "f", "1"), expire(cb, time.Hour)), run(hdel(cb, "f"), hset(cb, "g", "1"))), done: []bool{true, true}},
	{name: "PEXPIRE at the longest time to live", runs: steps(run(set(ca, "1"), expire(ca, math.MaxInt64))), done: []bool{true}},
	{name: "PEXPIRE of zero or less deletes", raw: true, runs: steps(run(set(ca, "1"), expire(ca, 0)), run(set(ca, "1"), expire(ca, -time.Hour)), run(hset(cb, "f", "1"), expire(cb, 500*time.Microsecond)), run(set(ca, "1"), expire(ca, math.MinInt64))), done: []bool{true, true, true, true}},
	{name: "an unknown kind is refused", raw: true, runs: steps(run(incr(ca, 1), handlers.Op{Kind: 0, Key: ca}), run(handlers.Op{Kind: 99, Key: ca})), done: []bool{false, false}},
	// A refused run applies nothing, whichever effect is refused.
	{name: "a refused run applies nothing", runs: steps(run(hset(cb, "f", "1")), run(set(ca, "1"), hset(cb, "f", "2"), expire(cb, time.Hour), incr(cb, 1))), done: []bool{true, false}},
}

// TestEffectsCases runs effectsCases through Redis, Memory and the kit,
// each from empty stores.
func TestEffectsCases(t *testing.T) {
	cl := redistest.Start(t).Client(t)
	for _, c := range effectsCases {
		t.Run(c.name, func(t *testing.T) {
			if len(c.runs) != len(c.done) {
				t.Fatalf("%d runs, %d answers", len(c.runs), len(c.done))
			}
			d := newEffectsDiff(t, 0, cl)
			d.reset(c.raw)
			for i, run := range c.runs {
				red := d.complete([][]handlers.Op{run})
				if done := red[0] == nil; done != c.done[i] {
					t.Errorf("completion %d (%s): redis answered %s, the case expects done %v", i+1, runText(run), errText(red[0]), c.done[i])
				}
			}
		})
	}
}

// TestEffectsExpireInTime lets keys run out their time to live in Redis and
// in Memory (on the real clock), then builds on them: an expired key is a
// missing key, and the new one has no time to live. The kit sits it out:
// time stands still in the kit.
func TestEffectsExpireInTime(t *testing.T) {
	d := newEffectsDiff(t, 0, redistest.Start(t).Client(t))
	d.reset(true)
	ttl := 50 * time.Millisecond
	if red := d.complete(steps(run(set(ca, "x"), expire(ca, ttl), hset(cb, "f", "y"), expire(cb, ttl), set("{acct}c", "1"), expire("{acct}c", time.Hour)))); red[0] != nil {
		t.Fatal(red[0])
	}
	gone := func() bool {
		n, err := d.cl.Exists(d.ctx, ca, cb).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 0 && d.mem.Type(ca) == "none" && d.mem.Type(cb) == "none"
	}
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	deadline := time.After(5 * time.Second)
	for !gone() {
		select {
		case <-poll.C:
		case <-deadline:
			t.Fatalf("keys with a time to live of %v still exist after 5s: redis %v, memory %v %v", ttl, d.cl.Exists(d.ctx, ca, cb).Val(), d.mem.Type(ca), d.mem.Type(cb))
		}
	}
	if red := d.complete(steps(run(incr(ca, 1), hincr(cb, "g", 1)))); red[0] != nil {
		t.Fatal(red[0])
	}
	if _, ok := d.mem.TTL("{acct}c"); !ok || d.mem.Int(ca) != 1 {
		t.Fatalf("memory: {acct}c lost its time to live, or %s = %d, not 1", ca, d.mem.Int(ca))
	}
}
