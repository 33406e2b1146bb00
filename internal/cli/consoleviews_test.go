package cli

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/internal/console"
	"github.com/fleetworks/fleet/internal/demo"
	"github.com/segmentio/kafka-go"
)

func TestConsolePage(t *testing.T) {
	tests := []struct {
		n, skip, limit int
		lo, hi         int
	}{
		{10, 0, 0, 0, 10},
		{10, 0, 3, 0, 3},
		{10, 3, 3, 3, 6},
		{10, 9, 3, 9, 10},
		{10, 12, 3, 10, 10},
		{10, -1, 3, 0, 3},
		{0, 0, 5, 0, 0},
	}
	for _, tt := range tests {
		if lo, hi := page(tt.n, tt.skip, tt.limit); lo != tt.lo || hi != tt.hi {
			t.Errorf("page(%d, skip %d, limit %d) = [%d, %d), want [%d, %d)", tt.n, tt.skip, tt.limit, lo, hi, tt.lo, tt.hi)
		}
	}
}

func TestConsolePartitionLag(t *testing.T) {
	tests := []struct {
		name                   string
		committed, first, hwm  int64
		wantStart, wantLagMsgs int64
	}{
		{"caught up", 7, 0, 7, 7, 0},
		{"behind", 4, 0, 7, 4, 3},
		{"nothing committed", -1, 0, 5, 0, 5},
		{"nothing committed, start trimmed", -1, 3, 5, 3, 2},
		{"committed before the start (retention)", 1, 3, 5, 3, 2},
		{"empty", -1, 0, 0, 0, 0},
	}
	for _, tt := range tests {
		if start, lag := partitionLag(tt.committed, tt.first, tt.hwm); start != tt.wantStart || lag != tt.wantLagMsgs {
			t.Errorf("%s: start %d, lag %d; want %d, %d", tt.name, start, lag, tt.wantStart, tt.wantLagMsgs)
		}
	}
}

func TestConsoleSourceTopics(t *testing.T) {
	tests := []struct {
		topic, source string
		ok            bool
	}{
		{"payments", "payments", true},
		{"payments.retry.1", "payments", true},
		{"payments.retry.12", "payments", true},
		{"payments.retry.0", "payments.retry.0", true},
		{"payments.retry.01", "payments.retry.01", true},
		{"payments.parked", "payments", true},
		{"payments.dlq", "", false},
		{".parked", ".parked", true},
		{"", "", false},
	}
	for _, tt := range tests {
		if s, ok := sourceOf(tt.topic); s != tt.source || ok != tt.ok {
			t.Errorf("sourceOf(%q) = %q, %v; want %q, %v", tt.topic, s, ok, tt.source, tt.ok)
		}
	}
	got := sourceTopics([]string{"b.retry.2", "a", "a.dlq", "b.parked", "a.retry.1"})
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("sourceTopics: %v", got)
	}
	if isSourceTopic("a.retry.1") || isSourceTopic("a.dlq") || !isSourceTopic("a") {
		t.Error("isSourceTopic")
	}
}

func TestConsoleConsumedTopics(t *testing.T) {
	exist := map[string]int{"a": 2, "a.retry.10": 2, "a.retry.2": 2, "a.parked": 2, "a.dlq": 2, "b.retry.1": 1, "ab.retry.1": 1}
	got := consumedTopics([]string{"a", "b"}, exist)
	want := []string{"a", "a.retry.2", "a.retry.10", "a.parked", "b.retry.1"}
	if !slices.Equal(got, want) {
		t.Errorf("consumedTopics: %v, want %v", got, want)
	}
}

func TestConsoleMemberHost(t *testing.T) {
	for in, want := range map[string]string{
		"/10.0.0.7":          "10.0.0.7",
		"10.0.0.7:51234":     "10.0.0.7",
		"[::1]:51234":        "::1",
		"/::1":               "::1",
		"worker-3.cluster":   "worker-3.cluster",
		"/worker-3.svc:9000": "worker-3.svc",
	} {
		if got := memberHost(in); got != want {
			t.Errorf("memberHost(%q) = %q, want %q", in, got, want)
		}
	}
	if got := statusURL("::1", 8080); got != "http://[::1]:8080/status" {
		t.Errorf("statusURL: %s", got)
	}
	if got := redactURL("http://ops:s3cret@host:8080/status"); got != "http://ops:xxxxx@host:8080/status" {
		t.Errorf("redactURL: %s", got)
	}
}

