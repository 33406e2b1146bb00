package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/demo"
	"github.com/fleetworks/fleet/internal/redistest"
)

// binary is the fleet binary built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleet-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "fleet")
	out, err := exec.Command("go", "build", "-o", binary, "../../cmd/fleet").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build fleet: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const e2eTopic = "payments"

// cluster is a kfake broker and a redis-server for one test.
type cluster struct {
	t       *testing.T
	brokers []string
	redis   *redistest.Server
	rdb     redis.UniversalClient
	// redisArgs name the store for the workers: --redis URL, and
	// --redis-mode for a cluster.
	redisArgs []string
	writer    *kafka.Writer
	sent      int
}

// newCluster is a kfake broker and a private redis-server.
func newCluster(t *testing.T, partitions int) *cluster {
	return newKafka(t, partitions, nil).withRedis()
}

// withRedis starts the cluster's private redis-server with args.
func (c *cluster) withRedis(args ...string) *cluster {
	c.redis = redistest.Start(c.t, args...)
	c.rdb = c.redis.Client(c.t)
	c.redisArgs = []string{"--redis", c.redis.URL()}
	return c
}

// newKafka is a kfake broker with the test topic and a writer to it (over
// tr, when the broker needs TLS or SASL); the caller adds the store.
func newKafka(t *testing.T, partitions int, tr *kafka.Transport, opts ...kfake.Opt) *cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(int32(partitions), e2eTopic),
		kfake.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl := &cluster{t: t, brokers: c.ListenAddrs()}
	cl.writer = &kafka.Writer{Addr: kafka.TCP(cl.brokers...), Topic: e2eTopic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: 1000}
	t.Cleanup(func() { cl.writer.Close() })
	if tr != nil { // a nil *Transport in the interface would not mean the default
		cl.writer.Transport = tr
		t.Cleanup(tr.CloseIdleConnections)
	}
	return cl
}

func (c *cluster) publish(msgs []kafka.Message) {
	c.t.Helper()
	if err := c.writer.WriteMessages(context.Background(), msgs...); err != nil {
		c.t.Fatalf("publish: %v", err)
	}
	c.sent += len(msgs)
}

// worker is one `fleet run` process.
type worker struct {
	name string
	cmd  *exec.Cmd
	logs *bytes.Buffer
	// exited is closed when the process has exited; err is then its result.
	exited chan struct{}
	err    error
}

func (c *cluster) startWorker(name string, extra ...string) *worker {
	c.t.Helper()
	args := []string{"run",
		"--brokers", strings.Join(c.brokers, ","),
		"--topics", e2eTopic,
		"--group", "ledger-e2e",
		"--http-addr", "127.0.0.1:0",
		"--session-timeout", "6s",
		"--heartbeat-interval", "500ms",
		"--drain-timeout", "3s",
		"--commit-interval", "200ms",
		"--lease", "5s",
		"--log-format", "text",
		"--log-level", "info",
	}
	args = append(args, c.redisArgs...)
	cmd := exec.Command(binary, append(args, extra...)...)
	w := &worker{name: name, cmd: cmd, logs: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = w.logs, w.logs
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		w.err = cmd.Wait()
		close(w.exited)
	}()
	c.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-w.exited
		if c.t.Failed() {
			c.t.Logf("logs of %s:\n%s", name, w.logs.String())
		}
	})
	return w
}

// committed sums the group's committed offsets over all partitions: once it
// equals the messages sent, every message is finished and committed.
func (c *cluster) committed(partitions int) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ids := make([]int, partitions)
	for i := range ids {
		ids[i] = i
	}
	resp, err := (&kafka.Client{Addr: kafka.TCP(c.brokers...)}).OffsetFetch(ctx, &kafka.OffsetFetchRequest{
		GroupID: "ledger-e2e", Topics: map[string][]int{e2eTopic: ids},
	})
	if err != nil || resp.Error != nil {
		return 0
	}
	var sum int64
	for _, p := range resp.Topics[e2eTopic] {
		if p.CommittedOffset > 0 {
			sum += p.CommittedOffset
		}
	}
	return sum
}

