package cli

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

var filesDir = filepath.Join("..", "..", "charts", "fleet", "files")

// TestAlertRules checks the shipped alert rules with promtool (syntax and
// the unit tests of alerts_test.yaml), and that every alert has a runbook
// section that its runbook_url points to, and every section an alert.
func TestAlertRules(t *testing.T) {
	tool := promtool(t)
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}} {
		cmd := exec.Command(tool, args...)
		cmd.Dir = filesDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	rules, err := os.ReadFile(filepath.Join(filesDir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	runbook, err := os.ReadFile(filepath.Join("..", "..", "docs", "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\w+)$`).FindAllStringSubmatch(string(rules), -1)
	urls := regexp.MustCompile(`runbook_url: https://github.com/fleetworks/fleet/blob/main/docs/runbook.md#(\w+)`).FindAllStringSubmatch(string(rules), -1)
	sections := regexp.MustCompile(`(?m)^## (\w+)$`).FindAllStringSubmatch(string(runbook), -1)
	if len(alerts) < 8 || len(urls) != len(alerts) {
		t.Fatalf("%d alerts, %d runbook URLs: every alert needs one", len(alerts), len(urls))
	}
	var names, anchors []string
	for i, a := range alerts {
		names = append(names, a[1])
		if urls[i][1] != strings.ToLower(a[1]) {
			t.Errorf("alert %s points to #%s", a[1], urls[i][1])
		}
	}
	for _, s := range sections {
		anchors = append(anchors, s[1])
	}
	slices.Sort(names)
	slices.Sort(anchors)
	if !slices.Equal(names, anchors) {
		t.Errorf("alerts %v, runbook sections %v: one section per alert", names, anchors)
	}
	checkMetricNames(t, "alerts.yaml", string(rules))
}

// TestDashboard checks that the Grafana dashboard is valid JSON, that every
// panel queries something, and that it uses only metrics fleet exposes.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(filesDir, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr     string `json:"expr"`
				Exemplar bool   `json:"exemplar"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) < 8 {
		t.Fatalf("dashboard %q (%q) with %d panels", d.Title, d.UID, len(d.Panels))
	}
	var exprs []string
	exemplars := map[string]bool{} // histogram → a p99 query asks for its exemplars
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
			for _, h := range []string{"fleet_consumer_event_latency_seconds", "fleet_handler_duration_seconds"} {
				if q.Exemplar && strings.HasPrefix(q.Expr, "histogram_quantile(0.99") && strings.Contains(q.Expr, h) {
					exemplars[h] = true
				}
			}
		}
	}
	if len(exemplars) != 2 {
		t.Errorf("exemplars (the traces of slow events) shown for %v, want the event latency and the handler duration", exemplars)
	}
	for _, v := range d.Templating.List {
		exprs = append(exprs, v.Definition)
	}
	checkMetricNames(t, "dashboard.json", strings.Join(exprs, "\n"))
	for _, want := range []string{"fleet_consumer_events_finished_total", "fleet_consumer_event_latency_seconds_bucket",
		"fleet_consumer_lag_offsets", "fleet_consumer_dead_letters_total", "fleet_store_duration_seconds_bucket",
		"fleet_store_errors_total", "fleet_consumer_rebalances_total", "fleet_consumer_in_flight_events"} {
		if !strings.Contains(strings.Join(exprs, "\n"), want) {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}

// checkMetricNames fails the test for every metric name in text that no
// collector of a fleet process describes.
func checkMetricNames(t *testing.T, what, text string) {
	t.Helper()
	known := exposedMetrics(t)
	used := regexp.MustCompile(`\b(?:fleet|go|process)_[a-z0-9_]+\b`).FindAllString(text, -1)
	if len(used) == 0 {
		t.Fatalf("%s uses no fleet metric", what)
	}
	for _, name := range used {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suffix); ok && known[b] {
				base = b
			}
		}
		if !known[base] {
			t.Errorf("%s uses %s, which fleet does not expose", what, name)
		}
	}
}

// exposedMetrics names every metric a fleet process describes, series or
// not yet: the process metrics, the engine's, and fleet_ready.
func exposedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	rec := descNames{}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	registerProcessMetrics(rec, rdb, &fleetApp)
	rec.MustRegister(readyGauge(func() error { return nil }))
	cfg := consumer.DefaultConfig()
	cfg.Brokers, cfg.Topics, cfg.Group = []string{"127.0.0.1:1"}, []string{"t"}, "g"
	pub := consumer.NewPublisher(cfg.Brokers, nil)
	defer pub.Close()
	if _, err := consumer.New(cfg, dedupe.NewMemory(dedupe.DefaultConfig(), nil), handlers.NewRouter(), pub,
		slog.New(slog.NewTextHandler(io.Discard, nil)), consumer.NewMetrics(rec)); err != nil {
		t.Fatal(err)
	}
	if !rec["fleet_consumer_lag_seconds"] || !rec["go_goroutines"] {
		t.Fatalf("descriptor names incomplete: %v", rec)
	}
	return rec
}

// descNames is a Registerer that records the names its collectors describe.
type descNames map[string]bool

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (n descNames) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			n[m[1]] = true
		}
	}
	return nil
}

func (n descNames) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = n.Register(c)
	}
}

func (n descNames) Unregister(prometheus.Collector) bool { return false }
