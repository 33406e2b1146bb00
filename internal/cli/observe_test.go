package cli

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/internal/demo"
)

// freeHTTPAddr returns a local address nobody listens on now.
func freeHTTPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// promtool returns the path of promtool, failing the test when it is
// missing: .ci/run installs it (Debian package prometheus).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not on the PATH: install it (Debian package prometheus; .ci/run does)")
	}
	return p
}

// TestObservability runs a fleet process through a stream with duplicates
// and poison, then scrapes it as Prometheus would: promtool check metrics
// finds nothing, the series SREs rely on are there, /status and fleet
// status show the partitions, offsets and the last errors, and /healthz is
// fine.
func TestObservability(t *testing.T) {
	c := newCluster(t, 3)
	s, err := demo.New(400, 20, 0.2, 5)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeHTTPAddr(t)
	w := c.startWorker("a", "--http-addr", addr)
	c.publish(s.Messages)
	c.waitCommitted(3, int64(c.sent), 60*time.Second)

	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	check := exec.Command(promtool(t), "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{
		`fleet_consumer_events_finished_total{outcome="processed",topic="payments",type="payment.captured"}`,
		`fleet_consumer_events_finished_total{outcome="conflict",topic="payments",type="payment.captured"} 1`,
		`fleet_consumer_events_received_total{topic="payments",type="unknown"}`,
		`fleet_consumer_dead_letters_total{reason="unknown_type",topic="payments"} 1`,
		`fleet_consumer_lag_seconds{partition="0",topic="payments"} 0`,
		`fleet_consumer_oldest_in_flight_seconds{partition="0",topic="payments"} 0`,
		`fleet_consumer_lag_offsets{partition="0",topic="payments"} 0`,
		"fleet_handler_duration_seconds_bucket",
		"fleet_consumer_event_latency_seconds_bucket",
		`fleet_store_duration_seconds_bucket{operation="claim"`,
		"fleet_redis_pool_hit_total",
		"fleet_redis_pool_conn_idle_current",
		"fleet_store_up 1",
		"fleet_ready 1",
		"fleet_consumer_group_joined 1",
		"fleet_consumer_partitions_assigned 15", // 3 of payments, 3 of each of its 3 retry topics, 3 of payments.parked
		"fleet_lease_lost_total 0",
		`fleet_build_info{goversion=`,
		"go_goroutines",
		"process_resident_memory_bytes",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if code, body := httpGet(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %s", code, body)
	}
	code, body = httpGet(t, "http://"+addr+"/status")
	var st consumer.Status
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
		t.Fatalf("/status = %d, %v: %s", code, err, body)
	}
	if st.Group != "ledger-e2e" || !st.Joined || st.NotReady != "" || len(st.Partitions) != 15 {
		t.Fatalf("/status: %+v", st)
	}
	var committed int64
	for _, p := range st.Partitions {
		if p.Topic != e2eTopic {
			if p.Next != -1 || p.InFlight != 0 {
				t.Errorf("retry partition %s/%d: %+v; want untouched", p.Topic, p.Partition, p)
			}
			continue
		}
		if p.Lag != 0 || p.InFlight != 0 || p.Next != p.HighWaterMark {
			t.Errorf("partition %d: %+v; want caught up", p.Partition, p)
		}
		committed += p.Committed
	}
	if committed != int64(c.sent) {
		t.Errorf("/status committed %d, published %d", committed, c.sent)
	}
	dead := 0
	for _, e := range st.LastErrors {
		if strings.HasPrefix(e.What, "dead-lettered") {
			dead++
			if e.Topic != e2eTopic || e.Partition == nil || e.Offset == nil {
				t.Errorf("error entry without its place: %+v", e)
			}
		}
	}
	if dead != len(s.Poison) {
		t.Errorf("/status lists %d dead letters among its last errors, want %d: %+v", dead, len(s.Poison), st.LastErrors)
	}

	out := fleetOut(t, false, "status", "--addr", addr)
	t.Logf("fleet status:\n%s", out)
	for _, want := range []string{"group ledger-e2e", "ready: yes", "TOPIC", "payments", "last errors, newest first:", "dead-lettered (unknown_type)"} {
		if !strings.Contains(out, want) {
			t.Errorf("fleet status lacks %q:\n%s", want, out)
		}
	}
	if msg := fleetOut(t, true, "status", "--addr", freeHTTPAddr(t)); !strings.Contains(msg, "connection refused") {
		t.Errorf("fleet status of nothing: %s", msg)
	}

	// Logs: every failure line names the event and where it was; no
	// payload is logged.
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-w.exited
	failures := 0
	for _, line := range strings.Split(w.logs.String(), "\n") {
		if strings.Contains(line, `{"account"`) || strings.Contains(line, `{\"account\"`) {
			t.Errorf("a log line shows a payload: %s", line)
		}
		if !strings.Contains(line, `msg=dead-lettered`) && !strings.Contains(line, `msg="handler failed"`) {
			continue
		}
		failures++
		for _, key := range []string{"id=", "type=", "topic=", "partition=", "offset=", "attempt="} {
			if !strings.Contains(line, " "+key) {
				t.Errorf("failure line without %s: %s", key, line)
			}
		}
	}
	if failures < len(s.Poison) {
		t.Errorf("%d failure lines, want at least %d", failures, len(s.Poison))
	}
}

// TestStatusAddr moves /status to a port of its own, and turns it off:
// the metrics port then serves no /status.
func TestStatusAddr(t *testing.T) {
	c := newCluster(t, 1)
	addr, status := freeHTTPAddr(t), freeHTTPAddr(t)
	c.startWorker("own", "--http-addr", addr, "--status-addr", status)
	waitHTTP := func(url string) (int, string) {
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := http.Get(url) // #nosec G107 -- a test's own address
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(b)
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %v", url, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if code, body := waitHTTP("http://" + status + "/status"); code != http.StatusOK || !strings.Contains(body, `"group": "ledger-e2e"`) {
		t.Errorf("/status on its own port: %d %s", code, body)
	}
	if code, _ := waitHTTP("http://" + addr + "/status"); code != http.StatusNotFound {
		t.Errorf("/status on the metrics port when it has its own: %d, want 404", code)
	}
	if code, _ := waitHTTP("http://" + status + "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the status port: %d, want 404", code)
	}
	off := freeHTTPAddr(t)
	c.startWorker("off", "--http-addr", off, "--status-addr", "off")
	if code, _ := waitHTTP("http://" + off + "/status"); code != http.StatusNotFound {
		t.Errorf("/status turned off: %d, want 404", code)
	}
	if code, _ := waitHTTP("http://" + off + "/metrics"); code != http.StatusOK {
		t.Errorf("/metrics with /status off: %d", code)
	}
}
