package dedupe

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/redistest"
)

// slowZRem delays ZREM: the unindex of a deleted gate on a slow network.
type slowZRem struct{ d time.Duration }

func (slowZRem) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h slowZRem) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "zrem") {
			time.Sleep(h.d)
		}
		return next(ctx, cmd)
	}
}
func (slowZRem) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestIndexKeepsALiveGate: worker A ends a head with nothing queued (the
// gate is deleted; its entry's removal follows in another round trip, on a
// slow network); meanwhile worker B holds a new head of the same key. The
// entry of B's live gate must stay in the index (fleet keys blocked, the
// fleet_order_* gauges and FleetKeyHeld read it): B adds it again after
// making its gate, and A puts it back when the gate exists again.
func TestIndexKeepsALiveGate(t *testing.T) {
	srv := redistest.Start(t)
	ca, cb := srv.Client(t), srv.Client(t)
	ca.AddHook(slowZRem{500 * time.Millisecond})
	cfg := Config{Lease: 5 * time.Second, Retention: time.Hour}
	a, err := NewRedis(ca, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewRedis(cb, cfg)
	ctx := context.Background()
	ref := GateRef{Group: "g", Topic: "t", Partition: 0, Key: "acct-1"}
	h, f := handlers.IdempotencyKey("g", "s", "h"), handlers.IdempotencyKey("g", "s", "f")
	if err := a.Hold(ctx, ref, h, false); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := a.End(ctx, ref.Gate(), h); err != nil {
			t.Error(err)
		}
	}()
	for cb.Exists(ctx, ref.Gate()).Val() == 1 {
		time.Sleep(time.Millisecond)
	}
	if err := b.Hold(ctx, ref, f, true); err != nil { // f dead-lettered under hold
		t.Fatal(err)
	}
	<-done
	g, _ := b.Gate(ctx, ref.Gate())
	list, err := b.ListGates(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if g == nil || g.State != GateHeld {
		t.Fatalf("gate: %+v", g)
	}
	if list.Total != 1 || len(list.Gates) != 1 {
		t.Errorf("a held gate exists, ListGates sees %d (%+v): it is missing from the index", list.Total, list.Gates)
	}
}
