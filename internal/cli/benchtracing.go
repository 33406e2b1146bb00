package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/fleetworks/fleet/internal/demo"
)

// benchTracedRun is one run of `fleet bench --tracing`: its name, its
// topic, and the sampler it sets (OTEL_TRACES_SAMPLER, _ARG), none for the
// run with tracing off. The bench events carry no trace context, so each
// is a root and the ratio decides.
type benchTracedRun struct {
	name, topic, sampler, arg string
	// every: every event is sampled.
	every bool
}

// benchTracedRuns are the runs of --tracing, the one with tracing off
// first: the others are compared with it.
var benchTracedRuns = []benchTracedRun{
	{"fleet, tracing off", "bench-tracing-off", "", "", false},
	{"fleet traced, 1% sampled", "bench-traced-sampled", "parentbased_traceidratio", "0.01", false},
	{"fleet traced, every event", "bench-traced-all", "parentbased_always_on", "", true},
}

// tracingCost compares a traced run with the run with tracing off: its
// events/s and its worker's CPU time per event, as ratios to that run's,
// and the spans the receiver got per event.
type tracingCost struct {
	Run              string  `json:"run"`
	EventsVsOff      float64 `json:"events_per_second_vs_off"`
	CPUPerEventVsOff float64 `json:"cpu_per_event_vs_off"`
	SpansPerEvent    float64 `json:"spans_per_event"`
	// SpansAtLeast, with every event sampled, is what the stream's events
	// make at the least (spansAtLeast): fewer received were dropped.
	SpansAtLeast float64 `json:"spans_per_event_at_least,omitempty"`
}

// spansAtLeast is how many spans a stream makes at the least, per message,
// with every event sampled: four for each event (process, claim, handle,
// complete), two for each duplicate (process and claim; another claim
// when its original is still in flight).
func spansAtLeast(unique, duplicates int) float64 {
	if unique+duplicates == 0 {
		return 0
	}
	return float64(4*unique+2*duplicates) / float64(unique+duplicates)
}

// benchTracing runs fleet once per benchTracedRuns: with tracing off, then
// on as `fleet run --tracing` traces. Each run has a stream of its own,
// loaded just before it into a topic of its own (the same shape as the
// fleet run's), and a consumer group of its own, whose records are its
// own: the runs differ in tracing only. The spans go over OTLP/HTTP to a receiver in this process
// that decodes and counts them; the workers get the bench's OTEL_*
// variables, not the caller's, but for the batch processor's (OTEL_BSP_*).
func (c *benchCmd) benchTracing(ctx context.Context, brokers []string, redisURL, run string,
	progress io.Writer, extra ...string) ([]benchResult, []tracingCost, error) {
	recv := &otlpReceiver{}
	url, stop, err := serveOTLPReceiver(recv)
	if err != nil {
		return nil, nil, err
	}
	defer stop()
	var (
		runs  []benchResult
		costs []tracingCost
	)
	for i, t := range benchTracedRuns {
		stream, err := demo.New(c.Events, c.Accounts, c.Duplicates, uint64(time.Now().UnixNano())+uint64(i)) // #nosec G115 -- a seed
		if err != nil {
			return nil, nil, configError{err}
		}
		fmt.Fprintf(progress, "loading %d messages into %s\n", len(stream.Valid), t.topic)
		if err := produce(ctx, brokers, t.topic, stream.Valid, progress); err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(progress, "running %s\n", t.name)
		before := recv.received()
		w := benchWorker{mode: "fleet", topic: t.topic, group: "tracing-" + fmt.Sprint(i) + "-" + run, expect: len(stream.Valid), args: extra}
		if t.sampler != "" {
			w.args, w.env = append([]string{"--tracing"}, extra...), t.environment(url)
		}
		r, err := c.worker(ctx, brokers, redisURL, w, progress)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", t.name, err)
		}
		r.Name = t.name
		runs = append(runs, r)
		if i > 0 {
			cost := compareTraced(t.name, runs[0], r, recv.received()-before)
			if t.every {
				cost.SpansAtLeast = spansAtLeast(stream.Unique, stream.Duplicates)
			}
			costs = append(costs, cost)
		}
		if len(c.Brokers) == 0 {
			// As after the runs before: the broker frees the topic's
			// messages now, not during the next run.
			if err := deleteTopics(ctx, brokers, []string{t.topic}); err != nil {
				fmt.Fprintf(progress, "delete bench topics: %v (going on)\n", err)
			}
			runtime.GC()
		}
	}
	return runs, costs, nil
}

// environment is what a traced run's worker gets: OTLP/HTTP to url, the
// run's sampler, and a service name of its own.
func (t benchTracedRun) environment(url string) []string {
	return []string{
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + url + "/v1/traces",
		"OTEL_TRACES_SAMPLER=" + t.sampler,
		"OTEL_TRACES_SAMPLER_ARG=" + t.arg,
		"OTEL_SERVICE_NAME=fleet-bench",
	}
}

// compareTraced is the cost of traced run t against the untraced run u, of
// which spans reached the receiver.
func compareTraced(name string, u, t benchResult, spans int) tracingCost {
	c := tracingCost{Run: name}
	if u.EventsPerSecond > 0 {
		c.EventsVsOff = t.EventsPerSecond / u.EventsPerSecond
	}
	if u.CPUSeconds > 0 && u.Events > 0 && t.Events > 0 {
		c.CPUPerEventVsOff = (t.CPUSeconds / float64(t.Events)) / (u.CPUSeconds / float64(u.Events))
	}
	if t.Events > 0 {
		c.SpansPerEvent = float64(spans) / float64(t.Events)
	}
	return c
}

// serveOTLPReceiver serves r on a free loopback port, and returns its URL
// and what stops it.
func serveOTLPReceiver(r *otlpReceiver) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("OTLP receiver: %w", err)
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	// Should it fail, the runs that export to it report no spans.
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}
