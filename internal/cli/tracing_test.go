package cli

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/internal/demo"
)

// exportTracesTo has the SDK export spans over OTLP with protocol to
// endpoint, a batch every delay milliseconds. The signal's own variables
// are set too, which win over the general ones: a shell's would decide
// otherwise.
func exportTracesTo(t *testing.T, protocol, endpoint, delay string) {
	t.Helper()
	t.Setenv("OTEL_SDK_DISABLED", "false")
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	for _, name := range []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"} {
		t.Setenv(name, protocol)
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
	// The signal's endpoint is used as it is: over HTTP, with its path.
	if protocol == "http/protobuf" {
		endpoint += "/v1/traces"
	}
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", delay)
}

// newOTLPReceiver serves an otlpReceiver that keeps every span.
func newOTLPReceiver(t *testing.T) (*otlpReceiver, string) {
	t.Helper()
	r := &otlpReceiver{keep: true}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return r, srv.URL
}

// attrs are a span's attributes as text.
func attrs(s *tracepb.Span) map[string]string {
	m := map[string]string{}
	for _, a := range s.GetAttributes() {
		v := a.GetValue()
		switch {
		case v.GetStringValue() != "":
			m[a.GetKey()] = v.GetStringValue()
		default:
			m[a.GetKey()] = fmt.Sprint(v.GetIntValue())
		}
	}
	return m
}

