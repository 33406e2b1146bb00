package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
)

// parseBench parses `fleet bench` arguments with the real struct tags.
func parseBench(t *testing.T, args ...string) (*benchCmd, error) {
	t.Helper()
	var c cli
	p, err := kong.New(&c, kong.Vars{"dev_topic": "payments"}, kong.Exit(func(int) { t.Fatal("kong tried to exit") }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Parse(append([]string{"bench"}, args...))
	return &c.Bench, err
}

func TestBenchStructuredFlags(t *testing.T) {
	for _, tt := range []struct {
		args       []string
		structured bool
		share      float64
	}{
		{nil, false, 1},
		{[]string{"--structured"}, true, 1},
		{[]string{"--structured", "--mix", "0.25"}, true, 0.25},
		{[]string{"--structured", "--mix", "0"}, true, 0},
		{[]string{"--mix=1", "--structured"}, true, 1},
	} {
		c, err := parseBench(t, tt.args...)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if _, err := c.validate(); err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if c.Structured != tt.structured || c.share() != tt.share {
			t.Errorf("%q: structured %v, share %v; want %v, %v", tt.args, c.Structured, c.share(), tt.structured, tt.share)
		}
	}
}

func TestBenchMixRefused(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--structured", "--mix", "1.5"}, "mix 1.5: a share between 0 and 1"},
		{[]string{"--structured", "--mix=-0.1"}, "mix -0.1: a share between 0 and 1"},
		{[]string{"--structured", "--mix", "NaN"}, "mix NaN: a share between 0 and 1"},
		{[]string{"--structured", "--mix", "Inf"}, "mix +Inf: a share between 0 and 1"},
		{[]string{"--mix", "0.5"}, "mix: only with --structured"},
	} {
		c, err := parseBench(t, tt.args...)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		if _, err := c.validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error saying %q", tt.args, err, tt.want)
		}
		// Through the command line: one line, exit code 2, before any run.
		err = Run(App{}, append([]string{"bench"}, tt.args...), io.Discard)
		var ce configError
		if !errors.As(err, &ce) || exitCode(err) != 2 || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("fleet bench %q: %v (exit %d), want a configuration error saying %q", tt.args, err, exitCode(err), tt.want)
		}
	}
	for _, bad := range []string{"half", "", "1/2"} {
		if _, err := parseBench(t, "--structured", "--mix", bad); err == nil || !strings.Contains(err.Error(), "--mix") {
			t.Errorf("--mix %q: %v, want a parse error naming --mix", bad, err)
		}
	}
}

func TestBenchStructuredReport(t *testing.T) {
	binary := benchResult{Name: "fleet", Events: 1000, EventsPerSecond: 1000, CPUSeconds: 2}
	structured := benchResult{Name: structuredRunName("fleet", 0.5), Events: 1000, EventsPerSecond: 930, CPUSeconds: 2.2}
	r := &benchReport{Events: 10, Messages: 11, Partitions: 1, Runs: []benchResult{binary, structured}}
	r.compareStructured(0.5, binary, structured)
	if r.StructuredShare != 0.5 || r.StructuredVsBinary != 0.93 || math.Abs(r.StructuredCPUVsBinary-1.1) > 1e-9 {
		t.Fatalf("share %v, events/s ratio %v, CPU ratio %v; want 0.5, 0.93, 1.1", r.StructuredShare, r.StructuredVsBinary, r.StructuredCPUVsBinary)
	}
	var out bytes.Buffer
	if err := r.print(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fleet 50% structured",
		"structured mode (50% of the events) / binary mode: 0.93x the events/s, 1.10x the worker's CPU time per event"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if got := structuredRunName("fleet", 1); got != "fleet structured" {
		t.Errorf("run name at share 1: %q", got)
	}
}

func TestProfileName(t *testing.T) {
	for group, want := range map[string]string{"fleet-17": "fleet", "latency-17": "latency", "http-17": "http",
		"http-latency-17": "http-latency", "structured-17": "structured"} {
		if got := profileName(group); got != want {
			t.Errorf("profileName(%q) = %q, want %q", group, got, want)
		}
	}
}

// TestBenchStructured: fleet bench --structured --mix runs fleet on the
// mixed stream after the binary run, every message finished, and reports
// both ratios and the run's profiles.
func TestBenchStructured(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three worker processes")
	}
	prof := t.TempDir()
	out, err := exec.Command(binary, "bench", "--events", "2000", "--accounts", "50", "--partitions", "4", "--latency-for", "1s",
		"--latency-rate", "1000", "--no-naive", "--structured", "--mix", "0.5", "--profile", prof, "--json").Output()
	if err != nil {
		t.Fatalf("fleet bench: %v", err)
	}
	var r benchReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("bench JSON: %v\n%s", err, out)
	}
	if len(r.Runs) != 3 || r.Runs[0].Name != "fleet" || r.Runs[1].Name != "fleet 50% structured" {
		t.Fatalf("runs: %+v", r.Runs)
	}
	if s := r.Runs[1]; s.Events != r.Messages || s.EventsPerSecond <= 0 || s.CPUSeconds <= 0 {
		t.Errorf("structured run: %d of %d messages, %v events/s, %v CPU s", s.Events, r.Messages, s.EventsPerSecond, s.CPUSeconds)
	}
	if r.StructuredShare != 0.5 || r.StructuredVsBinary <= 0 || r.StructuredCPUVsBinary <= 0 {
		t.Errorf("share %v, ratios %v and %v", r.StructuredShare, r.StructuredVsBinary, r.StructuredCPUVsBinary)
	}
	for _, name := range []string{"fleet.cpu.pprof", "structured.cpu.pprof", "structured.heap.pprof", "latency.cpu.pprof"} {
		if fi, err := os.Stat(filepath.Join(prof, name)); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", name, err)
		}
	}
}

