package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/internal/redistest"
)

// lockedBuffer is a log destination that a test can read while the process
// writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}

func get(addr, path string) (int, string) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// process is serve running in the test, on an embedded broker.
type process struct {
	http   string
	logs   *lockedBuffer
	cancel context.CancelFunc
	done   chan error
}

func startProcess(t *testing.T, rdb redis.UniversalClient) *process {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "payments"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	cfg := consumer.DefaultConfig()
	cfg.Brokers, cfg.Topics, cfg.Group = cluster.ListenAddrs(), []string{"payments"}, "startup"
	cfg.SessionTimeout, cfg.RebalanceTimeout, cfg.HeartbeatInterval, cfg.DrainTimeout = 6*time.Second, 6*time.Second, 500*time.Millisecond, 2*time.Second
	p := &process{http: freeAddr(t), logs: &lockedBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	log := newLogger(p.logs, "debug", "text")
	go func() {
		p.done <- serve(ctx, log, wiring{app: &fleetApp, consumer: cfg, store: dedupe.DefaultConfig(), rdb: rdb, httpAddr: p.http})
	}()
	t.Cleanup(func() {
		cancel()
		<-p.done
	})
	return p
}

// stop cancels the process and returns what serve returned.
func (p *process) stop(t *testing.T) error {
	t.Helper()
	p.cancel()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not return 15s after cancellation")
		return nil
	}
}

// TestStartupWaitsForRedis starts the process before its Redis: it serves
// /healthz, reports not ready, waits, and becomes ready once Redis answers.
func TestStartupWaitsForRedis(t *testing.T) {
	redisAddr := freeAddr(t)
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	p := startProcess(t, rdb)

	eventually(t, 10*time.Second, "a retry to be logged", func() bool {
		return strings.Contains(p.logs.String(), "idempotency store unreachable; waiting")
	})
	if code, body := get(p.http, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "redis at "+redisAddr+": ") ||
		!strings.Contains(body, "connection refused") {
		t.Errorf("/readyz before Redis = %d %q, want 503 naming the Redis and the cause", code, body)
	}
	if code, body := get(p.http, "/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}

	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr(redisAddr); err != nil {
		t.Fatal(err)
	}
	defer mr.Close()
	eventually(t, 20*time.Second, "/readyz to turn 200", func() bool {
		code, _ := get(p.http, "/readyz")
		return code == http.StatusOK
	})
	if code, body := get(p.http, "/metrics"); code != http.StatusOK || !strings.Contains(body, `fleet_build_info{goversion="go`) ||
		!strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_start_time_seconds") {
		t.Errorf("/metrics = %d, lacks build info, Go or process collectors", code)
	}
	if err := p.stop(t); err != nil {
		t.Fatalf("serve after cancellation: %v", err)
	}
	if code, _ := get(p.http, "/healthz"); code != 0 {
		t.Errorf("HTTP still served after serve returned: %d", code)
	}
}

// TestStartupRefusesBadCredentials: waiting cannot fix a refused password,
// so the process ends at once with one clear line and exit code 1.
func TestStartupRefusesBadCredentials(t *testing.T) {
	server := redistest.Start(t)
	admin := server.Client(t)
	if err := admin.ConfigSet(context.Background(), "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	mr := miniredis.RunT(t)
	mr.RequireAuth("s3cret")
	tests := []struct {
		name, url, want string
	}{
		{"redis-server, no password", server.URL(), "NOAUTH"},
		{"redis-server, wrong password", "redis://:nope@" + server.Addr() + "/0", "WRONGPASS"},
		{"miniredis, no password", "redis://" + mr.Addr() + "/0", "NOAUTH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := redis.ParseURL(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			rdb := redis.NewClient(opts)
			defer rdb.Close()
			p := startProcess(t, rdb)
			select {
			case err := <-p.done:
				p.done <- err
				if err == nil || !strings.Contains(err.Error(), tt.want) || exitCode(err) != 1 || strings.Contains(oneLine(err), "\n") {
					t.Fatalf("serve = %v (exit %d), want one line with %s and exit 1", err, exitCode(err), tt.want)
				}
				t.Logf("fleet: %s", oneLine(err))
			case <-time.After(10 * time.Second):
				t.Fatalf("still running 10s after Redis refused the credentials; log:\n%s", p.logs.String())
			}
		})
	}
}

// TestStartupWarnsOnEviction: a Redis that may evict idempotency records is
// logged at error level.
func TestStartupWarnsOnEviction(t *testing.T) {
	r := redistest.Start(t)
	rdb := r.Client(t)
	if err := rdb.ConfigSet(context.Background(), "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, rdb)
	eventually(t, 20*time.Second, "the eviction warning", func() bool {
		logs := p.logs.String()
		return strings.Contains(logs, "level=ERROR") && strings.Contains(logs, "maxmemory-policy=allkeys-lru")
	})
	if err := p.stop(t); err != nil {
		t.Fatal(err)
	}
}
