package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/internal/demo"
)

// benchCmd is `fleet bench`: the same ledger stream through a naive
// idempotent loop and through fleet, each in a child process, measured in
// the same run; then fleet's produce-to-done latency at half its throughput.
type benchCmd struct {
	Events      int      `default:"200000" help:"Unique events to load."`
	Duplicates  float64  `default:"0.1" help:"Share of events republished with the same id."`
	Accounts    int      `default:"1000" help:"Accounts the events spread over."`
	Partitions  int      `default:"8" help:"Partitions of the bench topics."`
	Lanes       int      `default:"0" help:"fleet: key-ordered lanes per partition (0: the engine's default)."`
	BatchSize   int      `default:"0" help:"fleet: events claimed in one round trip (0: the engine's default)."`
	MaxInFlight int      `default:"0" help:"fleet: in-flight events per partition (0: the engine's default)."`
	Profile     string   `help:"Write CPU and heap profiles of the fleet runs into this directory (fleet.cpu.pprof, fleet.heap.pprof, and latency.cpu.pprof, latency.heap.pprof for the half-load run; http.* and http-latency.* for the runs of --http-handler; structured.* for the run of --structured; tracing-0.* (off), tracing-1.* (1%) and tracing-2.* (every event) for the runs of --tracing)."`
	Brokers     []string `sep:"," help:"Use these brokers instead of an embedded one."`
	Redis       string   `help:"Use this Redis (a redis:// URL) instead of a private redis-server started for the run."`
	Replicas    int      `name:"redis-replicas" default:"0" help:"Give the private Redis this many replicas, and have fleet wait for them after every completion batch (--redis-min-replicas): the cost of a failover that loses nothing."`
	NoNaive     bool     `help:"Skip the naive loop."`
	LatencyFor  string   `default:"5s" help:"How long the latency phase publishes."`
	LatencyRate float64  `default:"20000" help:"Events per second the latency phase publishes: half of the 40,000 events/s target (0: half the throughput just measured)."`
	FailOnce    float64  `name:"fail-once" default:"0" help:"Share of events whose handler fails once in fleet's throughput run (with one attempt in place, so that they go to the first retry tier, 1 s): the events behind them on their key are parked and run after them (--retry-order key); the run reports the parked events and the most keys gated at once."`
	HTTPHandler bool     `name:"http-handler" help:"Also run fleet with the ledger served over HTTP by a local endpoint (--http-handler), and report its events/s and the latency it adds per event."`
	Pack        bool     `name:"pack-done-records" help:"fleet: pack done records (fleet run --pack-done-records): the Redis memory per record falls, the Redis CPU per event grows."`
	Structured  bool     `help:"Also run fleet on the same stream in structured mode (each event one JSON object, content-type application/cloudevents+json), right after the binary run, and report both and their ratio."`
	Tracing     bool     `help:"Also run fleet three times, each on a stream of its own: with tracing off, then on (fleet run --tracing) sampling 1% of the events, then every event, exporting over OTLP/HTTP to a receiver in this process that counts the spans; report the traced runs' events/s and CPU per event against the run with tracing off."`
	Mix         *float64 `placeholder:"SHARE" help:"With --structured: the share of the events (0 to 1) that its run publishes in structured mode, the others in binary mode as in the binary run (default: 1, all)."`
	JSON        bool     `name:"json" help:"Print the results as JSON."`

	rdb *redis.Client // the run's Redis, to read its CPU time
}

