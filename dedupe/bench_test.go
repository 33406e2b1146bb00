package dedupe_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/redistest"
)

// BenchmarkRedisClaimComplete claims and completes batches of 100 ledger
// events against a real redis-server: two round trips per batch. ns/op is
// per event. Done records in place (the default) and packed. With
// FLEET_BENCH_COMMANDSTATS set, it logs Redis's INFO commandstats: the
// calls and time of each command the scripts run.
func BenchmarkRedisClaimComplete(b *testing.B) {
	b.Run("in-place", func(b *testing.B) { benchClaimComplete(b, false) })
	b.Run("packed", func(b *testing.B) { benchClaimComplete(b, true) })
}

func benchClaimComplete(b *testing.B, packed bool) {
	srv := redistest.Start(b)
	c := srv.Client(b)
	s, err := dedupe.NewRedis(c, dedupe.Config{Lease: 30 * time.Second, Retention: time.Hour, PackDoneRecords: packed})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Load(ctx); err != nil {
		b.Fatal(err)
	}
	const batch = 100
	claims := make([]dedupe.Claim, batch)
	accts := make([]string, batch)
	comps := make([]dedupe.Completion, batch)
	b.ReportAllocs()
	cpu0 := redisCPU(b, c)
	n := 0
	for b.Loop() {
		i := n % batch
		acct := fmt.Sprintf("acct-%d", n%500)
		accts[i] = acct
		claims[i] = dedupe.Claim{Key: dedupe.Key("bench", acct, "payments-api", fmt.Sprintf("evt-%d", n)), Fingerprint: "0123456789abcdef"}
		n++
		if i != batch-1 {
			continue
		}
		res, err := s.ClaimBatch(ctx, claims)
		if err != nil {
			b.Fatal(err)
		}
		for j, r := range res {
			comps[j] = dedupe.Completion{Lease: r.Lease, Effects: []handlers.Op{{Kind: handlers.OpIncrBy, Key: "ledger:{" + accts[j] + "}:balance", Delta: 1}}}
		}
		errs, err := s.CompleteBatch(ctx, comps)
		if err != nil || errs[0] != nil {
			b.Fatal(err, errs[0])
		}
	}
	b.ReportMetric(float64(s.RoundTrips())/float64(max(n, 1)), "trips/event")
	b.ReportMetric((redisCPU(b, c)-cpu0)*1e6/float64(max(n, 1)), "redis-µs/event")
	if os.Getenv("FLEET_BENCH_COMMANDSTATS") != "" {
		stats, _ := c.Info(context.Background(), "commandstats").Result()
		b.Log(stats)
	}
}

// redisCPU is the CPU seconds the Redis server has used.
func redisCPU(b *testing.B, c *redis.Client) float64 {
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		for _, f := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), f); ok {
				x, _ := strconv.ParseFloat(v, 64)
				total += x
			}
		}
	}
	return total
}

// BenchmarkNewClaim is what the engine spends per event to name it: the
// identity digest, the record key and the canonical payload fingerprint.
func BenchmarkNewClaim(b *testing.B) {
	ev := &handlers.Event{ID: "4f6c1d2e-8a9b-4c3d-9e0f-112233445566", Source: "payments-api", Type: "payment.captured",
		Key: "acct-00012", DataContentType: "application/json", Data: []byte(`{"account":"acct-00012","amount_cents":1250}`)}
	b.ReportAllocs()
	for b.Loop() {
		_ = dedupe.NewClaim("ledger", ev)
	}
}
