package consumer

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	otelattr "go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/fleetworks/fleet/handlers"
)

// Tracing, when Config.TracerProvider is set: every event gets a consumer
// span named "<topic> process" (the OpenTelemetry messaging conventions),
// a child of the W3C trace context the event carries in its CloudEvents
// traceparent and tracestate attributes (binary mode: the ce_traceparent
// and ce_tracestate headers). Under it, a span per claim, per handler run
// ("handle", the span in the handler's context) and per completion; the
// process span ends when the event is finished or abandoned, and records
// as events a takeover, a lost lease, a move to a retry tier and a dead
// letter. Without a provider every hook below returns at its first line:
// the delivery has no span.

// tracerName names the engine's instrumentation scope.
const tracerName = "github.com/fleetworks/fleet/consumer"

// The CloudEvents distributed-tracing extension's attributes.
const (
	extTraceparent = "traceparent"
	extTracestate  = "tracestate"
)

// Attributes of fleet's own in the spans.
const (
	attrOutcome        = otelattr.Key("fleet.outcome")
	attrClaim          = otelattr.Key("fleet.claim.outcome")
	attrFence          = otelattr.Key("fleet.claim.fence")
	attrAttempt        = otelattr.Key("fleet.attempt")
	attrReason         = otelattr.Key("fleet.dead_letter.reason")
	attrRetryTier      = otelattr.Key("fleet.retry.tier")
	attrRetryTopic     = otelattr.Key("fleet.retry.topic")
	attrRetryNotBefore = otelattr.Key("fleet.retry.not_before")
)

// Names of the span events.
const (
	eventTakeover     = "takeover"
	eventLeaseLost    = "lease lost"
	eventRetryTier    = "moved to retry tier"
	eventDeadLettered = "dead-lettered"
)

// newTracer is the engine's tracer: nil, tracing off, without a provider.
func newTracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	return tp.Tracer(tracerName)
}

// eventCarrier reads an event's trace context: its extension attributes
// (both modes, once decoded), else its binary-mode headers (a message
// rejected before it was decoded). It is read only.
type eventCarrier struct {
	ext     map[string]string
	headers []kafka.Header
}

func (c eventCarrier) Get(key string) string {
	if v, ok := c.ext[key]; ok {
		return v
	}
	switch key {
	case extTraceparent:
		return header(c.headers, "ce_"+extTraceparent)
	case extTracestate:
		return header(c.headers, "ce_"+extTracestate)
	}
	return ""
}

func (eventCarrier) Set(string, string) {}

func (eventCarrier) Keys() []string { return []string{extTraceparent, extTracestate} }

// eventParent is the trace context an event carries, in a context; an
// event without one (or with an invalid one) starts a trace of its own.
// Most events carry none, so that case makes nothing.
func eventParent(ev *handlers.Event, headers []kafka.Header) context.Context {
	c := eventCarrier{ext: ev.Extensions, headers: headers}
	if c.Get(extTraceparent) == "" {
		return context.Background()
	}
	return propagation.TraceContext{}.Extract(context.Background(), c)
}

// processSpan is how a partition starts its events' process spans: their
// name and kind, and the attributes that every event of the partition
// shares (the messaging conventions' for Kafka), made once. Those are given
// at the start, for a sampler of Config.TracerProvider to choose by
// (the conventions' sampling attributes); the event's own are set once the
// span records.
type processSpan struct {
	name  string
	start []trace.SpanStartOption
}

func newProcessSpan(topic string, partition int, group string) processSpan {
	return processSpan{name: topic + " process", start: []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKafka,
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingDestinationName(topic),
			semconv.MessagingDestinationPartitionID(strconv.Itoa(partition)),
			semconv.MessagingConsumerGroupName(group),
		),
	}}
}

// eventAttributes are the attributes of the event itself, set on a process
// span that records: its offset, and the CloudEvents id, type and source,
// each left out when empty (a message not decoded).
func eventAttributes(offset int64, ev *handlers.Event) []otelattr.KeyValue {
	attrs := make([]otelattr.KeyValue, 0, 4)
	attrs = append(attrs, semconv.MessagingKafkaOffset(int(offset)))
	if ev.ID != "" {
		attrs = append(attrs, semconv.MessagingMessageID(ev.ID))
	}
	if ev.Type != "" {
		attrs = append(attrs, semconv.CloudEventsEventType(ev.Type))
	}
	if ev.Source != "" {
		attrs = append(attrs, semconv.CloudEventsEventSource(ev.Source))
	}
	return attrs
}

