package dedupe_test

import (
	"context"
	"testing"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

func TestScratchCrossRecord(t *testing.T) {
	cfg := dedupe.Config{Lease: time.Minute, Retention: time.Hour}
	s, _ := newRedisStore(t, cfg)
	m := dedupe.NewMemory(cfg, nil)
	ctx := context.Background()
	k1 := dedupe.RecordKey("acct", handlers.IdempotencyKey("g", "s", "1"))
	k2 := dedupe.RecordKey("acct", handlers.IdempotencyKey("g", "s", "2"))
	for _, st := range []dedupe.Store{s, m} {
		r, err := st.ClaimBatch(ctx, []dedupe.Claim{{Key: k1, Fingerprint: "x"}})
		if err != nil {
			t.Fatal(err)
		}
		errs, err := st.CompleteBatch(ctx, []dedupe.Completion{{Lease: r[0].Lease, Effects: []handlers.Op{
			{Kind: handlers.OpHSet, Key: k2, Field: "s", Value: "d"},
			{Kind: handlers.OpHSet, Key: k2, Field: "p", Value: "fp2"},
			{Kind: handlers.OpHSet, Key: k2, Field: "f", Value: "7"},
		}}})
		t.Logf("%T complete: %v %v", st, errs, err)
		r, err = st.ClaimBatch(ctx, []dedupe.Claim{{Key: k2, Fingerprint: "fp2"}})
		t.Logf("%T claim of the other event: %+v %v", st, r, err)
	}
}
