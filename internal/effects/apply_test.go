package effects_test

import (
	"errors"
	"maps"
	"math"
	"testing"
	"time"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/effects"
)

func set(k, v string) handlers.Op { return handlers.Op{Kind: handlers.OpSet, Key: k, Value: v} }
func incr(k string, d int64) handlers.Op {
	return handlers.Op{Kind: handlers.OpIncrBy, Key: k, Delta: d}
}
func del(k string) handlers.Op { return handlers.Op{Kind: handlers.OpDel, Key: k} }
func hset(k, f, v string) handlers.Op {
	return handlers.Op{Kind: handlers.OpHSet, Key: k, Field: f, Value: v}
}
func hincr(k, f string, d int64) handlers.Op {
	return handlers.Op{Kind: handlers.OpHIncrBy, Key: k, Field: f, Delta: d}
}
func hdel(k, f string) handlers.Op { return handlers.Op{Kind: handlers.OpHDel, Key: k, Field: f} }
func expire(k string, ttl time.Duration) handlers.Op {
	return handlers.Op{Kind: handlers.OpExpire, Key: k, TTL: ttl}
}

// TestApply applies runs one after another to a fresh space and checks
// each answer (the index of the refused effect, or -1) and the keys after.
func TestApply(t *testing.T) {
	tests := []struct {
		name    string
		runs    [][]handlers.Op
		refused []int
		want    map[string]string // key -> string, or "field=value" of a one-field hash
	}{
		{"increments", [][]handlers.Op{{incr("n", 3), incr("n", -1)}}, []int{-1}, map[string]string{"n": "2"}},
		{"SET replaces a hash", [][]handlers.Op{{hset("k", "f", "1")}, {set("k", "5"), incr("k", 1)}}, []int{-1, -1}, map[string]string{"k": "6"}},
		{"string effects refuse a hash", [][]handlers.Op{{hset("k", "f", "1")}, {incr("n", 1), incr("k", 1)}}, []int{-1, 1}, map[string]string{"k": "f=1"}},
		{"hash effects refuse a string", [][]handlers.Op{{set("k", "1")}, {hset("k", "f", "1")}, {hincr("k", "f", 1)}, {hdel("k", "f")}}, []int{-1, 0, 0, 0}, map[string]string{"k": "1"}},
		{"HDEL of the last field deletes the hash", [][]handlers.Op{{hset("k", "f", "1")}, {hdel("k", "f"), incr("k", 1)}}, []int{-1, -1}, map[string]string{"k": "1"}},
		{"HDEL on a missing key creates nothing", [][]handlers.Op{{hdel("k", "f"), incr("k", 1)}}, []int{-1}, map[string]string{"k": "1"}},
		{`"+5" is no integer`, [][]handlers.Op{{set("k", "+5")}, {incr("k", 1)}}, []int{-1, 0}, map[string]string{"k": "+5"}},
		{`"" and "+5" are no integers`, [][]handlers.Op{{hset("h", "f", "")}, {hincr("h", "f", 1)}, {hset("h", "f", "+5")}, {hincr("h", "f", 1)}}, []int{-1, 0, -1, 0}, map[string]string{"h": "f=+5"}},
		{"overflow", [][]handlers.Op{{incr("n", math.MaxInt64)}, {incr("n", 1)}, {hincr("h", "f", math.MinInt64), hincr("h", "f", -1)}}, []int{-1, 0, 1}, map[string]string{"n": "9223372036854775807"}},
		{"DEL, then another type", [][]handlers.Op{{set("k", "x"), del("k"), hincr("k", "f", 2)}}, []int{-1}, map[string]string{"k": "f=2"}},
		{"unknown kind", [][]handlers.Op{{incr("n", 1), {Kind: 0, Key: "n"}}}, []int{1}, map[string]string{}},
		{"a refused run applies nothing", [][]handlers.Op{{set("a", "1")}, {set("a", "2"), del("a"), hset("b", "f", "1"), expire("b", time.Hour), incr("b", 1)}}, []int{-1, 4}, map[string]string{"a": "1"}},
		{"a refused run changes no key in place", [][]handlers.Op{{set("n", "5"), hset("h", "f", "1")}, {incr("n", 1), hset("h", "f", "2"), hincr("h", "f", 1), incr("h", 1)}}, []int{-1, 3}, map[string]string{"n": "5", "h": "f=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := effects.NewSpace(nil)
			for i, run := range tt.runs {
				err := s.Apply(run)
				var ee *effects.Error
				got := -1
				if errors.As(err, &ee) {
					got = ee.Index
					if !errors.Is(err, effects.ErrRefused) {
						t.Errorf("run %d: %v does not wrap ErrRefused", i, err)
					}
				} else if err != nil {
					t.Fatalf("run %d: %v, not an *effects.Error", i, err)
				}
				if got != tt.refused[i] {
					t.Errorf("run %d: refused effect %d (%v), want %d", i, got, err, tt.refused[i])
				}
			}
			if got := dump(s); !maps.Equal(got, tt.want) {
				t.Errorf("keys %q, want %q", got, tt.want)
			}
		})
	}
}

// dump returns the keys of s as TestApply's want: strings as they are,
// hashes as "field=value" (one field each in the tests).
func dump(s *effects.Space) map[string]string {
	out := map[string]string{}
	for _, k := range s.Keys() {
		if v, ok := s.Get(k); ok {
			out[k] = v
			continue
		}
		for f, v := range s.HGetAll(k) {
			out[k] = f + "=" + v
		}
	}
	return out
}
