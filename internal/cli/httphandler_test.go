package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/redistest"
)

// TestHTTPHandlers runs `fleet run --http-handler` against handler servers
// in other languages (testdata/httphandlers: Python with its standard
// library, Node with its own), with kfake and a real redis-server: effects
// applied once with the done-mark, a duplicate that never reaches the
// endpoint, the result kept for it, permanent and retryable answers with
// Retry-After, a timeout, a slow handler whose lease is kept alive, and
// effects off the format dead-lettered as invalid_effect.
func TestHTTPHandlers(t *testing.T) {
	for _, lang := range []struct {
		name string
		cmd  []string
	}{
		{"python", []string{"python3", "testdata/httphandlers/handler.py"}},
		{"node", []string{"node", "testdata/httphandlers/handler.js"}},
	} {
		t.Run(lang.name, func(t *testing.T) {
			if _, err := exec.LookPath(lang.cmd[0]); err != nil {
				t.Fatalf("%s is not on the PATH: install it (.ci/run does)", lang.cmd[0])
			}
			testHTTPHandler(t, lang.cmd)
		})
	}
}

func testHTTPHandler(t *testing.T, command []string) {
	endpoint := startHandlerServer(t, command)
	addrs := startBroker(t, "inventory", 2)
	brokers := strings.Join(addrs, ",")
	r := redistest.Start(t)
	rdb := r.Client(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpAddr := freeAddr(t)
	worker := startChild(t, exec.Command(binary, "run", "--brokers", brokers, "--topics", "inventory", "--group", "inv", "--redis", r.URL(),
		"--http-addr", httpAddr, "--http-handler", "inventory.*="+endpoint+"/events", "--http-handler-token-file", tokenFile,
		"--lease", "500ms", "--handler-timeout", "2s", "--retry-delays", "none", "--commit-interval", "100ms", "--log-format", "text"))
	eventually(t, 30*time.Second, "the worker ready", func() bool { code, _ := get(httpAddr, "/readyz"); return code == 200 })

	ev := warehouseEvent
	received := ev("r1", "inventory.received", "sku-1", `{"quantity":5}`)
	publishTo(t, addrs, "inventory", received, received,
		ev("r2", "inventory.received", "sku 1 é", `{"quantity":2}`),
		ev("nk1", "inventory.received", "", `{"quantity":3}`),
		ev("x1", "inventory.rejected", "sku-2", `{}`),
		ev("f1", "inventory.flaky", "sku-3", `{}`),
		ev("s1", "inventory.slow", "sku-4", `{}`),
		ev("t1", "inventory.stuck", "sku-5", `{}`),
		ev("b1", "inventory.broken", "sku-6", `{}`),
	)

	metric := func(name, labels string) int { return metricSum(httpAddr, name, labels) }
	finished := func(outcome string) int {
		return metric("fleet_consumer_events_finished_total", `outcome="`+outcome+`"`)
	}
	eventually(t, 45*time.Second, "every event finished", func() bool {
		return finished("processed") == 6 && finished("duplicate") == 1 && finished("dead_lettered") == 2
	})

	ctx := context.Background()
	if v := rdb.HGet(ctx, "inv:{sku-1}", "on_hand").Val(); v != "5" {
		t.Errorf("on_hand of sku-1: %q, want 5 (applied once)", v)
	}
	// Fleet-Key is the aggregate, percent-encoded: the key itself, or the
	// id of an event without one.
	for key, want := range map[string]string{"inv:{sku 1 é}": "2", "inv:{nk1}": "3"} {
		if v := rdb.HGet(ctx, key, "on_hand").Val(); v != want {
			t.Errorf("%s on_hand: %q, want %s", key, v, want)
		}
	}
	seen := rdb.HGetAll(ctx, "inv:{sku-1}:seen").Val()
	for field, want := range map[string]string{
		"idempotency-key": handlers.IdempotencyKey("inv", "warehouse", "r1"), "fleet-attempt": "1",
		"ce-source": "warehouse", "content-type": "application/json", "authorization": "Bearer s3cret",
	} {
		if seen[field] != want {
			t.Errorf("the handler saw %s %q, want %q", field, seen[field], want)
		}
	}
	if fence, err := strconv.Atoi(seen["fleet-fence"]); err != nil || fence < 1 {
		t.Errorf("fleet-fence %q", seen["fleet-fence"])
	}
	if n := handlerCount(t, endpoint, "r1"); n != 1 {
		t.Errorf("the endpoint saw r1 %d times: the duplicate reached it", n)
	}
	if out := fleetOut(t, false, "keys", "get", "--redis", r.URL(), "--group", "inv", "--source", "warehouse", "--id", "r1", "--key", "sku-1"); !strings.Contains(out, `"received 5"`) {
		t.Errorf("the record of r1 does not keep the handler's result for its duplicates:\n%s", out)
	}
	if gap, _ := strconv.Atoi(rdb.HGet(ctx, "inv:{sku-3}:flaky", "gap_ms").Val()); gap < 900 {
		t.Errorf("the retry after a 503 with Retry-After: 1 came %d ms later", gap)
	}
	if v := rdb.Get(ctx, "inv:{sku-4}:slow").Val(); v != "1" || metric("fleet_lease_lost_total", "") != 0 {
		t.Errorf("slow handler: %q applied, %d leases lost; want 1 and 0 (the lease is kept alive)", v, metric("fleet_lease_lost_total", ""))
	}
	if v := rdb.Get(ctx, "inv:{sku-5}:stuck").Val(); v != "1" || handlerCount(t, endpoint, "t1") != 2 ||
		metric("fleet_consumer_retries_total", `reason="timeout"`) < 1 {
		t.Errorf("stuck handler: %q applied, %d requests; want 1 applied after a timeout", v, handlerCount(t, endpoint, "t1"))
	}
	for id, wants := range map[string][]string{
		"x1": {"permanent", "422 Unprocessable Entity: no such sku"},
		"b1": {"invalid_effect", `op "FLUSHALL"`},
	} {
		dead := fleetOut(t, false, "dlq", "list", "--brokers", brokers, "--topic", "inventory", "--id", id, "--long")
		for _, want := range wants {
			if !strings.Contains(dead, want) {
				t.Errorf("dlq list --id %s lacks %q:\n%s", id, want, dead)
			}
		}
	}
	for code, least := range map[string]int{"2xx": 7, "4xx": 1, "5xx": 1, "error": 1} {
		if n := metric("fleet_http_handler_requests_total", `code="`+code+`"`); n < least {
			t.Errorf("fleet_http_handler_requests_total{code=%q} = %d, want at least %d", code, n, least)
		}
	}
	if strings.Contains(worker.out.String(), "s3cret") {
		t.Errorf("the credential is in the log")
	}
	// The endpoint metrics are lint-clean, as Prometheus reads them.
	_, body := get(httpAddr, "/metrics")
	check := exec.Command(promtool(t), "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if !strings.Contains(body, "fleet_http_handler_request_duration_seconds_bucket{endpoint=") || strings.Contains(body, "s3cret") {
		t.Errorf("/metrics lacks the endpoint histogram, or shows the credential")
	}
}

// startHandlerServer starts a handler server and returns its base URL, read
// from its first line ("listening on PORT").
func startHandlerServer(t *testing.T, command []string) string {
	t.Helper()
	cmd := exec.Command(command[0], command[1:]...) // #nosec G204 -- the test's own servers
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s := bufio.NewScanner(stdout)
		if s.Scan() {
			line <- s.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		port, ok := strings.CutPrefix(l, "listening on ")
		if !ok {
			t.Fatalf("%s said %q", command[1], l)
		}
		return "http://127.0.0.1:" + port
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not start within 20s", command[1])
	}
	return ""
}

// handlerCount asks a handler server how many requests event id made.
func handlerCount(t *testing.T, endpoint, id string) int {
	t.Helper()
	_, body := httpGet(t, fmt.Sprintf("%s/count?id=%s", endpoint, id))
	n, err := strconv.Atoi(strings.TrimSpace(body))
	if err != nil {
		t.Fatalf("count of %s: %q", id, body)
	}
	return n
}
