package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fleetworks/fleet/internal/redistest"
)

// exampleDir is the example module: a team's worker with a domain of its
// own, its own go.mod, and a replace to this repository.
const exampleDir = "../../examples/inventory"

// buildExample builds the example module's binary once, next to fleet's,
// after its own handler tests (which `go test ./...` here does not reach:
// they are another module's).
func buildExample(t *testing.T) string {
	t.Helper()
	example.once.Do(func() {
		bin := filepath.Join(filepath.Dir(binary), "inventory")
		for _, args := range [][]string{{"test", "./..."}, {"build", "-o", bin, "."}} {
			cmd := exec.Command("go", args...)
			cmd.Dir = exampleDir
			cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
			if out, err := cmd.CombinedOutput(); err != nil {
				example.err = fmt.Errorf("go %s in %s: %w\n%s\n(after a change to fleet's go.mod, run: cd examples/inventory && go mod tidy)",
					strings.Join(args, " "), exampleDir, err, out)
				return
			}
		}
		example.bin = bin
	})
	if example.err != nil {
		t.Fatal(example.err)
	}
	return example.bin
}

var example struct {
	once sync.Once
	bin  string
	err  error
}

// TestExampleModule runs the example module's binary end to end, against
// kfake and a real redis-server: its domain's events applied once, a
// duplicate skipped, an oversold reservation dead-lettered, fleet's flags,
// metrics and commands under the binary's own name.
func TestExampleModule(t *testing.T) {
	bin := buildExample(t)
	if out, err := exec.Command(bin, "version").Output(); err != nil || !strings.HasPrefix(string(out), "inventory (devel) (revision unknown") {
		t.Fatalf("version: %q, %v", out, err)
	}
	cl, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "inventory"), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	brokers := strings.Join(cl.ListenAddrs(), ",")
	r := redistest.Start(t)
	rdb := r.Client(t)
	httpAddr := freeAddr(t)

	var logs lockedBuffer
	worker := exec.Command(bin, "run", "--brokers", brokers, "--topics", "inventory", "--group", "inventory", "--redis", r.URL(),
		"--http-addr", httpAddr, "--commit-interval", "100ms", "--retry-delays", "none", "--log-format", "text")
	worker.Stdout, worker.Stderr = &logs, &logs
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = worker.Process.Kill()
		_ = worker.Wait()
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	eventually(t, 30*time.Second, "the worker ready", func() bool { code, _ := get(httpAddr, "/readyz"); return code == 200 })

	inv := func(id, typ, data string) kafka.Message {
		return kafka.Message{Key: []byte("sku-1"), Value: []byte(data), Headers: []kafka.Header{
			{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte(id)},
			{Key: "ce_source", Value: []byte("warehouse")}, {Key: "ce_type", Value: []byte(typ)},
			{Key: "content-type", Value: []byte("application/json")}}}
	}
	msgs := []kafka.Message{
		inv("in-1", "inventory.received", `{"sku":"sku-1","quantity":10}`),
		inv("res-a", "inventory.reserved", `{"sku":"sku-1","reservation":"a","quantity":4}`),
		inv("res-a", "inventory.reserved", `{"sku":"sku-1","reservation":"a","quantity":4}`),
		inv("res-big", "inventory.reserved", `{"sku":"sku-1","reservation":"big","quantity":100}`),
		inv("ship-a", "inventory.shipped", `{"sku":"sku-1","reservation":"a"}`),
	}
	w := &kafka.Writer{Addr: kafka.TCP(cl.ListenAddrs()...), Topic: "inventory", Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}

	finished := func(outcome string) string {
		_, body := get(httpAddr, "/metrics")
		m := regexp.MustCompile(`(?m)^fleet_consumer_events_finished_total\{outcome="`+outcome+`"[^}]*\} (\d+)`).FindAllStringSubmatch(body, -1)
		n := 0
		for _, x := range m {
			var v int
			fmt.Sscan(x[1], &v)
			n += v
		}
		return fmt.Sprint(n)
	}
	eventually(t, 30*time.Second, "every message finished", func() bool {
		return finished("processed") == "3" && finished("duplicate") == "1" && finished("dead_lettered") == "1"
	})
	stock := rdb.HGetAll(context.Background(), "inventory:{sku-1}").Val()
	if stock["on_hand"] != "6" || stock["reserved"] != "0" {
		t.Errorf("stock of sku-1: %v, want on_hand 6, reserved 0", stock)
	}
	if s := rdb.HGet(context.Background(), "inventory:{sku-1}:reservation:a", "status").Val(); s != "shipped" {
		t.Errorf("reservation a: %q, want shipped", s)
	}
	dead := exampleOut(t, bin, "dlq", "list", "--brokers", brokers, "--topic", "inventory")
	if !strings.Contains(dead, "permanent") || !strings.Contains(dead, "only 6 of sku-1 available") {
		t.Errorf("dlq list does not show the oversold reservation:\n%s", dead)
	}
}

// TestExampleDevWithoutStream: `dev` of a binary without a demo stream runs
// its domains on the embedded broker and Redis and says how to publish one
// of its own event types; SIGINT ends it with 0.
func TestExampleDevWithoutStream(t *testing.T) {
	bin := buildExample(t)
	cmd := exec.Command(bin, "dev", "--http-addr", "127.0.0.1:0", "--workers", "1")
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("output:\n%s", out.String())
		}
	})
	eventually(t, 60*time.Second, "still running", func() bool { return strings.Contains(out.String(), "still running") })
	text := out.String()
	for _, want := range []string{"topic inventory", "no demo stream", "inventory publish --brokers ", "--type inventory.received",
		`--data '{"sku":"sku-1","quantity":5}'`, "HGETALL 'inventory:{sku-1}'", "inventory dlq list", "write go run . instead"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20s after SIGINT")
	}
}

func exampleOut(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("inventory %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
