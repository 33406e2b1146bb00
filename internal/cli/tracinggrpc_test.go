package cli

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
)

// grpcTraceReceiver is an OTLP/gRPC trace service that keeps the names of
// the spans it gets, with their service.name.
type grpcTraceReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	names []string
}

func (r *grpcTraceReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.names = append(r.names, service+"/"+s.GetName())
			}
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *grpcTraceReceiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.names...)
}

// TestTracingOverGRPC: OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports over OTLP/gRPC
// (the endpoint's http:// scheme: without TLS), and the spans still buffered
// at exit are flushed.
func TestTracingOverGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	recv := &grpcTraceReceiver{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, recv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	exportTracesTo(t, "grpc", "http://"+ln.Addr().String(), "5000")
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	t.Setenv("OTEL_SERVICE_NAME", "fleet-grpc")
	tp, stop, err := startTracing(t.Context(), slog.New(slog.DiscardHandler), true, "test")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("test").Start(t.Context(), "payments process")
	span.End()
	if err := stop(); err != nil { // flushes: the span is exported before it returns
		t.Fatal(err)
	}
	if got := strings.Join(recv.received(), ","); got != "fleet-grpc/payments process" {
		t.Errorf("received %q, want the span of service fleet-grpc", got)
	}
}

// TestTracingRefusesUnknownExporter: an exporter or protocol the SDK does not
// know stops fleet at startup, naming the variables, rather than tracing
// nowhere.
func TestTracingRefusesUnknownExporter(t *testing.T) {
	for _, tt := range []struct{ exporter, protocol string }{
		{"otlp", "http/json"},
		{"zipkin-v1", "grpc"},
	} {
		t.Run(tt.exporter+" "+tt.protocol, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_EXPORTER", tt.exporter)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tt.protocol)
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", tt.protocol)
			_, _, err := startTracing(t.Context(), slog.New(slog.DiscardHandler), true, "test")
			if err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_EXPORTER") {
				t.Fatalf("err %v, want one naming the variables", err)
			}
		})
	}
}