func (c *cluster) waitCommitted(partitions int, n int64, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for c.committed(partitions) < n {
		if time.Now().After(deadline) {
			c.t.Fatalf("committed %d of %d messages after %v", c.committed(partitions), n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStable waits until the consumer group is stable with n members, each
// owning at least one partition.
func (c *cluster) waitStable(n int) {
	c.t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(c.brokers...)}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{"ledger-e2e"}})
		cancel()
		state := fmt.Sprint(err)
		if err == nil && len(resp.Groups) == 1 {
			g := resp.Groups[0]
			owning := 0
			for _, m := range g.Members {
				for _, t := range m.MemberAssignments.Topics {
					if len(t.Partitions) > 0 {
						owning++
						break
					}
				}
			}
			if g.Error == nil && g.GroupState == "Stable" && len(g.Members) == n && owning == n {
				return
			}
			state = fmt.Sprintf("%s with %d members, %d owning partitions (err %v)", g.GroupState, len(g.Members), owning, g.Error)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("group not stable with %d members after 60s: %s", n, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) checkBalances(want map[string]int64) {
	c.t.Helper()
	for acct, w := range want {
		got, err := c.rdb.Get(context.Background(), ledger.BalanceKey(acct)).Int64()
		if err != nil && err != redis.Nil {
			c.t.Fatal(err)
		}
		if got != w {
			c.t.Errorf("balance of %s = %d, want %d", acct, got, w)
		}
	}
}

// ledgerStream is n events over accounts, with dupShare of them republished
// (same id, same payload), shuffled, without poison, and the balances they
// must produce.
func ledgerStream(t *testing.T, n, accounts int, dupShare float64, seed uint64) ([]kafka.Message, map[string]int64) {
	t.Helper()
	s, err := demo.New(n, accounts, dupShare, seed)
	if err != nil {
		t.Fatal(err)
	}
	msgs := slices.Clone(s.Valid)
	rand.New(rand.NewPCG(seed, 1)).Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	return msgs, s.Want
}

// TestWorkersKilledAndJoining runs two, then three fleet processes in one
// group; one is killed with SIGKILL mid-stream and another joins. Balances
// must be exact: nothing lost, nothing applied twice.
func TestWorkersKilledAndJoining(t *testing.T) {
	const partitions = 6
	c := newCluster(t, partitions)
	msgs, want := ledgerStream(t, 9000, 200, 0.3, 11)
	third := len(msgs) / 3

	c.startWorker("a")
	b := c.startWorker("b")
	c.publish(msgs[:third])
	c.waitCommitted(partitions, int64(third)/2, 60*time.Second)

	c.startWorker("c")
	c.publish(msgs[third : 2*third])
	c.waitCommitted(partitions, int64(third), 60*time.Second)

	// Kill b while it owns partitions in a settled group, not while its
	// JoinGroup is pending: kfake starts a member's session timer only once
	// its join response is delivered, so a member killed mid-join would keep
	// its partitions forever (a real broker expires it after the session
	// timeout).
	c.waitStable(3)
	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-b.exited
	c.startWorker("d")
	c.publish(msgs[2*third:])
	c.waitCommitted(partitions, int64(c.sent), 90*time.Second)
	c.checkBalances(want)
	t.Logf("%d messages through 4 workers, one killed: %d balances exact", c.sent, len(want))
}

// TestSigtermDrains sends SIGTERM mid-stream: the process exits within the
// drain budget, and after a restart every event is applied exactly once.
func TestSigtermDrains(t *testing.T) {
	const partitions = 4
	c := newCluster(t, partitions)
	msgs, want := ledgerStream(t, 6000, 100, 0.2, 12)
	a := c.startWorker("a")
	c.publish(msgs)
	c.waitCommitted(partitions, 500, 60*time.Second)

	start := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.exited:
		took := time.Since(start)
		if a.err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", a.err, a.logs)
		}
		// The drain budget is 3s; leaving the group and closing the HTTP
		// server come on top.
		if took > 5*time.Second {
			t.Errorf("exit took %v; drain budget is 3s", took)
		}
		t.Logf("exited %v after SIGTERM", took.Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("no exit 15s after SIGTERM")
	}
	if got := c.committed(partitions); got >= int64(c.sent) {
		t.Logf("everything was committed before SIGTERM took effect (%d)", got)
	}
	c.startWorker("b")
	c.waitCommitted(partitions, int64(c.sent), 60*time.Second)
	c.checkBalances(want)
}

// TestBadConfiguration checks that bad configuration exits 2 with one clear
// line.
func TestBadConfiguration(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"nothing", []string{"run"}, nil, "brokers: at least one is required"},
		{"no group", []string{"run", "--brokers", "b:9092", "--topics", "t"}, nil, "group: required"},
		{"bad redis url", []string{"run", "--brokers", "b:9092", "--topics", "t", "--group", "g", "--redis", "http://x"}, nil, "redis URL"},
		{"drain over budget", []string{"run", "--brokers", "b:9092", "--topics", "t", "--group", "g", "--drain-timeout", "30s"}, nil, "drain timeout"},
		{"env too", []string{"run"}, []string{"FLEET_BROKERS=b:9092", "FLEET_TOPICS=t", "FLEET_GROUP=g", "FLEET_ATTEMPTS=0"}, "attempts 0"},
		{"bad duration", []string{"run", "--lease", "soon"}, nil, "--lease"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(binary, tt.args...)
			cmd.Env = append(os.Environ(), tt.env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want code 2 (stderr %q)", err, stderr.String())
			}
			line := strings.TrimSpace(stderr.String())
			if strings.Count(line, "\n") != 0 || !strings.Contains(line, tt.want) {
				t.Fatalf("stderr %q: want one line mentioning %q", line, tt.want)
			}
		})
	}
}