// traced is a message with a trace context of its own: trace id n, parent
// span id n.
func traced(t *testing.T, m kafka.Message, n int, structured bool) (kafka.Message, string, string) {
	t.Helper()
	traceID, spanID := fmt.Sprintf("%032x", 0xabc000+n), fmt.Sprintf("%016x", 0xdef000+n)
	tp := "00-" + traceID + "-" + spanID + "-01"
	if !structured {
		m.Headers = append(append([]kafka.Header(nil), m.Headers...), kafka.Header{Key: "ce_traceparent", Value: []byte(tp)})
		return m, traceID, spanID
	}
	s, err := demo.Structured(m)
	if err != nil {
		t.Fatal(err)
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(s.Value, &ev); err != nil {
		t.Fatal(err)
	}
	ev["traceparent"], _ = json.Marshal(tp)
	if s.Value, err = json.Marshal(ev); err != nil {
		t.Fatal(err)
	}
	return s, traceID, spanID
}

// TestTracingExportsEventSpans runs `fleet run --tracing` with the real
// OTLP/HTTP exporter, configured by the standard variables, against a
// receiver in the test: every event's process span continues the trace the
// event carries (binary and structured mode), its claim, handle and
// complete spans are its children, and an event that fails is an error
// with a dead-letter event.
func TestTracingExportsEventSpans(t *testing.T) {
	recv, url := newOTLPReceiver(t)
	exportTracesTo(t, "http/protobuf", url, "100")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")

	c := newCluster(t, 1)
	valid, _ := ledgerStream(t, 2, 2, 0, 7)
	type want struct{ id, traceID, spanID string }
	var msgs []kafka.Message
	var wants []want
	for i, m := range valid {
		tm, traceID, spanID := traced(t, m, i, i == 1)
		msgs, wants = append(msgs, tm), append(wants, want{demo.Header(m, consumer.HeaderID), traceID, spanID})
	}
	bad := demo.Event("unknown-1", "acct-x", "ledger.unheard_of", `{}`)
	bad, badTrace, badSpan := traced(t, bad, 9, false)
	msgs, wants = append(msgs, bad), append(wants, want{"unknown-1", badTrace, badSpan})

	addr := freeHTTPAddr(t)
	w := c.startWorker("traced", "--tracing", "--retry-delays", "none", "--http-addr", addr)
	c.publish(msgs)

	process := map[string]*tracepb.Span{}
	var spans []*tracepb.Span
	var service string
	deadline := time.Now().Add(60 * time.Second)
	for len(process) < len(wants) || len(spans) < 4*len(wants)-3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d process spans and %d spans in all after 60s; logs:\n%s", len(process), len(spans), w.logs)
		}
		time.Sleep(100 * time.Millisecond)
		spans, service = recv.snapshot()
		for _, s := range spans {
			if s.GetName() == e2eTopic+" process" {
				process[attrs(s)["messaging.message.id"]] = s
			}
		}
	}
	if service != "fleet" {
		t.Errorf("service.name = %q, want fleet", service)
	}
	children := map[string][]string{} // process span id → child names
	for _, s := range spans {
		children[hex.EncodeToString(s.GetParentSpanId())] = append(children[hex.EncodeToString(s.GetParentSpanId())], s.GetName())
	}
	for _, wt := range wants {
		p := process[wt.id]
		if p == nil {
			t.Errorf("no process span for %s", wt.id)
			continue
		}
		if got := hex.EncodeToString(p.GetTraceId()); got != wt.traceID {
			t.Errorf("%s: trace id %s, want the published %s", wt.id, got, wt.traceID)
		}
		if got := hex.EncodeToString(p.GetParentSpanId()); got != wt.spanID {
			t.Errorf("%s: parent span %s, want the published %s", wt.id, got, wt.spanID)
		}
		if p.GetKind() != tracepb.Span_SPAN_KIND_CONSUMER {
			t.Errorf("%s: kind %v", wt.id, p.GetKind())
		}
		a := attrs(p)
		for k, v := range map[string]string{"messaging.system": "kafka", "messaging.operation.type": "process",
			"messaging.destination.name": e2eTopic, "messaging.destination.partition.id": "0",
			"messaging.consumer.group.name": "ledger-e2e", "cloudevents.event_source": demo.Source} {
			if a[k] != v {
				t.Errorf("%s: %s = %q, want %q", wt.id, k, a[k], v)
			}
		}
		if _, ok := a["messaging.kafka.offset"]; !ok || a["cloudevents.event_type"] == "" {
			t.Errorf("%s: attributes %v lack the offset or the event type", wt.id, a)
		}
		got := slices.Sorted(slices.Values(children[hex.EncodeToString(p.GetSpanId())]))
		if wt.id == "unknown-1" {
			if p.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
				t.Errorf("unknown type: status %v, want an error", p.GetStatus())
			}
			var dead bool
			for _, ev := range p.GetEvents() {
				dead = dead || ev.GetName() == "dead-lettered"
			}
			if !dead || a["fleet.outcome"] != consumer.OutcomeDeadLettered {
				t.Errorf("unknown type: events %v, outcome %q: want dead-lettered", p.GetEvents(), a["fleet.outcome"])
			}
			if len(got) != 0 {
				t.Errorf("unknown type: children %v, want none (never claimed)", got)
			}
			continue
		}
		if p.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR || a["fleet.outcome"] != consumer.OutcomeProcessed {
			t.Errorf("%s: status %v, outcome %q", wt.id, p.GetStatus(), a["fleet.outcome"])
		}
		if fmt.Sprint(got) != "[claim complete handle]" {
			t.Errorf("%s: children %v, want claim, handle and complete", wt.id, got)
		}
	}
	traceIDs := map[string]bool{}
	for _, wt := range wants {
		traceIDs[wt.traceID] = true
	}
	checkExemplars(t, addr, traceIDs)
}

// checkExemplars scrapes /metrics as OpenMetrics: the handler-duration and
// latency histograms have exemplars naming the events' traces; and
// promtool check metrics finds nothing in the text-format scrape.
func checkExemplars(t *testing.T, addr string, traceIDs map[string]bool) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/openmetrics-text") {
		t.Fatalf("scrape: %v, content type %q", err, resp.Header.Get("Content-Type"))
	}
	for _, name := range []string{"fleet_handler_duration_seconds_bucket", "fleet_consumer_event_latency_seconds_bucket"} {
		found := false
		for _, line := range strings.Split(string(body), "\n") {
			_, ex, ok := strings.Cut(line, " # {")
			if !strings.HasPrefix(line, name) || !ok {
				continue
			}
			for id := range traceIDs {
				found = found || strings.Contains(ex, `trace_id="`+id+`"`)
			}
		}
		if !found {
			t.Errorf("no %s line has an exemplar naming a published trace", name)
		}
	}
	// promtool reads the Prometheus text format, the scrape without
	// exemplars: the histograms that carry them must still lint clean.
	_, text := httpGet(t, "http://"+addr+"/metrics")
	check := exec.Command(promtool(t), "check", "metrics")
	check.Stdin = strings.NewReader(text)
	if out, err := check.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestTracingExportFailureLogged: an export the collector refuses is a
