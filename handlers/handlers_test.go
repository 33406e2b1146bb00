package handlers_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fleetworks/fleet/handlers"
)

// TestNoInfrastructureImports keeps the domain core free of Kafka, Redis and
// Prometheus.
func TestNoInfrastructureImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/fleetworks/fleet/handlers/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"segmentio/kafka-go", "redis/go-redis", "prometheus/client_golang", "twmb/franz-go"} {
			if strings.Contains(dep, banned) {
				t.Errorf("handlers/ depends on %s", dep)
			}
		}
	}
}

func TestKindOf(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		err  error
		want handlers.Kind
	}{
		{base, handlers.KindRetryable},
		{handlers.Permanent(base), handlers.KindPermanent},
		{fmt.Errorf("wrapped: %w", handlers.Permanent(base)), handlers.KindPermanent},
		{fmt.Errorf("%w %q", handlers.ErrUnknownType, "x"), handlers.KindUnknownType},
		{&handlers.PanicError{Value: 1}, handlers.KindRetryable},
	}
	for _, tt := range tests {
		if got := handlers.KindOf(tt.err); got != tt.want {
			t.Errorf("KindOf(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
	if handlers.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	if !errors.Is(handlers.Permanent(base), base) {
		t.Error("Permanent does not unwrap")
	}
}

func TestRouter(t *testing.T) {
	r := handlers.NewRouter()
	called := ""
	h := handlers.HandlerFunc(func(_ context.Context, ev handlers.Event, _ *handlers.Tx) error {
		called = ev.Type
		return nil
	})
	if err := r.Register("a.b", h); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"duplicate": r.Register("a.b", h),
		"empty":     r.Register("", h),
		"nil":       r.Register("c", nil),
	} {
		if err == nil {
			t.Errorf("%s registration accepted", name)
		}
	}
	if err := r.Handle(context.Background(), handlers.Event{Type: "a.b"}, handlers.NewTx("k", 1, 1)); err != nil || called != "a.b" {
		t.Fatalf("routed: err=%v called=%q", err, called)
	}
	err := r.Handle(context.Background(), handlers.Event{Type: "nope"}, handlers.NewTx("k", 1, 1))
	if !errors.Is(err, handlers.ErrUnknownType) {
		t.Fatalf("unknown type: %v", err)
	}
	if got := r.Types(); len(got) != 1 || got[0] != "a.b" {
		t.Fatalf("Types() = %v", got)
	}
}

func TestMiddleware(t *testing.T) {
	panicky := handlers.HandlerFunc(func(context.Context, handlers.Event, *handlers.Tx) error { panic("kaboom") })
	err := handlers.Chain(panicky, handlers.Recover()).Handle(context.Background(), handlers.Event{}, handlers.NewTx("k", 1, 1))
	var pe *handlers.PanicError
	if !errors.As(err, &pe) || pe.Value != "kaboom" || len(pe.Stack) == 0 {
		t.Fatalf("recover: %v", err)
	}
	slow := handlers.HandlerFunc(func(ctx context.Context, _ handlers.Event, _ *handlers.Tx) error {
		<-ctx.Done()
		return ctx.Err()
	})
	err = handlers.Chain(slow, handlers.Recover(), handlers.Timeout(time.Millisecond)).Handle(context.Background(), handlers.Event{}, handlers.NewTx("k", 1, 1))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
}

func TestTx(t *testing.T) {
	tx := handlers.NewTx("g/src/id", 3, 2)
	if tx.IdempotencyKey() != "g/src/id" || tx.Fence() != 3 || tx.Attempt() != 2 {
		t.Fatalf("claim fields: %q %d %d", tx.IdempotencyKey(), tx.Fence(), tx.Attempt())
	}
	tx.IncrBy("c", 2)
	tx.HSet("h", "f", "v")
	tx.Expire("h", 0)
	tx.SetResult([]byte("ok"))
	if len(tx.Ops()) != 3 || tx.Ops()[2].TTL != time.Millisecond || string(tx.Result()) != "ok" {
		t.Fatalf("staged: %+v %q", tx.Ops(), tx.Result())
	}
	tx.Reset()
	if len(tx.Ops()) != 0 || len(tx.Result()) != 0 {
		t.Fatal("Reset kept effects")
	}
}

func BenchmarkRoute(b *testing.B) {
	r := handlers.NewRouter()
	for _, typ := range []string{"payment.captured", "payment.refunded", "order.created", "order.paid"} {
		_ = r.Register(typ, handlers.HandlerFunc(func(_ context.Context, _ handlers.Event, tx *handlers.Tx) error {
			tx.IncrBy("k", 1)
			return nil
		}))
	}
	ev := handlers.Event{Type: "payment.refunded"}
	tx := handlers.NewTx("k", 1, 1)
	b.ReportAllocs()
	for b.Loop() {
		tx.Reset()
		if err := r.Handle(context.Background(), ev, tx); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRouterPatterns: a type's own handler first, then the longest
// matching pattern; patterns are refused when malformed or doubled.
func TestRouterPatterns(t *testing.T) {
	named := func(name string) handlers.Handler {
		return handlers.HandlerFunc(func(context.Context, handlers.Event, *handlers.Tx) error { return errors.New(name) })
	}
	r := handlers.NewRouter()
	for pattern, name := range map[string]string{"inventory.received": "own", "inventory.*": "inventory", "inventory.stock.*": "stock", "*": "all"} {
		if err := r.RegisterPattern(pattern, named(name)); err != nil {
			t.Fatal(err)
		}
	}
	for typ, want := range map[string]string{
		"inventory.received": "own", "inventory.reserved": "inventory", "inventory.stock.counted": "stock",
		"inventory.": "inventory", "payment.captured": "all", "": "all",
	} {
		err := r.Handle(context.Background(), handlers.Event{Type: typ}, handlers.NewTx("k", 1, 1))
		if err == nil || err.Error() != want {
			t.Errorf("%q routed to %v, want %s", typ, err, want)
		}
	}
	for _, bad := range []string{"inventory.*", "a*b*", "*.x", ""} {
		if err := r.RegisterPattern(bad, named("x")); err == nil {
			t.Errorf("RegisterPattern(%q) accepted", bad)
		}
	}
	if got := r.Types(); len(got) != 1 || got[0] != "inventory.received" {
		t.Errorf("Types() = %v, want the registered type alone", got)
	}
}

func TestErrorKinds(t *testing.T) {
	tests := []struct {
		err   error
		kind  handlers.Kind
		delay time.Duration
	}{
		{errors.New("boom"), handlers.KindRetryable, 0},
		{handlers.RetryAfter(errors.New("429"), 2*time.Second), handlers.KindRetryable, 2 * time.Second},
		{fmt.Errorf("wrapped: %w", handlers.RetryAfter(errors.New("503"), time.Minute)), handlers.KindRetryable, time.Minute},
		{handlers.RetryAfter(errors.New("x"), -time.Second), handlers.KindRetryable, 0},
		{fmt.Errorf("%w: effect 0: op %q", handlers.ErrInvalidEffect, "NOPE"), handlers.KindInvalidEffect, 0},
		{handlers.Permanentf("bad"), handlers.KindPermanent, 0},
	}
	for _, tt := range tests {
		if k, d := handlers.KindOf(tt.err), handlers.RetryDelay(tt.err); k != tt.kind || d != tt.delay {
			t.Errorf("%v: kind %s, delay %v; want %s, %v", tt.err, k, d, tt.kind, tt.delay)
		}
	}
	if handlers.RetryAfter(nil, time.Second) != nil {
		t.Error("RetryAfter(nil) is not nil")
	}
}

// TestTxStage: an op staged as data is the op its method stages.
func TestTxStage(t *testing.T) {
	ops := []handlers.Op{
		{Kind: handlers.OpIncrBy, Key: "k", Delta: -3},
		{Kind: handlers.OpSet, Key: "k", Value: "v"},
		{Kind: handlers.OpDel, Key: "k"},
		{Kind: handlers.OpHSet, Key: "h", Field: "f", Value: "v"},
		{Kind: handlers.OpHIncrBy, Key: "h", Field: "f", Delta: 2},
		{Kind: handlers.OpHDel, Key: "h", Field: "f"},
		{Kind: handlers.OpExpire, Key: "k", TTL: time.Minute},
	}
	tx := handlers.NewTx("k", 1, 1)
	for _, op := range ops {
		tx.Stage(op)
	}
	tx.Stage(handlers.Op{Key: "no kind"})
	tx.Stage(handlers.Op{Kind: handlers.OpExpire, Key: "k"}) // raised to a millisecond, as Expire does
	if got := tx.Ops(); len(got) != len(ops)+1 || got[len(ops)].TTL != time.Millisecond {
		t.Fatalf("ops %+v", got)
	}
	for i, op := range ops {
		if tx.Ops()[i] != op {
			t.Errorf("op %d: %+v, want %+v", i, tx.Ops()[i], op)
		}
	}
}
