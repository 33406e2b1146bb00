package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fleetworks/fleet/handlers"
)

const (
	parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpan  = "00f067aa0ba902b7"
	traceparent = "00-" + parentTrace + "-" + parentSpan + "-01"
)

func TestEventParent(t *testing.T) {
	tests := []struct {
		name      string
		ext       map[string]string
		headers   []kafka.Header
		wantValid bool
		wantState string
	}{
		{name: "extension (either mode, decoded)", ext: map[string]string{"traceparent": traceparent, "tracestate": "k=v"}, wantValid: true, wantState: "k=v"},
		{name: "binary headers only (not decoded)", headers: []kafka.Header{{Key: "ce_traceparent", Value: []byte(traceparent)}}, wantValid: true},
		{name: "extension wins over a header", ext: map[string]string{"traceparent": traceparent},
			headers: []kafka.Header{{Key: "ce_traceparent", Value: []byte("00-" + parentTrace + "-1111111111111111-01")}}, wantValid: true},
		{name: "none", wantValid: false},
		{name: "invalid", ext: map[string]string{"traceparent": "00-zz-yy-01"}, wantValid: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := trace.SpanContextFromContext(eventParent(&handlers.Event{Extensions: tt.ext}, tt.headers))
			if sc.IsValid() != tt.wantValid {
				t.Fatalf("valid = %v, want %v", sc.IsValid(), tt.wantValid)
			}
			if !tt.wantValid {
				return
			}
			if sc.TraceID().String() != parentTrace || sc.SpanID().String() != parentSpan || !sc.IsRemote() || !sc.IsSampled() {
				t.Errorf("span context = %v/%v remote %v sampled %v", sc.TraceID(), sc.SpanID(), sc.IsRemote(), sc.IsSampled())
			}
			if got := sc.TraceState().String(); got != tt.wantState {
				t.Errorf("tracestate = %q, want %q", got, tt.wantState)
			}
		})
	}
}

// TestProcessAttributes: a process span that records has the messaging
// conventions' attributes of its partition and those of its event.
func TestProcessAttributes(t *testing.T) {
	tests := []struct {
		name string
		ev   handlers.Event
		want map[string]string
	}{
		{name: "decoded", ev: handlers.Event{ID: "e-1", Type: "ledger.credit", Source: "/bank"}, want: map[string]string{
			"messaging.system": "kafka", "messaging.operation.type": "process", "messaging.destination.name": "payments",
			"messaging.destination.partition.id": "3", "messaging.kafka.offset": "42", "messaging.consumer.group.name": "ledger",
			"messaging.message.id": "e-1", "cloudevents.event_type": "ledger.credit", "cloudevents.event_source": "/bank"}},
		{name: "not decoded", want: map[string]string{
			"messaging.system": "kafka", "messaging.operation.type": "process", "messaging.destination.name": "payments",
			"messaging.destination.partition.id": "3", "messaging.kafka.offset": "42", "messaging.consumer.group.name": "ledger"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			p := tracedPartition(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
			d := &delivery{ev: tt.ev, msg: kafka.Message{Offset: 42}}
			p.traceStart(d)
			traceEnd(d, OutcomeProcessed)
			ended := rec.Ended()
			if len(ended) != 1 || ended[0].Name() != "payments process" || ended[0].SpanKind() != trace.SpanKindConsumer {
				t.Fatalf("spans: %v", ended)
			}
			got := map[string]string{}
			for _, kv := range ended[0].Attributes() {
				got[string(kv.Key)] = kv.Value.String()
			}
			delete(got, string(attrOutcome))
			if len(got) != len(tt.want) {
				t.Errorf("attributes = %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// destSampler samples the spans whose messaging.destination.name is topic,
// as a sampler of an application's own might.
type destSampler struct{ topic string }

func (s destSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	decision := sdktrace.Drop
	for _, kv := range p.Attributes {
		if kv.Key == "messaging.destination.name" && kv.Value.AsString() == s.topic {
			decision = sdktrace.RecordAndSample
		}
	}
	return sdktrace.SamplingResult{Decision: decision, Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState()}
}

func (destSampler) Description() string { return "destination" }

// TestSamplerSeesPartitionAttributes: a sampler chooses by the attributes
// the partition's events share, given at the span's start.
func TestSamplerSeesPartitionAttributes(t *testing.T) {
	for _, tt := range []struct {
		topic string
		want  int
	}{{"payments", 1}, {"refunds", 0}} {
		rec := tracetest.NewSpanRecorder()
		p := tracedPartition(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(destSampler{tt.topic})))
		d := &delivery{ev: handlers.Event{ID: "e-1"}}
		p.traceStart(d)
		traceEnd(d, OutcomeProcessed)
		if n := len(rec.Ended()); n != tt.want {
			t.Errorf("sampling %s: %d spans of payments recorded, want %d", tt.topic, n, tt.want)
		}
	}
}

// tracedPartition is partition 3 of "payments", group "ledger", traced by tp.
func tracedPartition(tp trace.TracerProvider) *partition {
	return &partition{e: &Engine{tracer: newTracer(tp), cfg: Config{Group: "ledger"}}, topic: "payments", id: 3,
		spans: newProcessSpan("payments", 3, "ledger")}
}

// TestEventLeftOutBySampler: an event the sampler leaves out records no
// span, and its handler's context still carries its trace context (not
// sampled), for the handler's own calls to pass on.
func TestEventLeftOutBySampler(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	p := tracedPartition(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample()))))
	d := &delivery{ev: handlers.Event{ID: "e-1", Extensions: map[string]string{"traceparent": "00-" + parentTrace + "-" + parentSpan + "-00"}}}
	p.traceStart(d)
	p.traceClaim(d, p.claimStart())
	ctx, hs := p.traceHandle(context.Background(), d)
	if hs != nil {
		t.Errorf("handle span %v for an event left out", hs)
	}
	sc := trace.SpanContextFromContext(ctx)
	if sc.TraceID().String() != parentTrace || sc.IsSampled() {
		t.Errorf("handler's trace context = %v sampled %v, want trace %s not sampled", sc.TraceID(), sc.IsSampled(), parentTrace)
	}
	if cs := p.traceComplete(d); cs != nil {
		t.Errorf("complete span %v for an event left out", cs)
	}
	traceEnd(d, OutcomeProcessed)
	if n := len(rec.Started()); n != 0 {
		t.Errorf("%d spans recorded for an event left out", n)
	}
}

// BenchmarkTraceHooks is the tracing cost of one event's way: its process
// span, a claim, a handler run and a completion. Off, it must stay near
// nothing.
func BenchmarkTraceHooks(b *testing.B) {
	traced := handlers.Event{ID: "e-1", Type: "ledger.credit", Source: "/bank", Extensions: map[string]string{"traceparent": traceparent}}
	run := func(b *testing.B, tp trace.TracerProvider, ev handlers.Event) {
		p := tracedPartition(tp)
		ctx := b.Context()
		b.ReportAllocs()
		// The headers of a binary-mode event, to look through.
		d := &delivery{ev: ev, msg: kafka.Message{Headers: []kafka.Header{{Key: "ce_specversion", Value: []byte("1.0")},
			{Key: "ce_id", Value: []byte(ev.ID)}, {Key: "ce_source", Value: []byte(ev.Source)}, {Key: "ce_type", Value: []byte(ev.Type)},
			{Key: "content-type", Value: []byte("application/json")}}}}
		for b.Loop() {
			p.traceStart(d)
			p.traceClaim(d, p.claimStart())
			_, hs := p.traceHandle(ctx, d)
			endSpan(hs, nil)
			endSpan(p.traceComplete(d), nil)
			traceEnd(d, OutcomeProcessed)
		}
	}
	b.Run("off", func(b *testing.B) { run(b, nil, traced) })
	b.Run("on", func(b *testing.B) {
		// Every span sampled and recorded, none exported.
		run(b, sdktrace.NewTracerProvider(), traced)
	})
	b.Run("on, not sampled", func(b *testing.B) {
		// An event with no trace context that the sampler leaves out, as
		// 99 % of them are with 1 % sampling.
		untraced := traced
		untraced.Extensions = map[string]string{"tenant": "t-1"}
		run(b, sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample()))), untraced)
	})
}

