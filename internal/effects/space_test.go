package effects_test

import (
	"math"
	"testing"
	"time"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/effects"
)

// clock is a settable clock for a Space.
type clock struct{ now time.Time }

func (c *clock) read() time.Time { return c.now }

// TestTimeToLive checks how effects set, keep and clear a time to live,
// and that a key lives until its deadline has passed, in whole
// milliseconds, as in Redis.
func TestTimeToLive(t *testing.T) {
	c := &clock{now: time.UnixMilli(1_700_000_000_000).Add(400 * time.Microsecond)}
	s := effects.NewSpace(c.read)
	ttl := func(key string) time.Duration {
		t.Helper()
		d, ok := s.TTL(key)
		if !ok {
			return -1
		}
		return d
	}
	apply := func(ops ...handlers.Op) {
		t.Helper()
		if err := s.Apply(ops); err != nil {
			t.Fatal(err)
		}
	}

	apply(set("s", "1"), expire("s", time.Second), incr("s", 1), hset("h", "f", "1"), expire("h", time.Minute), hset("h", "g", "2"))
	if ttl("s") != time.Second || ttl("h") != time.Minute {
		t.Fatalf("TTL s %v, h %v: want 1s and 1m, kept by INCRBY and HSET", ttl("s"), ttl("h"))
	}
	apply(expire("missing", time.Hour), set("missing2", "x"))
	if s.Type("missing") != effects.None || ttl("missing2") != -1 {
		t.Fatalf("PEXPIRE of a missing key created %v; SET left TTL %v", s.Type("missing"), ttl("missing2"))
	}
	apply(set("s2", "1"), expire("s2", time.Hour), set("s2", "2"), hdel("h", "f"), hdel("h", "g"), hset("h", "f", "1"))
	if ttl("s2") != -1 || ttl("h") != -1 {
		t.Fatalf("TTL s2 %v, h %v: SET clears it, and so does deleting a hash's last field", ttl("s2"), ttl("h"))
	}
	apply(set("z", "1"), expire("z", 999*time.Microsecond), set("n", "1"), expire("n", -time.Hour), set("m", "1"), expire("m", math.MinInt64))
	for _, k := range []string{"z", "n", "m"} {
		if s.Type(k) != effects.None {
			t.Errorf("%s survived a time to live under a millisecond", k)
		}
	}

	// Expiry: s has one second from a clock 0.4 ms into its millisecond.
	c.now = c.now.Add(time.Second + 500*time.Microsecond) // the deadline's own millisecond
	if v, ok := s.Get("s"); !ok || v != "2" || ttl("s") != 0 {
		t.Fatalf("at its deadline s = %q, %v (TTL %v): Redis keeps a key until the deadline has passed", v, ok, ttl("s"))
	}
	c.now = c.now.Add(time.Millisecond)
	if s.Type("s") != effects.None || len(s.Keys()) != 3 {
		t.Fatalf("after its deadline s is %v; keys %q", s.Type("s"), s.Keys())
	}
	apply(incr("s", 5))
	if v, _ := s.Get("s"); v != "5" || ttl("s") != -1 {
		t.Fatalf("INCRBY of an expired key: %q, TTL %v; want a new key 5 without TTL", v, ttl("s"))
	}
}
