package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// benchCurvesCmd is `fleet bench-curves`: the cost curves of
// docs/performance.md, each measured with the machinery of `fleet bench`
// and `fleet bench-partitions` on a fresh embedded broker and private
// redis-server per point. It writes DIR/curves.json and one SVG per curve,
// and prints the curves as markdown tables.
type benchCurvesCmd struct {
	Out        string        `required:"" type:"path" help:"Directory for curves.json and the SVG plots (created if missing)."`
	Quick      bool          `help:"Fewer events and points, for a test: 20,000 events, 1,000 and 100,000 keys, 8 and 64 partitions, 1 s latency runs."`
	Events     int           `default:"100000" help:"Unique events of each throughput run and of each memory fill (--quick: 20,000)."`
	Zipf       float64       `default:"1.1" help:"Exponent of the Zipf-distributed keys (above 1)."`
	LatencyFor time.Duration `default:"5s" help:"How long each latency run publishes (--quick: 1s)."`
	Replot     bool          `help:"Measure nothing: draw the plots and print the tables again from --out's curves.json."`
}

// curvesPlan is what one bench-curves run measures.
type curvesPlan struct {
	Events      int           `json:"events"`
	Keys        []int         `json:"keys"`
	Zipf        float64       `json:"zipf_exponent"`
	MemorySteps int           `json:"memory_steps"`
	Partitions  []int         `json:"partitions"`
	PartEvents  int           `json:"partition_events"`
	Idle        time.Duration `json:"-"`
	Shares      []float64     `json:"latency_shares"`
	LatencyFor  time.Duration `json:"-"`
}

// plan is the run that the flags ask for: --quick trades points and
// events for time.
func (c *benchCurvesCmd) plan() curvesPlan {
	p := curvesPlan{Events: c.Events, Keys: []int{1_000, 10_000, 100_000, 1_000_000}, Zipf: c.Zipf, MemorySteps: 5,
		Partitions: []int{8, 64, 256, 1024}, PartEvents: 20_000, Idle: 5 * time.Second, Shares: []float64{.25, .5, .75},
		LatencyFor: c.LatencyFor}
	if c.Quick {
		p.Events, p.Keys, p.MemorySteps = 20_000, []int{1_000, 100_000}, 3
		p.Partitions, p.PartEvents, p.Idle, p.LatencyFor = []int{8, 64}, 5_000, time.Second, time.Second
	}
	return p
}

func (c *benchCurvesCmd) validate() error {
	switch {
	case c.Events < 1_000:
		return fmt.Errorf("events %d: at least 1,000", c.Events)
	case c.Zipf <= 1:
		return fmt.Errorf("zipf %v: above 1", c.Zipf)
	case c.LatencyFor <= 0:
		return fmt.Errorf("latency-for %v: positive", c.LatencyFor)
	}
	return nil
}

// curvesReport is curves.json: every figure of the curves.
type curvesReport struct {
	Plan        curvesPlan         `json:"plan"`
	Cardinality []cardinalityPoint `json:"cardinality"`
	Memory      []memoryPoint      `json:"memory"`
	Partitions  []partitionResult  `json:"partitions"`
	// Throughput is the events/s that the latency runs' rates are shares
	// of: the uniform run over the fewest keys.
	Throughput float64        `json:"throughput_events_per_second"`
	Latency    []latencyPoint `json:"latency"`
}

// cardinalityPoint is one throughput run: its messages (10% duplicates,
// as in fleet bench) over Keys accounts, picked by Distribution.
type cardinalityPoint struct {
	Keys            int     `json:"keys"`
	Distribution    string  `json:"distribution"`
	Messages        int     `json:"messages"`
	EventsPerSecond float64 `json:"events_per_second"`
	// CPUMicros is the worker process's CPU time (start to exit) per
	// message.
	CPUMicros float64 `json:"worker_cpu_us_per_event"`
}

// memoryPoint is Redis's used_memory once Records done records are in the
// window: what it grew by since the empty (presized) Redis.
type memoryPoint struct {
	Packed         bool    `json:"packed"`
	Records        int     `json:"records"`
	UsedMemory     int64   `json:"used_memory_bytes"`
	BytesPerRecord float64 `json:"bytes_per_record"`
}

// latencyPoint is one paced run at a share of the throughput.
type latencyPoint struct {
	Share         float64 `json:"share"`
	RatePerSecond float64 `json:"offered_rate_per_second"`
	Events        int     `json:"events"`
	P50ms         float64 `json:"latency_p50_ms"`
	P99ms         float64 `json:"latency_p99_ms"`
}

func (c *benchCurvesCmd) Run(stdout io.Writer) error {
	if err := c.validate(); err != nil {
		return configError{err}
	}
	if err := os.MkdirAll(c.Out, 0o750); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	report, err := c.report(exe)
	if err != nil {
		return err
	}
	if err := plotCurves(c.Out, report); err != nil {
		return err
	}
	return report.print(stdout)
}

// report measures the curves and writes curves.json, or, with --replot,
// reads the curves.json there is.
func (c *benchCurvesCmd) report(exe string) (*curvesReport, error) {
	path := filepath.Join(c.Out, "curves.json")
	if c.Replot {
		b, err := os.ReadFile(path) // #nosec G304 -- the operator's own --out directory
		if err != nil {
			return nil, err
		}
		var report curvesReport
		if err := json.Unmarshal(b, &report); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return &report, nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	r := curvesRun{plan: c.plan(), exe: exe, progress: os.Stderr}
	report, err := r.measure(ctx)
	if err != nil {
		return nil, err
	}
	return report, writeCurvesJSON(path, report)
}

func writeCurvesJSON(path string, report *curvesReport) error {
	b, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}