// TestFailureMessagesKeepTraceContext: a retry message and a dead letter
// keep the event's trace context, so that its next run and whoever reads
// the dead letter continue the event's trace.
func TestFailureMessagesKeepTraceContext(t *testing.T) {
	src := kafka.Message{Topic: "payments", Partition: 1, Offset: 7, Key: []byte("k"), Value: []byte("{}"), Headers: []kafka.Header{
		{Key: "ce_id", Value: []byte("e-1")}, {Key: "ce_traceparent", Value: []byte(traceparent)}, {Key: "ce_tracestate", Value: []byte("k=v")}}}
	f := failure{group: "ledger", reason: ReasonRetryable, attempts: 1, first: time.Now(), last: time.Now()}
	tests := []struct {
		name string
		msg  kafka.Message
	}{
		{name: "retry tier", msg: retryMessage(&src, route{source: "payments"}, f, 1, time.Now())},
		{name: "dead letter", msg: deadLetterMessage(&src, route{source: "payments"}, f)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := header(tt.msg.Headers, "ce_traceparent"); got != traceparent {
				t.Errorf("ce_traceparent = %q, want %q", got, traceparent)
			}
			if got := header(tt.msg.Headers, "ce_tracestate"); got != "k=v" {
				t.Errorf("ce_tracestate = %q", got)
			}
		})
	}
}

// TestObserveExemplar: a sampled span's trace id is the observation's
// exemplar; an unsampled one, or none, leaves the bucket without one.
func TestObserveExemplar(t *testing.T) {
	traceID, _ := trace.TraceIDFromHex(parentTrace)
	spanID, _ := trace.SpanIDFromHex(parentSpan)
	spanOf := func(flags trace.TraceFlags) trace.Span {
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: flags})
		return trace.SpanFromContext(trace.ContextWithSpanContext(context.Background(), sc))
	}
	tests := []struct {
		name string
		span trace.Span
		want string
	}{
		{name: "sampled", span: spanOf(trace.FlagsSampled), want: parentTrace},
		{name: "not sampled", span: spanOf(0)},
		{name: "no span"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h", Buckets: []float64{1}})
			observe(h, 0.5, tt.span)
			var m dto.Metric
			if err := h.Write(&m); err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, l := range m.GetHistogram().GetBucket()[0].GetExemplar().GetLabel() {
				if l.GetName() == "trace_id" {
					got = l.GetValue()
				}
			}
			if got != tt.want || m.GetHistogram().GetSampleCount() != 1 {
				t.Errorf("exemplar trace_id %q, count %d; want %q, 1", got, m.GetHistogram().GetSampleCount(), tt.want)
			}
		})
	}
}