// TestDev runs the demo end to end on the embedded broker and Redis.
func TestDev(t *testing.T) {
	var out, logs bytes.Buffer
	cmd := exec.Command(binary, "dev", "--http-addr", "127.0.0.1:0", "--partitions", "3", "--workers", "3", "--events", "500",
		"--accounts", "20", "--duplicates", "0.3", "--timeout", "1m", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &out, &logs
	if err := cmd.Run(); err != nil {
		t.Fatalf("fleet dev: %v\n%s\nlog:\n%s", err, out.String(), logs.String())
	}
	pub := regexp.MustCompile(`published (\d+) messages: 500 unique events, (\d+) duplicates, 5 poison`).FindStringSubmatch(out.String())
	if pub == nil {
		t.Fatalf("output lacks the published line:\n%s", out.String())
	}
	for _, want := range []string{
		"all " + pub[1] + " messages finished and committed",
		"500 processed, " + pub[2] + " duplicates skipped, 5 dead-lettered",
		"dead-letter topic payments.dlq holds 5 messages:",
		"  conflict      payments/",
		"  unknown_type  payments/",
		"all 20 balances match",
		"OK: every event applied exactly once",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "MISMATCH") {
		t.Errorf("output reports a mismatch:\n%s", out.String())
	}
}

// TestDevTwiceOnOneRedis runs the demo twice on one given redis-server: the
// second run's balances must not add to the first's.
func TestDevTwiceOnOneRedis(t *testing.T) {
	r := redistest.Start(t)
	for i := range 2 {
		var out, logs bytes.Buffer
		cmd := exec.Command(binary, "dev", "--redis", r.URL(), "--http-addr", "127.0.0.1:0", "--partitions", "2", "--workers", "2",
			"--events", "200", "--accounts", "5", "--duplicates", "0.2", "--timeout", "1m", "--log-level", "error")
		cmd.Stdout, cmd.Stderr = &out, &logs
		if err := cmd.Run(); err != nil {
			t.Fatalf("run %d: %v\n%s\nlog:\n%s", i+1, err, out.String(), logs.String())
		}
		if !strings.Contains(out.String(), "all 5 balances match") {
			t.Fatalf("run %d:\n%s", i+1, out.String())
		}
	}
}

// TestReadyzFollowsRedis stops Redis under a running fleet process: /readyz
// turns 503 with the reason, /healthz stays 200, and /readyz turns 200 again
// once Redis is back.
func TestReadyzFollowsRedis(t *testing.T) {
	c := newCluster(t, 2)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c.startWorker("a", "--http-addr", addr)
	status := func(path string) (int, string) { return get(addr, path) }
	await := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	await("ready", func() bool { code, _ := status("/readyz"); return code == 200 })
	c.redis.Stop()
	var body string
	await("not ready", func() bool {
		var code int
		code, body = status("/readyz")
		return code == 503
	})
	if !strings.Contains(body, "idempotency store unavailable") {
		t.Errorf("/readyz body %q does not name the store", body)
	}
	if code, _ := status("/healthz"); code != 200 {
		t.Errorf("/healthz = %d while Redis is down, want 200", code)
	}
	c.redis.Restart()
	await("ready again", func() bool { code, _ := status("/readyz"); return code == 200 })
	if code, body := status("/metrics"); code != 200 || !strings.Contains(body, "fleet_build_info") {
		t.Errorf("/metrics = %d, lacks fleet_build_info", code)
	}
}

// TestBench runs a small fleet bench and checks that every figure it reports
// was measured.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three worker processes")
	}
	prof := t.TempDir()
	out, err := exec.Command(binary, "bench", "--events", "3000", "--accounts", "50", "--partitions", "4", "--latency-for", "1s",
		"--profile", prof, "--json").Output()
	if err != nil {
		t.Fatalf("fleet bench: %v", err)
	}
	var r benchReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("bench JSON: %v\n%s", err, out)
	}
	if len(r.Runs) != 3 || r.Runs[0].Name != "naive" || r.Runs[1].Name != "fleet" {
		t.Fatalf("runs: %+v", r.Runs)
	}
	for _, run := range r.Runs {
		if run.Events == 0 || run.EventsPerSecond <= 0 || run.PeakRSSMiB <= 0 || run.CPUSeconds <= 0 || run.TripsPerEvent <= 0 {
			t.Errorf("run %s has unmeasured figures: %+v", run.Name, run)
		}
	}
	if lat := r.Runs[2]; lat.P50ms <= 0 || lat.P99ms < lat.P50ms {
		t.Errorf("latency figures: %+v", lat)
	}
	if rate := r.Runs[2].RatePerSecond; rate != 20000 {
		t.Errorf("latency phase paced at %v events/s, want half of the 40,000 target", rate)
	}
	if r.Runs[0].Events != r.Messages || r.Runs[1].Events != r.Messages {
		t.Errorf("a worker finished %d/%d of %d messages", r.Runs[0].Events, r.Runs[1].Events, r.Messages)
	}
	if r.Speedup <= 0 || r.BytesPerRecord <= 0 || r.UsedMemoryPerRecord <= 0 {
		t.Errorf("speedup %v, bytes per record %v (MEMORY USAGE), %v (used_memory)", r.Speedup, r.BytesPerRecord, r.UsedMemoryPerRecord)
	}
	for _, run := range r.Runs {
		if run.RedisCPUSeconds <= 0 || run.BenchCPUSeconds <= 0 {
			t.Errorf("run %s: Redis CPU %v s, bench CPU %v s", run.Name, run.RedisCPUSeconds, run.BenchCPUSeconds)
		}
	}
	for _, name := range []string{"fleet.cpu.pprof", "fleet.heap.pprof", "latency.cpu.pprof", "latency.heap.pprof"} {
		if fi, err := os.Stat(filepath.Join(prof, name)); err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v", name, err)
		}
	}
}

