package dedupe_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers/handlertest"
)

// Reading and comparing the keys of the effects differential test: each
// store's keys are read as Redis's TYPE, GET, HGETALL and PTTL read them.

// keyState is one key as a store holds it.
type keyState struct {
	typ    string // as TYPE names it: none, string, hash
	str    string
	hash   map[string]string
	ttl    time.Duration
	hasTTL bool
}

func (s keyState) String() string {
	var v string
	switch s.typ {
	case "string":
		v = fmt.Sprintf(" %q", s.str)
	case "hash":
		v = fmt.Sprintf(" %q", s.hash)
	}
	if s.hasTTL {
		v += fmt.Sprintf(" (TTL %v)", s.ttl.Round(time.Second))
	}
	return s.typ + v
}

// same reports whether two key states agree, times to live within
// effectsTTLSlack.
func (s keyState) same(o keyState) bool {
	if s.typ != o.typ || s.str != o.str || !maps.Equal(s.hash, o.hash) || s.hasTTL != o.hasTTL {
		return false
	}
	return (s.ttl - o.ttl).Abs() <= effectsTTLSlack
}

// keyDiffs compares every key that any store holds, and every key effects
// are staged on.
func (d *effectsDiff) keyDiffs() []string {
	keys, err := d.cl.Keys(d.ctx, "*").Result()
	if err != nil {
		d.t.Fatalf("KEYS: %v", err)
	}
	keys = slices.DeleteFunc(keys, func(k string) bool { return strings.HasPrefix(k, "fleet:idem:") })
	keys = slices.Concat(keys, d.mem.EffectKeys(), d.kit.State().Keys(), effectsBoundKeys, effectsRefusedKeys)
	slices.Sort(keys)
	var diffs []string
	for _, k := range slices.Compact(keys) {
		red, mem, kit := d.redisKey(k), memoryKey(d.mem, k), kitKey(d.kit.State(), k)
		if !red.same(mem) {
			diffs = append(diffs, fmt.Sprintf("key %q: redis %v, memory %v", k, red, mem))
		}
		if !d.raw && !red.same(kit) {
			diffs = append(diffs, fmt.Sprintf("key %q: redis %v, the kit %v", k, red, kit))
		}
	}
	return diffs
}

func (d *effectsDiff) redisKey(k string) keyState {
	pipe := d.cl.Pipeline()
	typ, ttl, str, hash := pipe.Type(d.ctx, k), pipe.PTTL(d.ctx, k), pipe.Get(d.ctx, k), pipe.HGetAll(d.ctx, k)
	_, _ = pipe.Exec(d.ctx) // GET of a hash and HGETALL of a string fail; the type says which to read
	if typ.Err() != nil || ttl.Err() != nil {
		d.t.Fatalf("TYPE, PTTL %q: %v, %v", k, typ.Err(), ttl.Err())
	}
	s := keyState{typ: typ.Val(), ttl: ttl.Val(), hasTTL: ttl.Val() >= 0}
	if !s.hasTTL {
		s.ttl = 0
	}
	switch s.typ {
	case "string":
		s.str = str.Val()
	case "hash":
		s.hash = hash.Val()
	}
	return s
}

func memoryKey(m *dedupe.Memory, k string) keyState {
	s := keyState{typ: m.Type(k)}
	s.ttl, s.hasTTL = m.TTL(k)
	switch s.typ {
	case "string":
		s.str, _ = m.Lookup(k)
	case "hash":
		s.hash, _ = m.HGetAll(context.Background(), k)
	}
	return s
}

// kitKey reads a key of the kit's state. Time stands still in the kit, so
// its times to live are as set; Redis's have run for the few milliseconds
// of an epoch.
func kitKey(st *handlertest.State, k string) keyState {
	s := keyState{typ: st.Type(k)}
	s.ttl, s.hasTTL = st.TTL(k)
	switch s.typ {
	case "string":
		s.str, _ = st.Get(context.Background(), k)
	case "hash":
		s.hash, _ = st.HGetAll(context.Background(), k)
	}
	return s
}