// warning in fleet's own log, not a line of the SDK's own logger.
func TestTracingExportFailureLogged(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusBadRequest) // not retried
	}))
	t.Cleanup(srv.Close)
	exportTracesTo(t, "http/protobuf", srv.URL, "20")
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	tp, stop, err := startTracing(t.Context(), log, true, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stop() }()
	_, span := tp.Tracer("test").Start(t.Context(), "refused")
	span.End()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), `"msg":"tracing"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning logged; logs: %s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTracingOff: without --tracing there is no provider at all.
func TestTracingOff(t *testing.T) {
	tp, stop, err := startTracing(t.Context(), slog.New(slog.DiscardHandler), false, "test")
	if err != nil || tp != nil || stop() != nil {
		t.Fatalf("startTracing(off) = %v, %v", tp, err)
	}
}

// TestPublishStartsTrace: fleet publish --tracing starts a trace per event
// with a producer span, publishes the event in it (binary and structured
// mode), and fleet run --tracing continues it: the process span is the
// send span's child.
func TestPublishStartsTrace(t *testing.T) {
	recv, url := newOTLPReceiver(t)
	exportTracesTo(t, "http/protobuf", url, "100")
	c := newCluster(t, 1)
	c.startWorker("traced", "--tracing")
	base := []string{"publish", "--tracing", "--brokers", strings.Join(c.brokers, ","), "--topic", e2eTopic, "--source", "payments-api",
		"--type", "payment.captured", "--key", "acct-t", "--data", `{"account":"acct-t","amount_cents":5}`}
	traceRe := regexp.MustCompile(` trace=([0-9a-f]{32}) to payments\n$`)
	traces := map[string]string{} // event id → trace id
	for _, mode := range []string{"binary", "structured"} {
		args := append(slices.Clone(base), "--id", "t-"+mode)
		if mode == "structured" {
			args = append(args, "--structured")
		}
		out := fleetOut(t, false, args...)
		m := traceRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("publish output %q: want the trace id", out)
		}
		traces["t-"+mode] = m[1]
	}
	byID := map[string]*tracepb.Span{} // span id → span
	process := map[string]*tracepb.Span{}
	deadline := time.Now().Add(60 * time.Second)
	for len(process) < len(traces) {
		if time.Now().After(deadline) {
			t.Fatalf("%d process spans after 60s", len(process))
		}
		time.Sleep(100 * time.Millisecond)
		spans, _ := recv.snapshot()
		for _, s := range spans {
			byID[hex.EncodeToString(s.GetSpanId())] = s
			if s.GetName() == e2eTopic+" process" {
				process[attrs(s)["messaging.message.id"]] = s
			}
		}
	}
	for id, traceID := range traces {
		p := process[id]
		if got := hex.EncodeToString(p.GetTraceId()); got != traceID {
			t.Errorf("%s: process span in trace %s, want the printed %s", id, got, traceID)
		}
		send := byID[hex.EncodeToString(p.GetParentSpanId())]
		if send == nil || send.GetName() != e2eTopic+" send" || send.GetKind() != tracepb.Span_SPAN_KIND_PRODUCER || len(send.GetParentSpanId()) != 0 {
			t.Errorf("%s: the process span's parent is %v, want the root producer span of fleet publish", id, send)
			continue
		}
		if a := attrs(send); a["messaging.message.id"] != id || a["messaging.operation.type"] != "send" {
			t.Errorf("%s: send span attributes %v", id, a)
		}
	}
}
