package consumer_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// TestHandlerSeesItsSpan: with a tracer provider, a handler's context
// carries the span of its run (a "handle" child of the event's process
// span); a failed run is an error, and the retry in place claims and runs
// again under the same process span.
func TestHandlerSeesItsSpan(t *testing.T) {
	e := newEnv(t, 1)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var mu sync.Mutex
	var seen []trace.SpanContext
	router, _ := newCountingRouter(t, func(ctx context.Context, _ handlers.Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, trace.SpanContextFromContext(ctx))
		if len(seen) == 1 {
			return errors.New("downstream unavailable")
		}
		return nil
	})
	en := e.start(options{router: router, configure: func(c *consumer.Config) { c.TracerProvider = tp }})
	e.publish(payment("traced", "acct-1", ledger.TypeCaptured, 100))
	waitFor(t, 20*time.Second, "event processed", func() bool { return en.finished(consumer.OutcomeProcessed) == 1 })
	waitFor(t, 5*time.Second, "process span ended", func() bool {
		for _, s := range rec.Ended() {
			if s.Name() == topic+" process" {
				return true
			}
		}
		return false
	})

	var process sdktrace.ReadOnlySpan
	byName := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.Name() == topic+" process" {
			process = s
			continue
		}
		byName[s.Name()] = append(byName[s.Name()], s)
	}
	if process.SpanKind() != trace.SpanKindConsumer || process.Parent().IsValid() {
		t.Errorf("process span: kind %v, parent %v: want a consumer span starting a trace", process.SpanKind(), process.Parent())
	}
	if len(byName["claim"]) != 2 || len(byName["handle"]) != 2 || len(byName["complete"]) != 1 {
		t.Fatalf("children: %d claims, %d handles, %d completes; want 2, 2, 1", len(byName["claim"]), len(byName["handle"]), len(byName["complete"]))
	}
	for name, spans := range byName {
		for _, s := range spans {
			if s.Parent().SpanID() != process.SpanContext().SpanID() {
				t.Errorf("%s: parent %v, want the process span", name, s.Parent().SpanID())
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i, h := range byName["handle"] {
		if seen[i].SpanID() != h.SpanContext().SpanID() {
			t.Errorf("run %d saw span %v in its context, want its handle span %v", i, seen[i].SpanID(), h.SpanContext().SpanID())
		}
	}
	if byName["handle"][0].Status().Code != codes.Error || byName["handle"][1].Status().Code == codes.Error {
		t.Errorf("handle statuses %v, %v: want the failed run's an error", byName["handle"][0].Status(), byName["handle"][1].Status())
	}
}