// traceStart starts d's process span, once d is admitted (or not). An
// event the sampler leaves out gets a span that records nothing: it still
// carries the trace context on to the handler, and nothing else is done
// for it.
func (p *partition) traceStart(d *delivery) {
	if p.e.tracer == nil {
		return
	}
	_, d.span = p.e.tracer.Start(eventParent(&d.ev, d.msg.Headers), p.spans.name, p.spans.start...)
	if d.span.IsRecording() {
		d.span.SetAttributes(eventAttributes(d.msg.Offset, &d.ev)...)
	}
}

// recording reports whether d's process span records: tracing is on and
// the sampler kept the event.
func recording(d *delivery) bool {
	return d.span != nil && d.span.IsRecording()
}

// claimStart is when a claim was asked for, when d's span wants it.
func (p *partition) claimStart() time.Time {
	if p.e.tracer == nil {
		return time.Time{}
	}
	return time.Now()
}

// traceClaim records d's claim, asked for at start and answered now.
func (p *partition) traceClaim(d *delivery, start time.Time) {
	if !recording(d) {
		return
	}
	res := &d.attempt.res
	_, s := p.e.tracer.Start(trace.ContextWithSpan(context.Background(), d.span), "claim", trace.WithTimestamp(start),
		trace.WithAttributes(attrClaim.String(res.Outcome.String()), attrFence.Int64(int64(res.Lease.Fence))))
	s.End()
	if res.TakenOver {
		d.span.AddEvent(eventTakeover, trace.WithAttributes(attrFence.Int64(int64(res.Lease.Fence))))
	}
}

// traceHandle starts the span of a run of d's handler, in the handler's
// context; nil without tracing. For an event left out by the sampler, the
// handler's context holds the process span, whose trace context (not
// sampled) its calls pass on, and there is no span of its own.
func (p *partition) traceHandle(ctx context.Context, d *delivery) (context.Context, trace.Span) {
	if d.span == nil {
		return ctx, nil
	}
	ctx = trace.ContextWithSpan(ctx, d.span)
	if !d.span.IsRecording() {
		return ctx, nil
	}
	ctx, s := p.e.tracer.Start(ctx, "handle", trace.WithAttributes(attrAttempt.Int(d.attempt.res.Attempts)))
	return ctx, s
}

// traceComplete starts the span of d's completion; nil without tracing or
// when d's span does not record.
func (p *partition) traceComplete(d *delivery) trace.Span {
	if !recording(d) {
		return nil
	}
	_, s := p.e.tracer.Start(trace.ContextWithSpan(context.Background(), d.span), "complete")
	return s
}

// endSpan ends a child span, with an error status when err is set.
func endSpan(s trace.Span, err error) {
	if s == nil {
		return
	}
	if err != nil {
		s.RecordError(err)
		s.SetStatus(codes.Error, err.Error())
	}
	s.End()
}

// traceLeaseLost records on d's span that its lease was taken.
func traceLeaseLost(d *delivery) {
	if d.span == nil {
		return
	}
	d.span.AddEvent(eventLeaseLost, trace.WithAttributes(attrFence.Int64(int64(d.attempt.lease.Fence))))
}

// traceRetryTier records on d's span its move to retry tier n.
func traceRetryTier(d *delivery, topic string, n int, notBefore time.Time) {
	if d.span == nil {
		return
	}
	d.span.AddEvent(eventRetryTier, trace.WithAttributes(attrRetryTier.Int(n), attrRetryTopic.String(topic),
		attrRetryNotBefore.String(notBefore.UTC().Format(time.RFC3339Nano))))
}

// traceDeadLetter records on d's span its dead letter, and the failure.
func traceDeadLetter(d *delivery, topic, reason string, cause error) {
	if d.span == nil {
		return
	}
	d.span.AddEvent(eventDeadLettered, trace.WithAttributes(attrReason.String(reason), semconv.MessagingDestinationName(topic)))
	traceFailed(d, cause)
}

// traceFailed sets d's span's status to the error that ended it.
func traceFailed(d *delivery, cause error) {
	if d.span == nil || cause == nil {
		return
	}
	d.span.RecordError(cause)
	d.span.SetStatus(codes.Error, cause.Error())
}

// traceEnd ends d's process span, with the outcome if it was finished.
func traceEnd(d *delivery, outcome string) {
	if d.span == nil {
		return
	}
	if outcome != "" && d.span.IsRecording() {
		d.span.SetAttributes(attrOutcome.String(outcome))
	}
	d.span.End()
	d.span = nil
}

// observe observes v, with the trace id of span as an exemplar when the
// span is sampled: a bucket of the latency and handler-duration histograms
// then points at one of its events' traces (OpenMetrics exposition).
func observe(o prometheus.Observer, v float64, span trace.Span) {
	if span == nil {
		o.Observe(v)
		return
	}
	sc := span.SpanContext()
	eo, ok := o.(prometheus.ExemplarObserver)
	if !ok || !sc.IsSampled() {
		o.Observe(v)
		return
	}
	eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String(), "span_id": sc.SpanID().String()})
}
