package cli

import (
	"compress/gzip"
	"io"
	"net/http"
	"sync"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// maxOTLPExport bounds one export's body: the SDK's batches of 512 spans
// are a few hundred KiB.
const maxOTLPExport = 64 << 20

// otlpReceiver is an OTLP/HTTP trace endpoint (POST /v1/traces, protobuf,
// gzipped or not). It decodes each export with the protocol's own types
// and counts its spans; with keep it also keeps them, and the service name
// they came from. `fleet bench --tracing` exports to one, as a collector
// the worker reaches on loopback; the tests read what fleet sends with one.
type otlpReceiver struct {
	keep bool

	mu      sync.Mutex
	count   int
	spans   []*tracepb.Span
	service string
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "not an OTLP/HTTP protobuf trace export", http.StatusBadRequest)
		return
	}
	var body io.Reader = http.MaxBytesReader(w, req.Body, maxOTLPExport)
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = io.LimitReader(zr, maxOTLPExport)
	}
	raw, err := io.ReadAll(body)
	var export collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(raw, &export)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.add(&export)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *otlpReceiver) add(export *collectortrace.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range export.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" && r.keep {
				r.service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			r.count += len(ss.GetSpans())
			if r.keep {
				r.spans = append(r.spans, ss.GetSpans()...)
			}
		}
	}
}

// received is how many spans have arrived.
func (r *otlpReceiver) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

// snapshot is the spans kept so far, and their service's name.
func (r *otlpReceiver) snapshot() ([]*tracepb.Span, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...), r.service
}
