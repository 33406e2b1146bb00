package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/internal/demo"
)

// partitionRun is one measurement of what assigned partitions cost a
// worker: events spread evenly over the partitions of a fresh source topic
// on an embedded broker, and one `fleet run` child process, with its retry
// tiers and parked topic, draining them into a private redis-server.
type partitionRun struct {
	// exe is the fleet binary; partitions and events the load.
	exe        string
	partitions int
	events     int
	// idle is how long the worker stays idle after the drain before the
	// idle figures are read; timeout bounds the drain.
	idle, timeout time.Duration
	// extra are more arguments of fleet run; logs, when set, names the file
	// (suffixed with the partition count) the worker's output goes to.
	extra []string
	logs  string
}

// partitionResult is what one partitionRun measured of the worker.
type partitionResult struct {
	Partitions int `json:"partitions"`
	Events     int `json:"events"`
	// ReadySeconds is from the start of the process until it is ready (a
	// member of the group), DrainSeconds from then until every event is
	// committed.
	ReadySeconds float64 `json:"ready_seconds"`
	DrainSeconds float64 `json:"drain_seconds"`
	// Drained is false when the worker did not drain the events within the
	// timeout: DrainSeconds is then the timeout, and the idle figures are
	// read at once.
	Drained bool `json:"drained"`
	// PeakRSSMiB is the process's VmHWM after the drain and the idle time.
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// PeakGoroutines and PeakHeapMiB are the most go_goroutines and
	// go_memstats_heap_inuse_bytes seen on /metrics (sampled every second).
	PeakGoroutines int     `json:"peak_goroutines"`
	PeakHeapMiB    float64 `json:"peak_heap_inuse_mib"`
	// The same once the worker has been idle for the idle time: RSS is
	// VmRSS.
	IdleGoroutines int     `json:"idle_goroutines"`
	IdleHeapMiB    float64 `json:"idle_heap_inuse_mib"`
	IdleRSSMiB     float64 `json:"idle_rss_mib"`
	// Assigned is fleet_consumer_partitions_assigned: the source
	// partitions and those of the retry tiers and the parked topic.
	Assigned int `json:"assigned_partitions"`
}

// partitionTopic is the source topic of a partitionRun.
const partitionTopic = "partitions"

// measure runs the measurement: broker, Redis, load, worker.
func (r partitionRun) measure(ctx context.Context) (partitionResult, error) {
	res := partitionResult{Partitions: r.partitions, Events: r.events}
	cluster, err := embeddedBroker(r.partitions, partitionTopic)
	if err != nil {
		return res, err
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	redisURL, stopRedis, err := startRedis()
	if err != nil {
		return res, err
	}
	defer stopRedis()
	if err := r.load(ctx, brokers); err != nil {
		return res, err
	}
	return r.watch(ctx, brokers, redisURL, res)
}

// load publishes the events, spread round-robin over the partitions.
func (r partitionRun) load(ctx context.Context, brokers []string) error {
	accounts := max(r.partitions, 100)
	stream, err := demo.New(r.events, accounts, 0, uint64(r.partitions)) // #nosec G115 -- checked: 1 to 4096
	if err != nil {
		return err
	}
	msgs := stream.Valid
	for i := range msgs {
		msgs[i].Partition = i % r.partitions
	}
	t := &kafka.Transport{}
	defer t.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: partitionTopic, Balancer: consumer.PartitionBalancer{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: 1000, Transport: t}
	defer w.Close()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("load %s: %w", partitionTopic, err)
	}
	return nil
}

// watch starts the worker, times its drain and samples it, and stops it.
func (r partitionRun) watch(ctx context.Context, brokers []string, redisURL string, res partitionResult) (partitionResult, error) {
	addr, err := freeLocalAddr()
	if err != nil {
		return res, err
	}
	args := append([]string{"run", "--brokers", strings.Join(brokers, ","), "--topics", partitionTopic, "--group", "partitions",
		"--http-addr", addr, "--commit-interval", "200ms", "--log-format", "text", "--log-level", "warn"}, r.extra...)
	cmd := workerCommand(ctx, r.exe, args, redisURL)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s := &sampler{addr: addr, pid: cmd.Process.Pid}
	err = r.follow(ctx, brokers, s, start, &res, exited)
	if stopErr := stopWorker(cmd.Process, exited); err == nil && res.Drained && stopErr != nil {
		err = stopErr
	}
	if r.logs != "" {
		if werr := os.WriteFile(r.logs+"."+strconv.Itoa(r.partitions), logs.Bytes(), 0o600); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return res, fmt.Errorf("%d partitions: %w; worker output:\n%s", r.partitions, err, tail(logs.String(), 4000))
	}
	return res, nil
}

