package dedupe_test

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// checkerRun is how long and from which seed a protocol checker runs, from
// <prefix>_SEED (a run to replay; the clock's otherwise), <prefix>_SECONDS
// (the budget: seconds by default, 2 s with -short) and <prefix>_<count>
// (an exact number of steps or epochs, no fewer than least; -1 when
// unset).
func checkerRun(t *testing.T, prefix string, seconds time.Duration, count string, least int) (seed uint64, budget time.Duration, n int) {
	t.Helper()
	seed = uint64(time.Now().UnixNano())
	if v := os.Getenv(prefix + "_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s_SEED=%q: %v", prefix, v, err)
		}
		seed = s
	}
	budget = seconds
	if testing.Short() {
		budget = 2 * time.Second
	}
	if v := os.Getenv(prefix + "_SECONDS"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			t.Fatalf("%s_SECONDS=%q: want a positive number of seconds", prefix, v)
		}
		budget = time.Duration(f * float64(time.Second))
	}
	n = -1
	if v := os.Getenv(prefix + "_" + count); v != "" {
		c, err := strconv.Atoi(v)
		if err != nil || c < least {
			t.Fatalf("%s_%s=%q: want a number, at least %d", prefix, count, v, least)
		}
		n = c
	}
	return seed, budget, n
}