func TestWorkerEnviron(t *testing.T) {
	got := workerEnviron([]string{"PATH=/bin", "OTEL_SDK_DISABLED=true", "OTEL_BSP_MAX_QUEUE_SIZE=65536", "OTEL_EXPORTER_OTLP_HEADERS=a=b",
		"FLEET_REDIS_URL=redis://x", "MY_OTEL_X=1", "OTEL_BSP_SCHEDULE_DELAY=100"})
	want := []string{"PATH=/bin", "OTEL_BSP_MAX_QUEUE_SIZE=65536", "FLEET_REDIS_URL=redis://x", "MY_OTEL_X=1", "OTEL_BSP_SCHEDULE_DELAY=100"}
	if !slices.Equal(got, want) {
		t.Errorf("workerEnviron = %v, want %v", got, want)
	}
}

func TestSpansAtLeast(t *testing.T) {
	for _, tt := range []struct {
		unique, duplicates int
		want               float64
	}{{10, 0, 4}, {1, 1, 3}, {10, 10, 3}, {0, 0, 0}, {200000, 20000, 840000.0 / 220000}} {
		if got := spansAtLeast(tt.unique, tt.duplicates); got != tt.want {
			t.Errorf("spansAtLeast(%d, %d) = %v, want %v", tt.unique, tt.duplicates, got, tt.want)
		}
	}
}

// TestBenchTracing: fleet bench --tracing runs fleet three times more, on
// streams of their own, with tracing off and then on, every message
// finished, and reports what tracing costs; the receiver gets about a span per event and step (the
// process span, its claim, handle and complete; a duplicate has no
// handle or complete) with every event sampled, and a few with 1 %.
func TestBenchTracing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs five worker processes")
	}
	cmd := exec.Command(binary, "bench", "--events", "2000", "--accounts", "50", "--partitions", "4", "--latency-for", "1s",
		"--latency-rate", "1000", "--no-naive", "--tracing", "--json")
	// A queue that holds a whole run: the count is then exact. The other
	// OTEL_* variables are the caller's, which the workers must not get: a
	// timeout of 1 ms would fail the flush, a malformed resource the start,
	// a disabled SDK the count.
	cmd.Env = append(os.Environ(), "OTEL_BSP_MAX_QUEUE_SIZE=65536", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=1",
		"OTEL_RESOURCE_ATTRIBUTES=team", "OTEL_SDK_DISABLED=true", "OTEL_TRACES_SAMPLER=always_off")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fleet bench: %v", err)
	}
	var r benchReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("bench JSON: %v\n%s", err, out)
	}
	if len(r.Runs) != 5 || r.Runs[1].Name != "fleet, tracing off" || r.Runs[2].Name != "fleet traced, 1% sampled" || r.Runs[3].Name != "fleet traced, every event" {
		t.Fatalf("runs: %+v", r.Runs)
	}
	for _, run := range r.Runs[1:4] {
		if run.Events < 2000 || run.EventsPerSecond <= 0 || run.CPUSeconds <= 0 {
			t.Errorf("%s: %d events, %v events/s, %v CPU s", run.Name, run.Events, run.EventsPerSecond, run.CPUSeconds)
		}
	}
	if len(r.TracingCost) != 2 {
		t.Fatalf("tracing cost: %+v", r.TracingCost)
	}
	sampled, all := r.TracingCost[0], r.TracingCost[1]
	if sampled.SpansPerEvent > 0.5 || sampled.SpansAtLeast != 0 || all.SpansAtLeast < 3.5 || all.SpansPerEvent < all.SpansAtLeast || all.SpansPerEvent > 4 {
		t.Errorf("spans per event: %v with 1%% sampled, %v with every event (at least %v)", sampled.SpansPerEvent, all.SpansPerEvent, all.SpansAtLeast)
	}
	for _, c := range r.TracingCost {
		if c.EventsVsOff <= 0 || c.CPUPerEventVsOff <= 0 {
			t.Errorf("%s: ratios %v and %v", c.Run, c.EventsVsOff, c.CPUPerEventVsOff)
		}
	}
}