// benchResult is one worker's measured run.
type benchResult struct {
	Name            string  `json:"name"`
	Events          int     `json:"events"`
	EventsPerSecond float64 `json:"events_per_second"`
	Seconds         float64 `json:"seconds"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"`
	CPUSeconds      float64 `json:"cpu_seconds"`
	// RedisCPUSeconds and BenchCPUSeconds are the CPU that Redis and this
	// process (the embedded broker and the load generator) used while the
	// worker ran: on one machine, what the worker competes with.
	RedisCPUSeconds float64 `json:"redis_cpu_seconds"`
	BenchCPUSeconds float64 `json:"bench_cpu_seconds"`
	TripsPerEvent   float64 `json:"redis_round_trips_per_event"`
	P50ms           float64 `json:"latency_p50_ms,omitempty"`
	P95ms           float64 `json:"latency_p95_ms,omitempty"`
	P99ms           float64 `json:"latency_p99_ms,omitempty"`
	RatePerSecond   float64 `json:"offered_rate_per_second,omitempty"`
	// CallsPerEvent are idempotency store calls per event, by operation.
	CallsPerEvent map[string]float64 `json:"store_calls_per_event,omitempty"`
	// With --fail-once: events sent to a retry tier, events parked behind
	// them, and the most keys gated at once (sampled every 100 ms).
	Retried      int `json:"retried,omitempty"`
	Parked       int `json:"parked,omitempty"`
	MaxGatedKeys int `json:"max_gated_keys,omitempty"`
}

type benchReport struct {
	Events     int           `json:"unique_events"`
	Messages   int           `json:"messages"`
	Duplicates float64       `json:"duplicate_share"`
	Partitions int           `json:"partitions"`
	Runs       []benchResult `json:"runs"`
	Speedup    float64       `json:"fleet_vs_naive,omitempty"`
	// HTTPAddedP50ms and HTTPAddedP99ms are what serving the handler over
	// HTTP adds to the produce-to-done latency at half load (--http-handler).
	HTTPAddedP50ms float64 `json:"http_added_latency_p50_ms,omitempty"`
	HTTPAddedP99ms float64 `json:"http_added_latency_p99_ms,omitempty"`
	// With --structured: the share of the structured run's events that
	// were in structured mode (--mix), that run's events/s over the binary
	// run's, and its worker's CPU time per event over the binary run's
	// (on a shared machine, the CPU ratio moves less with what else runs).
	StructuredShare       float64 `json:"structured_share,omitempty"`
	StructuredVsBinary    float64 `json:"structured_vs_binary,omitempty"`
	StructuredCPUVsBinary float64 `json:"structured_vs_binary_cpu_per_event,omitempty"`
	BytesPerRecord        float64 `json:"redis_bytes_per_record"`
	// UsedMemoryPerRecord is the used_memory of the fleet run's records,
	// divided by them (the unique events): the bill of a dedupe window,
	// allocator overhead and all. Only with the private Redis, whose
	// records it deletes to measure them (before the structured run, so
	// that only the binary run's are counted).
	UsedMemoryPerRecord float64 `json:"redis_used_memory_per_done_record"`
	// With --tracing: each traced run against the run with tracing off.
	TracingCost []tracingCost `json:"tracing_cost,omitempty"`
}

