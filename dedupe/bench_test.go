package dedupe_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/redistest"
)

// BenchmarkRedisClaimComplete claims and completes batches of 100 ledger
// events against a real redis-server: two round trips per batch. ns/op is
// per event.
func BenchmarkRedisClaimComplete(b *testing.B) {
	srv := redistest.Start(b)
	c := srv.Client(b)
	s, err := dedupe.NewRedis(c, dedupe.Config{Lease: 30 * time.Second, Retention: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Load(ctx); err != nil {
		b.Fatal(err)
	}
	const batch = 100
	claims := make([]dedupe.Claim, batch)
	comps := make([]dedupe.Completion, batch)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		i := n % batch
		acct := fmt.Sprintf("acct-%d", n%500)
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
			comps[j] = dedupe.Completion{Lease: r.Lease, Effects: []handlers.Op{{Kind: handlers.OpIncrBy, Key: "ledger:{" + claims[j].Key + "}:balance", Delta: 1}}}
		}
		if _, err := s.CompleteBatch(ctx, comps); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.RoundTrips())/float64(max(n, 1)), "trips/event")
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
