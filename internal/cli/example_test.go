package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

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
	addrs := startBroker(t, "inventory", 3)
	brokers := strings.Join(addrs, ",")
	r := redistest.Start(t)
	rdb := r.Client(t)
	httpAddr := freeAddr(t)
	startChild(t, exec.Command(bin, "run", "--brokers", brokers, "--topics", "inventory", "--group", "inventory", "--redis", r.URL(),
		"--http-addr", httpAddr, "--commit-interval", "100ms", "--retry-delays", "none", "--log-format", "text"))
	eventually(t, 30*time.Second, "the worker ready", func() bool { code, _ := get(httpAddr, "/readyz"); return code == 200 })

	inv := func(id, typ, data string) kafka.Message { return warehouseEvent(id, typ, "sku-1", data) }
	publishTo(t, addrs, "inventory",
		inv("in-1", "inventory.received", `{"sku":"sku-1","quantity":10}`),
		inv("res-a", "inventory.reserved", `{"sku":"sku-1","reservation":"a","quantity":4}`),
		inv("res-a", "inventory.reserved", `{"sku":"sku-1","reservation":"a","quantity":4}`),
		inv("res-big", "inventory.reserved", `{"sku":"sku-1","reservation":"big","quantity":100}`),
		inv("ship-a", "inventory.shipped", `{"sku":"sku-1","reservation":"a"}`),
	)
	finished := func(outcome string) string {
		return strconv.Itoa(metricSum(httpAddr, "fleet_consumer_events_finished_total", `outcome="`+outcome+`"`))
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
	dev := startChild(t, exec.Command(bin, "dev", "--http-addr", "127.0.0.1:0", "--workers", "1"))
	eventually(t, 60*time.Second, "still running", func() bool { return strings.Contains(dev.out.String(), "still running") })
	text := dev.out.String()
	for _, want := range []string{"topic inventory", "no demo stream", "inventory publish --brokers ", "--type inventory.received",
		`--data '{"sku":"sku-1","quantity":5}'`, "HGETALL 'inventory:{sku-1}'", "inventory dlq list", "write go run . instead"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	dev.interrupt(t)
}

func exampleOut(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("inventory %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
