package httphandler

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/fleetworks/fleet/handlers"
)

// TestTraceContext: the request's traceparent is the handler run's span
// when fleet traces, the event's own otherwise.
func TestTraceContext(t *testing.T) {
	const event = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	state, err := trace.ParseTraceState("fleet=1")
	if err != nil {
		t.Fatal(err)
	}
	span := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
		SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: trace.FlagsSampled,
		TraceState: state,
	})
	tests := []struct {
		name       string
		ctx        context.Context
		ext        map[string]string
		wantParent string
		wantState  string
	}{
		{name: "not traced: the event's", ctx: context.Background(), ext: map[string]string{"traceparent": event, "tracestate": "a=b"},
			wantParent: event, wantState: "a=b"},
		{name: "not traced, none", ctx: context.Background()},
		{name: "traced: the run's span", ctx: trace.ContextWithSpanContext(context.Background(), span),
			ext:        map[string]string{"traceparent": event, "tracestate": "a=b"},
			wantParent: "00-0af7651916cd43dd8448eb211c80319c-0102030405060708-01", wantState: "fleet=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent, state := traceContext(tt.ctx, handlers.Event{Extensions: tt.ext})
			if parent != tt.wantParent || state != tt.wantState {
				t.Errorf("traceContext = %q, %q; want %q, %q", parent, state, tt.wantParent, tt.wantState)
			}
		})
	}
}