func (c *benchCmd) Run() error {
	latencyFor, err := c.validate()
	if err != nil {
		return configError{err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	report, err := c.bench(ctx, latencyFor, os.Stderr)
	if err != nil {
		return err
	}
	if c.JSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	return report.print(os.Stdout)
}

// validate checks the flags, and returns how long the latency phase
// publishes.
func (c *benchCmd) validate() (time.Duration, error) {
	latencyFor, err := time.ParseDuration(c.LatencyFor)
	switch {
	case err != nil || latencyFor <= 0:
		return 0, fmt.Errorf("latency-for %q: a positive duration", c.LatencyFor)
	case c.Partitions > 1024:
		return 0, fmt.Errorf("partitions %d: at most 1024", c.Partitions)
	case c.Events < 1 || c.Accounts < 1 || c.Partitions < 1:
		return 0, errors.New("events, accounts and partitions must be at least 1")
	case c.Duplicates < 0 || c.Duplicates > 1:
		return 0, fmt.Errorf("duplicates %v: must be between 0 and 1", c.Duplicates)
	case c.Lanes < 0 || c.BatchSize < 0 || c.MaxInFlight < 0:
		return 0, errors.New("lanes, batch size and max in flight must not be negative (0: the engine's default)")
	case c.Replicas < 0 || (c.Replicas > 0 && c.Redis != ""):
		return 0, errors.New("redis-replicas: not negative, and only with the private Redis (no --redis)")
	case c.FailOnce < 0 || c.FailOnce > 0.5:
		return 0, fmt.Errorf("fail-once %v: must be between 0 and 0.5", c.FailOnce)
	case c.LatencyRate < 0:
		return 0, fmt.Errorf("latency-rate %v: must not be negative (0: half the measured throughput)", c.LatencyRate)
	}
	if _, err := c.structuredShare(); err != nil {
		return 0, err
	}
	return latencyFor, nil
}

func (c *benchCmd) bench(ctx context.Context, latencyFor time.Duration, progress io.Writer) (*benchReport, error) {
	topics := []string{"bench-naive", "bench-fleet", "bench-latency"}
	if c.HTTPHandler {
		topics = append(topics, benchHTTPTopic, benchHTTPLatencyTopic)
	}
	if c.Structured {
		topics = append(topics, benchStructuredTopic)
	}
	if c.Tracing {
		for _, t := range benchTracedRuns {
			topics = append(topics, t.topic)
		}
	}
	env, err := c.environment(ctx, topics, progress)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	brokers, redisURL, rdb := env.brokers, env.redisURL, env.rdb
	c.rdb = rdb

	run := fmt.Sprint(time.Now().UnixNano())
	stream, err := demo.New(c.Events, c.Accounts, c.Duplicates, uint64(time.Now().UnixNano()))
	if err != nil {
		return nil, configError{err}
	}
	msgs := stream.Valid
	report := &benchReport{Events: c.Events, Messages: len(msgs), Duplicates: c.Duplicates, Partitions: c.Partitions}

	load := []string{topics[1]}
	if !c.NoNaive {
		load = topics[:2:2]
	}
	for _, topic := range load {
		fmt.Fprintf(progress, "loading %d messages into %s\n", len(msgs), topic)
		if err := produce(ctx, brokers, topic, msgs, progress); err != nil {
			return nil, err
		}
	}
	if c.Structured {
		// Loaded with the others, so that both runs read from a broker
		// holding the same.
		if err := c.loadStructured(ctx, brokers, msgs, progress); err != nil {
			return nil, err
		}
		load = append(load, benchStructuredTopic)
	}
	if !c.NoNaive {
		fmt.Fprintln(progress, "running the naive loop")
		r, err := c.worker(ctx, brokers, redisURL, benchWorker{mode: "naive", topic: topics[0], group: "naive-" + run, expect: len(msgs)}, progress)
		if err != nil {
			return nil, fmt.Errorf("naive loop: %w", err)
		}
		report.Runs = append(report.Runs, r)
	}
	fmt.Fprintln(progress, "running fleet")
	var failOnce []string
	if c.FailOnce > 0 {
		failOnce = []string{"--fail-once", strconv.FormatFloat(c.FailOnce, 'g', -1, 64)}
	}
	f, err := c.worker(ctx, brokers, redisURL, benchWorker{mode: "fleet", topic: topics[1], group: "fleet-" + run, expect: len(msgs), args: failOnce}, progress)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	report.Runs = append(report.Runs, f)
	if !c.NoNaive && report.Runs[0].EventsPerSecond > 0 {
		report.Speedup = f.EventsPerSecond / report.Runs[0].EventsPerSecond
	}
	report.BytesPerRecord = recordBytes(ctx, rdb, recordsPattern)
	if c.Redis == "" {
		bytes, err := recordsMemory(ctx, rdb)
		if err != nil {
			return nil, fmt.Errorf("measure the records' memory: %w", err)
		}
		report.UsedMemoryPerRecord = float64(bytes) / float64(c.Events)
	}
	if c.Structured {
		s, err := c.benchStructured(ctx, brokers, redisURL, run, f, progress, failOnce...)
		if err != nil {
			return nil, err
		}
		report.Runs = append(report.Runs, s)
		report.compareStructured(c.share(), f, s)
	}
	if c.Tracing {
		runs, costs, err := c.benchTracing(ctx, brokers, redisURL, run, progress, failOnce...)
		if err != nil {
			return nil, err
		}
		report.Runs, report.TracingCost = append(report.Runs, runs...), costs
	}
	if len(c.Brokers) == 0 {
		// The loaded topics are done with: deleting them lets the embedded
		// broker free their messages, so that its garbage collector does
		// not compete with the latency phase for this machine's cores.
		if err := deleteTopics(ctx, brokers, load); err != nil {
			fmt.Fprintf(progress, "delete bench topics: %v (going on)\n", err)
		}
		runtime.GC()
	}

	// Latency at half load: a paced producer, a live worker. Half load is
	// half of DESIGN's 40,000 events/s target unless told otherwise.
	rate := c.LatencyRate
	if rate == 0 {
		rate = f.EventsPerSecond / 2
	}
	// At most the loaded stream: a short run measures a shorter phase.
	n := min(int(rate*latencyFor.Seconds()), len(msgs))
	fmt.Fprintf(progress, "latency: %d events at %.0f/s\n", n, rate)
	lat, err := c.worker(ctx, brokers, redisURL, benchWorker{mode: "fleet", topic: topics[2], group: "latency-" + run, expect: n, feed: func() error {
		return producePaced(ctx, brokers, topics[2], msgs[:n], rate)
	}}, progress)
	if err != nil {
		return nil, fmt.Errorf("latency run: %w", err)
	}
	lat.Name, lat.RatePerSecond = "fleet at half load", rate
	report.Runs = append(report.Runs, lat)
	if c.HTTPHandler {
		runs, err := c.benchHTTP(ctx, brokers, redisURL, run, msgs, rate, n, progress)
		if err != nil {
			return nil, err
		}
		report.Runs = append(report.Runs, runs...)
		report.HTTPAddedP50ms, report.HTTPAddedP99ms = runs[1].P50ms-lat.P50ms, runs[1].P99ms-lat.P99ms
	}
	return report, nil
}

// environment is the run's broker and Redis: those given (--brokers,
// --redis), or an embedded broker with topics and a private redis-server
// (with --redis-replicas replicas) sized for the keys the run adds.
func (c *benchCmd) environment(ctx context.Context, topics []string, progress io.Writer) (env *benchEnv, err error) {
	env = &benchEnv{brokers: c.Brokers, redisURL: c.Redis}
	defer func() {
		if err != nil {
			env.Close()
		}
	}()
	if len(env.brokers) == 0 {
		cluster, err := embeddedBroker(c.Partitions, topics...)
		if err != nil {
			return env, err
		}
		env.closers = append(env.closers, cluster.Close)
		env.brokers = cluster.ListenAddrs()
	}
	if env.redisURL == "" {
		url, stopRedis, err := startRedis()
		if err != nil {
			return env, err
		}
		env.closers = append(env.closers, stopRedis)
		env.redisURL = url
		for range c.Replicas {
			_, stopReplica, err := startRedis("--replicaof", "127.0.0.1", strings.TrimSuffix(strings.TrimPrefix(url, "redis://127.0.0.1:"), "/0"))
			if err != nil {
				return env, fmt.Errorf("replica: %w", err)
			}
			env.closers = append(env.closers, stopReplica)
		}
	}
	opts, err := parseRedisURL(env.redisURL)
	if err != nil {
		return env, configError{err}
	}
	env.rdb = redis.NewClient(opts)
	env.closers = append(env.closers, func() { _ = env.rdb.Close() })
	if c.Redis == "" {
		// Each phase leaves at most a key per event (the naive loop's
		// markers, fleet's records), and the balances.
		phases := 3
		if c.Structured {
			phases++
		}
		if c.Tracing {
			phases += len(benchTracedRuns)
		}
		keys := phases*c.Events + c.Accounts + 1024
		fmt.Fprintf(progress, "sizing the private Redis's keyspace for %d keys\n", keys)
		if err := presize(ctx, env.rdb, keys); err != nil {
			return env, fmt.Errorf("size the private Redis: %w", err)
		}
		// Else the first run would pay for the move to the grown tables.
		if err := finishRehash(ctx, env.rdb); err != nil {
			return env, fmt.Errorf("size the private Redis: %w", err)
		}
	}
	return env, nil
}

// benchWorker is one run of a bench worker: what it consumes, and how.
type benchWorker struct {
	mode         string // naive or fleet
	topic, group string
	expect       int          // messages to finish
	feed         func() error // when set, runs once the worker consumes, to publish while it runs
	args         []string     // more bench-worker flags
	env          []string     // more environment, KEY=value
}

// worker runs one bench worker as a child process and measures it.
func (c *benchCmd) worker(ctx context.Context, brokers []string, redisURL string, w benchWorker, progress io.Writer) (benchResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return benchResult{}, err
	}
	dir, err := os.MkdirTemp("", "fleet-bench")
	if err != nil {
		return benchResult{}, err
	}
	defer os.RemoveAll(dir)
	ready := filepath.Join(dir, "ready")
	// The Redis URL, which may hold a password, goes through the
	// environment: a command line is visible to every user of the machine.
	args := []string{"bench-worker", "--mode", w.mode, "--brokers", strings.Join(brokers, ","), "--topic", w.topic,
		"--group", w.group, "--expect", strconv.Itoa(w.expect), "--ready-file", ready,
		"--lanes", strconv.Itoa(c.Lanes), "--batch-size", strconv.Itoa(c.BatchSize), "--max-in-flight", strconv.Itoa(c.MaxInFlight),
		"--min-replicas", strconv.Itoa(c.Replicas)}
	if w.feed != nil {
		args = append(args, "--latency")
	}
	if c.Pack {
		args = append(args, "--pack-done-records")
	}
	args = append(args, w.args...)
	if w.mode == "fleet" && c.Profile != "" {
		args = append(args, "--profile", filepath.Join(c.Profile, profileName(w.group)))
	}
	cmd := workerCommand(ctx, exe, args, redisURL)
	cmd.Env = append(cmd.Env, w.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	redisBefore, benchBefore := redisCPU(ctx, c.rdb), selfCPU()
	if err := cmd.Start(); err != nil {
		return benchResult{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if w.feed != nil {
		// Publish only once the worker consumes, so latency is not queueing.
		for {
			if _, err := os.Stat(ready); err == nil {
				break
			}
			select {
			case err := <-exited:
				return benchResult{}, fmt.Errorf("worker exited early: %v: %s", err, stderr.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
		if err := w.feed(); err != nil {
			_ = cmd.Process.Kill()
			<-exited
			return benchResult{}, err
		}
	}
	if err := <-exited; err != nil {
		return benchResult{}, fmt.Errorf("%v: %s", err, stderr.String())
	}
	redisAfter, benchAfter := redisCPU(ctx, c.rdb), selfCPU()
	var wr workerResult
	if err := json.Unmarshal(stdout.Bytes(), &wr); err != nil {
		return benchResult{}, fmt.Errorf("worker result %q: %w", stdout.String(), err)
	}
	if err := onlySuccesses(wr.Outcomes); err != nil {
		return benchResult{}, err
	}
	name := w.mode
	if slices.Contains(w.args, "--fail-once") {
		name += " failing once"
	}
	r := benchResult{
		Name:            name,
		Events:          wr.Events,
		Seconds:         wr.Seconds,
		CPUSeconds:      (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds(),
		TripsPerEvent:   float64(wr.RoundTrips) / float64(max(wr.Events, 1)),
		BenchCPUSeconds: benchAfter - benchBefore,
		Retried:         wr.Outcomes[consumer.OutcomeRetried],
		Parked:          wr.Outcomes[consumer.OutcomeParked],
		MaxGatedKeys:    wr.MaxGatedKeys,
	}
	if redisBefore >= 0 && redisAfter >= 0 {
		r.RedisCPUSeconds = redisAfter - redisBefore
	}
	if wr.Seconds > 0 {
		r.EventsPerSecond = float64(wr.Events-1) / wr.Seconds
	}
	// The worker reports its own peak: the rusage of a child counts the
	// parent's memory too, since Linux keeps ru_maxrss across the exec of a
	// process that was started sharing its parent's address space.
	r.PeakRSSMiB = float64(wr.PeakRSSKiB) / 1024
	if len(wr.Latencies) > 0 {
		r.P50ms, r.P95ms, r.P99ms = quantile(wr.Latencies, .50), quantile(wr.Latencies, .95), quantile(wr.Latencies, .99)
	}
	for op, n := range wr.StoreCalls {
		if r.CallsPerEvent == nil {
			r.CallsPerEvent = map[string]float64{}
		}
		r.CallsPerEvent[op] = float64(n) / float64(max(wr.Events, 1))
	}
	fmt.Fprintf(progress, "  %s: %d events in %.2fs, store calls per event %v\n", name, wr.Events, wr.Seconds, r.CallsPerEvent)
	return r, nil
}

// profileName names a fleet run's profiles after its consumer group, less
// the run's tag: fleet, latency, http, http-latency, structured.
func profileName(group string) string {
	if i := strings.LastIndexByte(group, '-'); i > 0 {
		return group[:i]
	}
	return group
}

// onlySuccesses refuses a run in which an event did not succeed: the bench
// measures handlers that work, and a dead letter would be a cheaper event.
// Events sent to a retry tier, or parked, succeed later (--fail-once).
func onlySuccesses(outcomes map[string]int) error {
	for outcome, n := range outcomes {
		switch outcome {
		case consumer.OutcomeProcessed, consumer.OutcomeDuplicate, consumer.OutcomeRetried, consumer.OutcomeParked:
		default:
			return fmt.Errorf("%d events finished as %s: the bench measures events that succeed", n, outcome)
		}
	}
	return nil
}

// workerCommand is a bench worker's command: the Redis URL, which may hold a
// password, goes in its environment, since every user of the machine can
// read a command line (ps, /proc). The caller's OTEL_* variables are left
// out (see workerEnviron).
func workerCommand(ctx context.Context, exe string, args []string, redisURL string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe, args...) // #nosec G204 -- this very binary, with arguments of our own
	cmd.Env = append(workerEnviron(os.Environ()), "FLEET_REDIS_URL="+redisURL)
	return cmd
}

// workerEnviron is environ without the OpenTelemetry variables, but for the
// batch processor's (OTEL_BSP_*): a traced run is set up by the bench, and a
// variable of the caller's (a short export timeout, a malformed resource, a
// disabled SDK) would fail it or measure something else; the batch
// processor's are what one may want to measure.
func workerEnviron(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		if strings.HasPrefix(kv, "OTEL_") && !strings.HasPrefix(kv, "OTEL_BSP_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// quantile of sorted values, nearest rank.
func quantile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func produce(ctx context.Context, brokers []string, topic string, msgs []kafka.Message, progress io.Writer) error {
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: 1000}
	defer w.Close()
	const chunk = 20000
	for i := 0; i < len(msgs); i += chunk {
		if err := w.WriteMessages(ctx, msgs[i:min(i+chunk, len(msgs))]...); err != nil {
			return fmt.Errorf("load %s: %w", topic, err)
		}
		fmt.Fprintf(progress, "  %d/%d\n", min(i+chunk, len(msgs)), len(msgs))
	}
	return nil
}

// producePaced publishes msgs at rate per second, in small batches every
// 5 ms, each message stamped when it is handed to the writer.
func producePaced(ctx context.Context, brokers []string, topic string, msgs []kafka.Message, rate float64) error {
	// What is due is handed over in one call, so the writer need not
	// linger for more: it sends at once, as a producer tuned for latency
	// (linger 0) would.
	t := &kafka.Transport{}
	defer t.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 100 * time.Microsecond, Async: true, Transport: t}
	defer w.Close()
	// A running producer is connected and knows the topic's partitions: the
	// first messages should not wait for the connection and the metadata.
	if _, err := (&kafka.Client{Addr: w.Addr, Transport: t}).Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}}); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	start := time.Now()
	// Every 5 ms, what is due goes to the writer in one call; each
	// message's timestamp is the time of that call.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	sent := 0
	for sent < len(msgs) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		due := min(int(time.Since(start).Seconds()*rate), len(msgs))
		if due <= sent {
			continue
		}
		batch := make([]kafka.Message, due-sent)
		now := time.Now()
		for i := range batch {
			m := msgs[sent+i]
			m.Time = now
			batch[i] = m
		}
		if err := w.WriteMessages(ctx, batch...); err != nil {
			return fmt.Errorf("publish %s: %w", topic, err)
		}
		sent = due
	}
	return nil
}

// redisCPU is the CPU time Redis has used (INFO cpu), or -1 when it cannot
// be read.
func redisCPU(ctx context.Context, rdb *redis.Client) float64 {
	info, err := rdb.InfoMap(ctx, "cpu").Result()
	if err != nil {
		return -1
	}
	total := 0.0
	for _, section := range info {
		for _, k := range []string{"used_cpu_sys", "used_cpu_user"} {
			f, err := strconv.ParseFloat(section[k], 64)
			if err != nil {
				return -1
			}
			total += f
		}
	}
	return total
}

// selfCPU is the CPU time this process has used.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// deleteTopics deletes topics and waits for the answer.
func deleteTopics(ctx context.Context, brokers []string, topics []string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := (&kafka.Client{Addr: kafka.TCP(brokers...)}).DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
	if err != nil {
		return err
	}
	for t, err := range resp.Errors {
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
	}
	return nil
}

// recordBytes is MEMORY USAGE per record over up to 200 keys matching
// pattern: a bucket of packed done records counts as its records.
func recordBytes(ctx context.Context, rdb *redis.Client, pattern string) float64 {
	var keys []string
	for cursor := uint64(0); len(keys) < 200; {
		page, next, err := rdb.Scan(ctx, cursor, pattern, 10000).Result()
		if err != nil {
			return 0
		}
		keys = append(keys, page...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(keys) == 0 {
		return 0
	}
	keys = keys[:min(len(keys), 200)]
	bytes, records := 0.0, 0.0
	for _, k := range keys {
		n, err := rdb.MemoryUsage(ctx, k).Result()
		if err != nil {
			return 0
		}
		bytes += float64(n)
		records++
		if strings.Contains(k, "}:~") {
			held, err := rdb.HLen(ctx, k).Result()
			if err != nil {
				return 0
			}
			records += float64(held) - 1
		}
	}
	return bytes / max(records, 1)
}

// recordsMemory is the used_memory that fleet's records (and their
// buckets) hold in the private Redis: used_memory before and after they
// are deleted. Deleting measures them alone: a Redis that has just grown
// its key tables frees the old ones in the background for seconds, which
// would blur a delta taken across the run.
func recordsMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	before, err := usedMemory(ctx, rdb)
	if err != nil {
		return 0, err
	}
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, recordsPattern, 1000).Result()
		if err != nil {
			return 0, err
		}
		if len(keys) > 0 {
			if err := rdb.Del(ctx, keys...).Err(); err != nil {
				return 0, err
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	after, err := usedMemory(ctx, rdb)
	return before - after, err
}

// recordsPattern matches every key of an idempotency record or bucket.
const recordsPattern = "fleet:idem:{*"

// usedMemory is Redis's used_memory (INFO memory).
func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("info memory: no used_memory")
}

// presize grows an empty Redis's keyspace, and its table of keys with a
// TTL, so that n more keys fit without a resize: it adds placeholder keys
// (with a TTL, so that both tables grow) until the tables have room for
// them and n keys more.
//
// A Redis holding a dedupe window is at a steady size: records expire as
// fast as new ones come. A private Redis starts empty, and on this kind of
// machine each doubling of its tables (at 2^16, 2^17, 2^18 … keys) stalls
// the server for most of a second while the new table's pages are first
// touched; a measurement would time those stalls, not the fleet.
func presize(ctx context.Context, rdb *redis.Client, n int) error {
	size := 1
	for size < 2*n {
		size *= 2
	}
	// More than half the target size grows the tables to it; the keys the
	// run adds then fit, since n <= size/2.
	placeholders := size/2 + 1
	const chunk = 50000
	fill := redis.NewScript(`
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  redis.call('SET', 'fleet-bench:placeholder:' .. i, '', 'PX', ARGV[3])
end
return 1`)
	for lo := 0; lo < placeholders; lo += chunk {
		hi := min(lo+chunk, placeholders) - 1
		if err := fill.Run(ctx, rdb, nil, lo, hi, (24 * time.Hour).Milliseconds()).Err(); err != nil {
			return err
		}
	}
	return nil
}

// startRedis starts a private redis-server on a free port for the run.
func startRedis(extra ...string) (string, func(), error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, errors.New("fleet bench needs a real Redis: pass --redis redis://host:port or install redis-server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	dir, err := os.MkdirTemp("", "fleet-bench-redis")
	if err != nil {
		return "", nil, err
	}
	// #nosec G204 -- redis-server found on the PATH, with arguments of our own
	cmd := exec.Command(path, append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--maxmemory-policy", "noeviction", "--repl-diskless-sync-delay", "0"}, extra...)...)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
	}
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; {
		if time.Now().After(deadline) {
			stop()
			return "", nil, errors.New("private redis-server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return url, stop, nil
}

func (r *benchReport) print(w io.Writer) error {
	fmt.Fprintf(w, "%d unique events, %d messages (%.0f%% duplicates), %d partitions\n\n",
		r.Events, r.Messages, r.Duplicates*100, r.Partitions)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tevents/s\tp50 ms\tp95 ms\tp99 ms\tpeak RSS MiB\tCPU s\tRedis trips/event\tRedis CPU s\tbench CPU s\t")
	for _, x := range r.Runs {
		lat := func(v float64) string {
			if v == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%.1f\t%.2f\t%.3f\t%.2f\t%.2f\t\n", x.Name, x.EventsPerSecond,
			lat(x.P50ms), lat(x.P95ms), lat(x.P99ms), x.PeakRSSMiB, x.CPUSeconds, x.TripsPerEvent, x.RedisCPUSeconds, x.BenchCPUSeconds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Speedup > 0 || r.StructuredVsBinary > 0 {
		fmt.Fprintln(w)
	}
	if r.Speedup > 0 {
		fmt.Fprintf(w, "fleet / naive: %.1fx\n", r.Speedup)
	}
	if r.StructuredVsBinary > 0 {
		fmt.Fprintf(w, "structured mode (%.0f%% of the events) / binary mode: %.2fx the events/s, %.2fx the worker's CPU time per event\n",
			r.StructuredShare*100, r.StructuredVsBinary, r.StructuredCPUVsBinary)
	}
	for _, x := range r.Runs {
		if x.Retried > 0 {
			fmt.Fprintf(w, "%s: %d events sent to a retry tier, %d parked behind them, at most %d keys gated at once\n",
				x.Name, x.Retried, x.Parked, x.MaxGatedKeys)
		}
	}
	for _, t := range r.TracingCost {
		fmt.Fprintf(w, "%s / tracing off: %.2fx the events/s, %.2fx the worker's CPU time per event, %.2f spans per event received\n",
			t.Run, t.EventsVsOff, t.CPUPerEventVsOff, t.SpansPerEvent)
		if t.SpansPerEvent < t.SpansAtLeast {
			fmt.Fprintf(w, "  fewer than the %.2f spans per event that every event sampled makes: the batch processor dropped spans (raise OTEL_BSP_MAX_QUEUE_SIZE)\n",
				t.SpansAtLeast)
		}
	}
	if r.HTTPAddedP50ms != 0 || r.HTTPAddedP99ms != 0 {
		fmt.Fprintf(w, "the handler over HTTP adds %.2f ms at the median, %.2f ms at p99, per event at half load\n", r.HTTPAddedP50ms, r.HTTPAddedP99ms)
	}
	_, err := fmt.Fprintf(w, "Redis memory per done idempotency record: %.0f bytes of used_memory (%.0f bytes MEMORY USAGE)\n",
		r.UsedMemoryPerRecord, r.BytesPerRecord)
	return err
}