// TestBenchHTTPHandler: fleet bench --http-handler runs the ledger over HTTP
// too, every message finished, and reports the latency it adds.
func TestBenchHTTPHandler(t *testing.T) {
	out, err := exec.Command(binary, "bench", "--events", "2000", "--accounts", "50", "--partitions", "4", "--latency-for", "1s",
		"--latency-rate", "1000", "--no-naive", "--http-handler", "--json").Output()
	if err != nil {
		t.Fatalf("fleet bench: %v", err)
	}
	var r benchReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("bench JSON: %v\n%s", err, out)
	}
	if len(r.Runs) != 4 || r.Runs[2].Name != "fleet over HTTP" || r.Runs[3].Name != "fleet over HTTP at half load" {
		t.Fatalf("runs: %+v", r.Runs)
	}
	if h := r.Runs[2]; h.Events != r.Messages || h.EventsPerSecond <= 0 {
		t.Errorf("over HTTP: %d of %d messages, %v events/s", h.Events, r.Messages, h.EventsPerSecond)
	}
	if lat := r.Runs[3]; lat.P50ms <= 0 || lat.P99ms < lat.P50ms || lat.RatePerSecond <= 0 {
		t.Errorf("latency over HTTP: %+v", lat)
	}
	if r.HTTPAddedP50ms != r.Runs[3].P50ms-r.Runs[1].P50ms {
		t.Errorf("added latency %v, want %v", r.HTTPAddedP50ms, r.Runs[3].P50ms-r.Runs[1].P50ms)
	}
}

// recordState is the state of the idempotency record at key, read as the
// store reads it (done records are packed into buckets); "" when there is
// none.
func recordState(ctx context.Context, rdb redis.UniversalClient, key string) (string, error) {
	s, err := dedupe.NewRedis(rdb, dedupe.DefaultConfig())
	if err != nil {
		return "", err
	}
	rec, err := s.Inspect(ctx, key)
	if errors.Is(err, dedupe.ErrNotFound) {
		return "", nil
	}
	return rec.State, err
}
