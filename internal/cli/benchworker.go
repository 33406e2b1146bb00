package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/httphandler"
)

// benchWorkerCmd is one measured worker of `fleet bench`, run as a child
// process so that its memory and CPU are its own. It consumes until it has
// finished --expect messages, then prints a workerResult as JSON.
type benchWorkerCmd struct {
	Mode        string   `enum:"naive,fleet" required:"" help:"naive or fleet."`
	Brokers     []string `sep:"," required:""`
	Topic       string   `required:""`
	Group       string   `required:""`
	Redis       string   `env:"FLEET_REDIS_URL" required:"" help:"The Redis URL; pass it in FLEET_REDIS_URL, not on the command line."`
	Expect      int      `required:"" help:"Messages to finish before exiting."`
	Lanes       int      `default:"0"`
	BatchSize   int      `default:"0"`
	MaxInFlight int      `default:"0"`
	MinReplicas int      `default:"0" help:"Wait for this many Redis replicas after every completion batch."`
	Profile     string   `help:"Write <profile>.cpu.pprof and <profile>.heap.pprof."`
	Latency     bool     `help:"Record produce-to-done latency of every event."`
	ReadyFile   string   `help:"Touch this file once consuming has started."`
	TimeoutSec  int      `default:"600"`
	HTTPHandler string   `name:"http-handler" help:"Serve the ledger's events through this HTTP endpoint instead of the Go handlers."`
	FailOnce    float64  `name:"fail-once" default:"0" help:"Share of events whose first attempt fails (retryably), with one attempt in place."`
	Pack        bool     `name:"pack-done-records" help:"Pack done records (fleet run --pack-done-records)."`
	Tracing     bool     `help:"Trace as fleet run --tracing does, set up from the OTEL_* variables."`
}

// workerResult is what a bench worker reports.
type workerResult struct {
	Events     int       `json:"events"`
	Seconds    float64   `json:"seconds"`
	RoundTrips uint64    `json:"redis_round_trips"`
	Latencies  []float64 `json:"latencies_ms,omitempty"`
	PeakRSSKiB int64     `json:"peak_rss_kib"`
	// StoreCalls counts idempotency store calls by operation (fleet only).
	StoreCalls map[string]uint64 `json:"store_calls,omitempty"`
	// Outcomes counts finished messages by outcome (fleet only).
	Outcomes map[string]int `json:"outcomes,omitempty"`
	// MaxGatedKeys is the most keys gated at once (fleet with --fail-once).
	MaxGatedKeys int `json:"max_gated_keys,omitempty"`
}

func (c *benchWorkerCmd) Run(app *App) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, time.Duration(c.TimeoutSec)*time.Second)
	defer cancel()
	opts, err := parseRedisURL(c.Redis)
	if err != nil {
		return configError{err}
	}
	opts.PoolSize = 64
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	var res workerResult
	if c.Profile != "" {
		stopProfile, err := startProfile(c.Profile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	if c.Mode == "naive" {
		res, err = c.naive(ctx, rdb)
	} else {
		res, err = c.fleet(ctx, rdb, app.version())
	}
	if err != nil {
		return err
	}
	res.PeakRSSKiB, err = peakRSS()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// startProfile starts a CPU profile into prefix.cpu.pprof; the function it
// returns stops it and writes the heap profile (in use and allocated since
// start) into prefix.heap.pprof.
func startProfile(prefix string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(prefix), 0o750); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	cpu, err := os.Create(prefix + ".cpu.pprof") // #nosec G304 -- the operator's own --profile directory
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		_ = cpu.Close()
		return nil, fmt.Errorf("profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = cpu.Close()
		heap, err := os.Create(prefix + ".heap.pprof") // #nosec G304 -- the operator's own --profile directory
		if err != nil {
			fmt.Fprintln(os.Stderr, "heap profile:", err)
			return
		}
		defer heap.Close()
		if err := pprof.Lookup("heap").WriteTo(heap, 0); err != nil {
			fmt.Fprintln(os.Stderr, "heap profile:", err)
		}
	}, nil
}

// peakRSS reads this process's peak resident set size (VmHWM), in KiB.
func peakRSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("peak RSS: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, errors.New("peak RSS: no VmHWM in /proc/self/status")
}

func (c *benchWorkerCmd) touchReady() {
	if c.ReadyFile != "" {
		_ = os.WriteFile(c.ReadyFile, nil, 0o600)
	}
}

// naive is the idempotent consumer written the plain way, with the same
// libraries: fetch one message, SETNX its key, run the handler, apply its
// effect, SET done, commit that one message. It is correct for one worker
// without crashes, and one round trip (or more) per step.
func (c *benchWorkerCmd) naive(ctx context.Context, rdb *redis.Client) (workerResult, error) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: c.Brokers, GroupID: c.Group, Topic: c.Topic,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond,
		StartOffset: kafka.FirstOffset,
	})
	defer r.Close()
	c.touchReady()
	var start time.Time
	trips := uint64(0)
	for n := 0; n < c.Expect; n++ {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return workerResult{}, fmt.Errorf("fetch: %w", err)
		}
		ev, err := consumer.Decode(&m)
		if err == nil {
			key := "naive:" + c.Group + ":" + ev.Source + ":" + ev.ID
			ok, err := rdb.SetNX(ctx, key, "processing", 24*time.Hour).Result()
			trips++
			if err != nil {
				return workerResult{}, err
			}
			if ok {
				tx := handlers.NewTx(key, 1, 1)
				var herr error
				switch ev.Type {
				case ledger.TypeCaptured:
					herr = ledger.Captured(ctx, ev, tx)
				case ledger.TypeRefunded:
					herr = ledger.Refunded(ctx, ev, tx)
				}
				if herr == nil {
					for _, op := range tx.Ops() {
						if err := rdb.IncrBy(ctx, op.Key, op.Delta).Err(); err != nil {
							return workerResult{}, err
						}
						trips++
					}
				}
				if err := rdb.Set(ctx, key, "done", 24*time.Hour).Err(); err != nil {
					return workerResult{}, err
				}
				trips++
			}
		}
		if err := r.CommitMessages(ctx, m); err != nil {
			return workerResult{}, fmt.Errorf("commit: %w", err)
		}
		if n == 0 {
			start = time.Now()
		}
	}
	// Both workers are timed from their first finished event to their last.
	return workerResult{Events: c.Expect, Seconds: time.Since(start).Seconds(), RoundTrips: trips}, nil
}

