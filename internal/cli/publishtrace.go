package cli

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// sendSpans are the producer spans of `fleet publish --tracing`, one per
// event, each the start of a trace whose context the event carries: the
// ce_traceparent and ce_tracestate headers in binary mode, the traceparent
// and tracestate attributes in structured mode.
type sendSpans struct {
	spans []trace.Span
}

// start starts m's span and puts its context in m.
func (s *sendSpans) start(ctx context.Context, tracer trace.Tracer, topic string, m *kafka.Message, ev publishedEvent, structured bool) error {
	ctx, span := tracer.Start(ctx, topic+" send", trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		semconv.MessagingSystemKafka, semconv.MessagingOperationTypeSend, semconv.MessagingDestinationName(topic),
		semconv.MessagingMessageID(ev.id), semconv.CloudEventsEventType(ev.typ), semconv.CloudEventsEventSource(ev.source)))
	s.spans = append(s.spans, span)
	tc := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, tc)
	if !structured {
		for _, k := range tc.Keys() {
			m.Headers = append(m.Headers, kafka.Header{Key: "ce_" + k, Value: []byte(tc[k])})
		}
		return nil
	}
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(m.Value, &attrs); err != nil {
		return fmt.Errorf("trace context: %w", err)
	}
	for _, k := range tc.Keys() {
		attrs[k], _ = json.Marshal(tc[k])
	}
	v, err := json.Marshal(attrs)
	if err != nil {
		return fmt.Errorf("trace context: %w", err)
	}
	m.Value = v
	return nil
}

// traceID is the trace id of the i-th event's span.
func (s *sendSpans) traceID(i int) string {
	return s.spans[i].SpanContext().TraceID().String()
}

// end ends every span, as errors when the write failed.
func (s *sendSpans) end(err error) {
	for _, span := range s.spans {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
