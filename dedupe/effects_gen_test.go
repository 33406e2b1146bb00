package dedupe_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fleetworks/fleet/handlers"
)

// effectsAggregate is the message key of every event of the effects
// differential test: the bound keys below carry it as hash tag.
const effectsAggregate = "acct"

// The keys effects are staged on: a few bound ones, so that the kinds
// meet on one key often, and, rarely, keys the store must refuse.
var (
	effectsBoundKeys   = []string{"{acct}a", "{acct}b", "{acct}c"}
	effectsRefusedKeys = []string{"{other}a", "acct", "", "fleet:{acct}a", "{}{acct}a"}
)

// effectsFields are the hash fields, empty and spaced ones among them.
var effectsFields = []string{"f", "g", "", " f"}

// effectsValues are the values SET and HSET write: integers at the edges
// of the 64-bit range and just past them, and text that a loose parser
// would take for an integer.
var effectsValues = []string{
	"0", "1", "-1", "42", "+5", "007", "00", "-0", "-007", " 5", "5 ", "\t1", "1\n", "",
	"abc", "1.5", "1e3", "0x10", "-", "+", "٣",
	"9223372036854775807", "9223372036854775806", "9223372036854775808", "99999999999999999999",
	"-9223372036854775808", "-9223372036854775807", "-9223372036854775809",
	"999999999", "1000000000", "-999999999", "-1000000000", "4294967296",
}

// effectsDeltas are the increments: the 64-bit limits, the units, and the
// neighbours of 10^9 (the completion script adds in base 10^9).
var effectsDeltas = []int64{
	0, 1, -1, 2, -2, 7, -7,
	math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1,
	999_999_999, 1_000_000_000, 1_000_000_001, -999_999_999, -1_000_000_000,
	1 << 32, -1 << 32, 9_223_372_035_854_775_807, -9_223_372_035_854_775_808,
}

// effectsTTLs are the times to live a handler can stage: none under a
// minute, so that no key expires by itself between one store and the next
// (expiry in time is checked on its own).
var effectsTTLs = []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 3650 * 24 * time.Hour, math.MaxInt64}

// effectsRawTTLs are the times to live only a store is handed (Tx.Expire
// raises them to a millisecond): zero, negative and sub-millisecond ones,
// which delete the key.
var effectsRawTTLs = []time.Duration{0, -time.Millisecond, -time.Hour, 500 * time.Microsecond, -500 * time.Microsecond, math.MinInt64}

// effectsGen makes random runs of effects. With raw set it also makes
// effects that no handler can stage through a Tx, but a store can be
// handed: times to live below a millisecond, kinds no store knows.
type effectsGen struct {
	rng *rand.Rand
	raw bool
}

// batch returns the runs of one to three completions.
func (g effectsGen) batch(raw bool) [][]handlers.Op {
	g.raw = raw
	runs := make([][]handlers.Op, 1+g.rng.IntN(3))
	for i := range runs {
		runs[i] = g.run()
	}
	return runs
}

// run returns the effects of one completion: one in three a single effect
// (a single INCRBY takes the script's fast path), else two to seven.
func (g effectsGen) run() []handlers.Op {
	n := 1
	if g.rng.IntN(3) != 0 {
		n = 2 + g.rng.IntN(6)
	}
	ops := make([]handlers.Op, n)
	for i := range ops {
		ops[i] = g.op()
	}
	return ops
}