// router is the ledger's: its Go handlers, or the endpoint of
// --http-handler for its event types.
func (c *benchWorkerCmd) router() (*handlers.Router, error) {
	router := handlers.NewRouter()
	if c.HTTPHandler == "" && c.FailOnce > 0 {
		return failingOnce(c.FailOnce)
	}
	if c.HTTPHandler == "" {
		return router, ledger.Register(router, nil)
	}
	e, err := httphandler.ParseEndpoint("payment.*=" + c.HTTPHandler)
	if err != nil {
		return nil, err
	}
	return router, httphandler.Register(router, []httphandler.Endpoint{e}, httphandler.DefaultOptions(), nil)
}

// fleet runs the engine with the full protocol until --expect messages are
// finished. With --tracing, the spans still buffered are exported before it
// returns: their export is part of what tracing costs.
func (c *benchWorkerCmd) fleet(ctx context.Context, rdb *redis.Client, version string) (workerResult, error) {
	// The bench measures the engine on the ledger, whatever domains the
	// binary has: its numbers compare across binaries and releases.
	router, err := c.router()
	if err != nil {
		return workerResult{}, err
	}
	store, err := dedupe.NewRedis(rdb, dedupe.Config{Lease: 30 * time.Second, Retention: 24 * time.Hour,
		MinReplicas: c.MinReplicas, ReplicaTimeout: time.Second, PackDoneRecords: c.Pack})
	if err != nil {
		return workerResult{}, err
	}
	if err := store.Load(ctx); err != nil {
		return workerResult{}, err
	}
	var (
		mu        sync.Mutex
		finished  int
		outcomes  = map[string]int{}
		first     time.Time
		last      time.Time
		latencies []float64
		done      = make(chan struct{})
		seen      = map[[2]int64]bool{}
	)
	if c.Latency {
		latencies = make([]float64, 0, c.Expect)
	}
	cfg := consumer.DefaultConfig()
	cfg.Brokers, cfg.Topics, cfg.Group = c.Brokers, []string{c.Topic}, c.Group
	// Zero keeps the engine's default.
	if c.Lanes > 0 {
		cfg.Lanes = c.Lanes
	}
	if c.BatchSize > 0 {
		cfg.BatchSize = c.BatchSize
	}
	if c.MaxInFlight > 0 {
		cfg.MaxInFlight = c.MaxInFlight
	}
	cfg.MaxWait = 50 * time.Millisecond
	if c.FailOnce > 0 {
		cfg.InPlaceAttempts, cfg.GateScanInterval = 1, 100*time.Millisecond
	}
	cfg.OnFinish = func(m *kafka.Message, outcome string) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		outcomes[outcome]++
		if outcome == consumer.OutcomeRetried || outcome == consumer.OutcomeParked {
			return // it finishes again, from its retry tier or <topic>.parked
		}
		if c.FailOnce > 0 && !firstFinish(seen, m) {
			return // a copy that an end wrote again (a resend of its head)
		}
		if finished == 0 {
			first = now
		}
		finished++
		last = now
		if c.Latency {
			latencies = append(latencies, float64(now.Sub(m.Time).Microseconds())/1000)
		}
		if finished == c.Expect {
			close(done)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tp, stopTracing, err := startTracing(ctx, slog.New(slog.NewTextHandler(os.Stderr, nil)), c.Tracing, version)
	if err != nil {
		return workerResult{}, err
	}
	cfg.TracerProvider = tp
	dlq := consumer.NewPublisher(c.Brokers, nil)
	defer dlq.Close()
	reg := prometheus.NewRegistry()
	engine, err := consumer.New(cfg, store, router, dlq, log, consumer.NewMetrics(reg))
	if err != nil {
		return workerResult{}, err
	}
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- engine.Run(runCtx) }()
	// Ready once a member of the group with its partitions assigned, so that
	// the latency phase does not time the group join.
	for engine.Ready() != nil && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	c.touchReady()
	gated := c.sampleGates(engine, done)
	select {
	case <-done:
	case <-ctx.Done():
		stop()
		<-errc
		mu.Lock()
		defer mu.Unlock()
		return workerResult{}, fmt.Errorf("finished %d of %d: %w", finished, c.Expect, ctx.Err())
	}
	stop()
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		return workerResult{}, err
	}
	if err := stopTracing(); err != nil {
		return workerResult{}, err
	}
	mu.Lock()
	defer mu.Unlock()
	// Both workers are timed from their first finished event to their last.
	res := workerResult{Events: finished, Seconds: last.Sub(first).Seconds(), RoundTrips: store.RoundTrips(), StoreCalls: storeCalls(reg),
		Outcomes: outcomes, MaxGatedKeys: <-gated}
	if c.Latency {
		slices.Sort(latencies)
		res.Latencies = latencies
	}
	return res, nil
}