// follow waits for the worker to be ready, then for the drain, then idles,
// sampling the worker all along.
func (r partitionRun) follow(ctx context.Context, brokers []string, s *sampler, start time.Time, res *partitionResult, exited <-chan error) error {
	t := &kafka.Transport{}
	defer t.CloseIdleConnections()
	g := &groupOffsets{client: &kafka.Client{Addr: kafka.TCP(brokers...), Transport: t, Timeout: 5 * time.Second},
		group: "partitions", topic: partitionTopic, partitions: r.partitions}
	end, err := g.end(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(r.timeout)
	var ready time.Time
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case err := <-exited:
			return fmt.Errorf("worker exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if n%10 == 0 {
			s.sample()
		}
		if ready.IsZero() {
			if code, _ := httpStatus(s.addr, "/readyz"); code == http.StatusOK {
				ready = time.Now()
				res.ReadySeconds = ready.Sub(start).Seconds()
			}
		}
		if committed, err := g.committed(ctx); err == nil && reached(committed, end) {
			res.Drained = true
			break
		}
		if time.Now().After(deadline) {
			break
		}
	}
	if ready.IsZero() {
		ready = start
	}
	res.DrainSeconds = time.Since(ready).Seconds()
	idle := r.idle
	if !res.Drained {
		idle = 0
	}
	return r.idleFigures(ctx, s, res, idle)
}

// idleFigures waits idle, sampling, and reads the figures.
func (r partitionRun) idleFigures(ctx context.Context, s *sampler, res *partitionResult, idle time.Duration) error {
	for until := time.Now().Add(idle); time.Now().Before(until); {
		if !sleepCtx(ctx, time.Second) {
			return ctx.Err()
		}
		s.sample()
	}
	status, err := procStatus(s.pid)
	if err != nil {
		return err
	}
	// A worker that did not drain may be too busy to answer: its figures
	// are then those sampled.
	if m, err := s.metrics(); err == nil {
		res.IdleGoroutines, res.IdleHeapMiB = int(m["go_goroutines"]), m["go_memstats_heap_inuse_bytes"]/(1<<20)
		res.Assigned = int(m["fleet_consumer_partitions_assigned"])
	} else if res.Drained {
		return err
	}
	res.IdleRSSMiB, res.PeakRSSMiB = float64(status["VmRSS"])/1024, float64(status["VmHWM"])/1024
	res.PeakGoroutines, res.PeakHeapMiB = max(s.goroutines, res.IdleGoroutines), max(s.heap, res.IdleHeapMiB)
	return nil
}

// sampler keeps the most goroutines and heap a worker showed.
type sampler struct {
	addr       string
	pid        int
	goroutines int
	heap       float64
}

func (s *sampler) sample() {
	m, err := s.metrics()
	if err != nil {
		return
	}
	s.goroutines = max(s.goroutines, int(m["go_goroutines"]))
	s.heap = max(s.heap, m["go_memstats_heap_inuse_bytes"]/(1<<20))
}

// metrics reads the unlabelled gauges the worker serves on /metrics.
func (s *sampler) metrics() (map[string]float64, error) {
	code, body := httpStatus(s.addr, "/metrics")
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %d %s", code, tail(body, 200))
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.Fields(value)[0], 64); err == nil && !math.IsNaN(v) {
			out[name] = v
		}
	}
	return out, sc.Err()
}

// procStatus reads the kB figures of /proc/<pid>/status (VmHWM, VmRSS, …).
func procStatus(pid int) (map[string]int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, fmt.Errorf("read the worker's memory: %w", err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasSuffix(v, "kB") {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64); err == nil {
			out[k] = n
		}
	}
	if _, ok := out["VmHWM"]; !ok {
		return nil, errors.New("read the worker's memory: no VmHWM")
	}
	return out, nil
}

// httpStatus GETs path on addr: the status code (0 when unreachable) and
// the body.
func httpStatus(addr, path string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// stopWorker stops the worker with SIGTERM, and kills it if it has not
// exited 30 s later.
func stopWorker(p *os.Process, exited <-chan error) error {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return nil // already gone: its exit was reported
	}
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("worker exit after SIGTERM: %w", err)
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = p.Kill()
		<-exited
		return errors.New("worker still running 30s after SIGTERM")
	}
}

// freeLocalAddr is a loopback address with a port free now.
func freeLocalAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// sleepCtx waits d, or until ctx is done; it reports false in the latter
// case.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