func TestConsoleTierWaits(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	read := func(topic string, p int, lag int64, due time.Time) partitionRead {
		return partitionRead{PartitionLag: console.PartitionLag{Topic: topic, Partition: p, Lag: lag}, due: due}
	}
	got := tierWaits([]partitionRead{
		read("a", 0, 5, time.Time{}),
		read("a.retry.1", 0, 2, t0.Add(time.Minute)),
		read("a.retry.1", 1, 1, t0),
		read("a.retry.1", 2, 0, time.Time{}),
		read("a.retry.2", 0, 0, time.Time{}),
		read("a.retry.3", 0, 4, time.Time{}),
		read("a.parked", 0, 3, time.Time{}),
	})
	want := []console.TierWait{{Topic: "a.retry.1", Waiting: 3, NextDue: t0}, {Topic: "a.retry.3", Waiting: 4}}
	if !slices.Equal(got, want) {
		t.Errorf("tierWaits: %+v, want %+v", got, want)
	}
}

func TestConsoleHeldGates(t *testing.T) {
	gate := func(group, topic string, p int, key string, s dedupe.GateState) dedupe.GateInfo {
		return dedupe.GateInfo{Ref: dedupe.GateRef{Group: group, Topic: topic, Partition: p, Key: key}, State: s}
	}
	gates := []dedupe.GateInfo{
		gate("g", "t", 0, "k", dedupe.GateHeld),
		gate("g", "u", 1, "k", dedupe.GateHeld),
		gate("h", "t", 0, "k", dedupe.GateHeld),
		gate("g", "t", 0, "other", dedupe.GateHeld),
		gate("g", "t", 2, "k", dedupe.GateParked),
	}
	tests := []struct {
		name  string
		scope dedupe.GateRef
		want  int
	}{
		{"any group, topic, partition", dedupe.GateRef{Key: "k", Partition: -1}, 3},
		{"one group", dedupe.GateRef{Key: "k", Group: "g", Partition: -1}, 2},
		{"one topic", dedupe.GateRef{Key: "k", Group: "g", Topic: "t", Partition: -1}, 1},
		{"one partition", dedupe.GateRef{Key: "k", Partition: 1}, 1},
		{"parked is not held", dedupe.GateRef{Key: "k", Partition: 2}, 0},
		{"not gated", dedupe.GateRef{Key: "none", Partition: -1}, 0},
	}
	for _, tt := range tests {
		if got := heldGates(gates, tt.scope); len(got) != tt.want {
			t.Errorf("%s: %d held, want %d: %+v", tt.name, len(got), tt.want, got)
		}
	}
}

func TestConsoleConfig(t *testing.T) {
	target, err := parseRedis(redisStandalone, "redis://:pw@127.0.0.1:6379/0")
	if err != nil {
		t.Fatal(err)
	}
	ok := consoleConfig{Brokers: []string{"k:9092"}, Redis: target, Group: "g"}.withDefaults()
	if err := ok.Validate(); err != nil || ok.StatusPort != 8080 || ok.StatusTimeout != 2*time.Second || ok.Now == nil {
		t.Errorf("defaults: %+v, %v", ok, err)
	}
	bad := consoleConfig{Topics: []string{"p.dlq"}, StatusPort: 70000}
	err = bad.Validate()
	for _, want := range []string{"brokers", "group", "redis", "p.dlq", "status port"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate of %+v: %v, want it to name %s", bad, err, want)
		}
	}
}

// TestLightenKeepsWhatAListShows: a dead letter read for a list keeps no
// value, headers or data, and lists as it did whole.
func TestLightenKeepsWhatAListShows(t *testing.T) {
	m := demo.Event("e-1", "acct-1", "payment.captured", `{"account":"acct-1","amount_cents":5}`)
	m.Topic, m.Partition, m.Offset, m.Time = "payments.dlq", 1, 7, time.Unix(1700000000, 0)
	m.Headers = append(m.Headers, kafka.Header{Key: consumer.HeaderErrorKind, Value: []byte("permanent")},
		kafka.Header{Key: consumer.HeaderErrorMessage, Value: []byte(strings.Repeat("x", 100))})
	b := &consoleBackend{cfg: consoleConfig{Group: "ledger"}}
	d := newDeadLetter(m)
	whole := b.letterView(&d)
	d.lighten()
	if d.Msg.Value != nil || d.Msg.Headers != nil || d.Event.Data != nil {
		t.Fatalf("lightened dead letter still holds its value, headers or data: %+v", d)
	}
	if light := b.letterView(&d); !reflect.DeepEqual(light, whole) {
		t.Fatalf("listed lightened:\n%+v\nwhole:\n%+v", light, whole)
	}
}