// op makes one effect. Most effects on the first bound key are string
// effects and most on the second hash effects, so that many runs apply
// and build on each other; the third key takes any kind.
func (g effectsGen) op() handlers.Op {
	op := handlers.Op{Key: g.key()}
	kinds := effectsKinds
	switch {
	case g.rng.IntN(8) == 0:
	case op.Key == effectsBoundKeys[0]:
		kinds = effectsStringKinds
	case op.Key == effectsBoundKeys[1]:
		kinds = effectsHashKinds
	}
	switch op.Kind = kinds[g.rng.IntN(len(kinds))]; op.Kind {
	case handlers.OpIncrBy:
		op.Delta = g.delta()
	case handlers.OpSet:
		op.Value = g.value()
	case handlers.OpHSet:
		op.Field, op.Value = g.field(), g.value()
	case handlers.OpHIncrBy:
		op.Field, op.Delta = g.field(), g.delta()
	case handlers.OpHDel:
		op.Field = g.field()
	case handlers.OpExpire:
		op.TTL = g.ttl()
	}
	if g.raw && g.rng.IntN(50) == 0 {
		// A kind no store knows: refused, never applied.
		op.Kind, op.Delta, op.Value = handlers.OpKind(g.rng.IntN(2)*8), 1, "1"
	}
	return op
}

// The kinds of effects, by the type of key they are meant for; increments
// are the most frequent, as in handlers.
var (
	effectsStringKinds = []handlers.OpKind{handlers.OpIncrBy, handlers.OpIncrBy, handlers.OpIncrBy, handlers.OpSet, handlers.OpSet, handlers.OpDel, handlers.OpExpire}
	effectsHashKinds   = []handlers.OpKind{handlers.OpHIncrBy, handlers.OpHIncrBy, handlers.OpHIncrBy, handlers.OpHSet, handlers.OpHSet, handlers.OpHDel, handlers.OpHDel, handlers.OpDel, handlers.OpExpire}
	effectsKinds       = slices.Concat(effectsStringKinds, effectsHashKinds)
)

func (g effectsGen) ttl() time.Duration {
	if g.raw && g.rng.IntN(2) == 0 {
		return effectsRawTTLs[g.rng.IntN(len(effectsRawTTLs))]
	}
	return effectsTTLs[g.rng.IntN(len(effectsTTLs))]
}

func (g effectsGen) key() string {
	if g.rng.IntN(40) == 0 {
		return effectsRefusedKeys[g.rng.IntN(len(effectsRefusedKeys))]
	}
	return effectsBoundKeys[g.rng.IntN(len(effectsBoundKeys))]
}

func (g effectsGen) field() string { return effectsFields[g.rng.IntN(len(effectsFields))] }

func (g effectsGen) value() string {
	if g.rng.IntN(4) == 0 {
		return strconv.FormatInt(g.delta()/int64(1+g.rng.IntN(1000)), 10)
	}
	return effectsValues[g.rng.IntN(len(effectsValues))]
}

func (g effectsGen) delta() int64 {
	switch g.rng.IntN(4) {
	case 0:
		return int64(g.rng.Uint64())
	case 1:
		return g.rng.Int64N(201) - 100
	}
	return effectsDeltas[g.rng.IntN(len(effectsDeltas))]
}

// opText writes an op as the Redis command it stands for.
func opText(op handlers.Op) string {
	switch op.Kind {
	case handlers.OpIncrBy:
		return fmt.Sprintf("INCRBY %q %d", op.Key, op.Delta)
	case handlers.OpSet:
		return fmt.Sprintf("SET %q %q", op.Key, op.Value)
	case handlers.OpDel:
		return fmt.Sprintf("DEL %q", op.Key)
	case handlers.OpHSet:
		return fmt.Sprintf("HSET %q %q %q", op.Key, op.Field, op.Value)
	case handlers.OpHIncrBy:
		return fmt.Sprintf("HINCRBY %q %q %d", op.Key, op.Field, op.Delta)
	case handlers.OpHDel:
		return fmt.Sprintf("HDEL %q %q", op.Key, op.Field)
	case handlers.OpExpire:
		return fmt.Sprintf("PEXPIRE %q %d (TTL %v)", op.Key, op.TTL.Milliseconds(), op.TTL)
	}
	return fmt.Sprintf("kind %d on %q", op.Kind, op.Key)
}

// runText writes the effects of one completion on one line.
func runText(ops []handlers.Op) string {
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = opText(op)
	}
	return strings.Join(parts, "; ")
}