// storeCalls reads the store calls by operation from the engine's
// fleet_store_duration_seconds histogram.
func storeCalls(reg prometheus.Gatherer) map[string]uint64 {
	mfs, err := reg.Gather()
	if err != nil {
		return nil
	}
	out := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "fleet_store_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" {
					out[l.GetValue()] = m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return out
}

// sampleGates reads the engine's gated keys every 100 ms until done, and
// sends the most it saw.
func (c *benchWorkerCmd) sampleGates(engine *consumer.Engine, done <-chan struct{}) <-chan int {
	most := make(chan int, 1)
	go func() {
		n := 0
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if g := engine.Status().Gates; g != nil {
				n = max(n, g.Gated)
			}
			select {
			case <-done:
				most <- n
				return
			case <-t.C:
			}
		}
	}()
	return most
}

// failingOnce is the ledger behind a middleware that fails the first
// attempt of a share of the events (by a hash of their id), retryably.
func failingOnce(share float64) (*handlers.Router, error) {
	inner := handlers.NewRouter()
	if err := ledger.Register(inner, nil); err != nil {
		return nil, err
	}
	limit := uint32(share * math.MaxUint32)
	router := handlers.NewRouter()
	for _, typ := range inner.Types() {
		h, _ := inner.Lookup(typ)
		err := router.Register(typ, handlers.HandlerFunc(func(ctx context.Context, ev handlers.Event, tx *handlers.Tx) error {
			f := fnv.New32a()
			_, _ = f.Write([]byte(ev.ID))
			if tx.Attempt() == 1 && f.Sum32() < limit {
				return errFailOnce
			}
			return h.Handle(ctx, ev, tx)
		}))
		if err != nil {
			return nil, err
		}
	}
	return router, nil
}

var errFailOnce = errors.New("bench: this event fails its first attempt (--fail-once)")

// firstFinish reports whether m is the first of its source message's
// copies to finish: a retry or parked copy names its source partition and
// offset in fleet's headers.
func firstFinish(seen map[[2]int64]bool, m *kafka.Message) bool {
	at := [2]int64{int64(m.Partition), m.Offset}
	for _, h := range m.Headers {
		switch h.Key {
		case consumer.HeaderOriginalPartition:
			at[0], _ = strconv.ParseInt(string(h.Value), 10, 64)
		case consumer.HeaderOriginalOffset:
			at[1], _ = strconv.ParseInt(string(h.Value), 10, 64)
		}
	}
	if seen[at] {
		return false
	}
	seen[at] = true
	return true
}
