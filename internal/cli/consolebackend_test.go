package cli

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/console"
	"github.com/fleetworks/fleet/internal/demo"
)

// consoleOn is a console backend on the cluster's broker and Redis, for
// group ledger-e2e, with its members' /status at statusAddr's port.
func consoleOn(t *testing.T, c *cluster, statusAddr string, edit func(*consoleConfig)) *consoleBackend {
	t.Helper()
	target, err := parseRedis(redisStandalone, c.redis.URL())
	if err != nil {
		t.Fatal(err)
	}
	cfg := consoleConfig{Brokers: c.brokers, Redis: target, Group: "ledger-e2e", StatusPort: portOf(t, statusAddr)}
	if edit != nil {
		edit(&cfg)
	}
	b, err := newConsoleBackend(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	p, err := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConsoleDeadLetters dead-letters events with a fleet run worker and
// reads and replays them through the console's backend: filters narrow,
// pages come newest first with the total, one dead letter comes whole
// with its record, a dry run changes nothing, a replay republishes once
// and the next skips what is done, and a record forgotten is not found.
// The overview shows the member, its /status and its partitions, caught
// up, and then the lag of what it did not read, with its age.
func TestConsoleDeadLetters(t *testing.T) {
	c := newCluster(t, 2)
	ctx := context.Background()
	if err := c.rdb.Set(ctx, ledger.BalanceKey("acct-bad"), "corrupt", 0).Err(); err != nil {
		t.Fatal(err)
	}
	c.publish([]kafka.Message{
		demo.Event("bad-1", "acct-bad", ledger.TypeCaptured, `{"account":"acct-bad","amount_cents":100}`),
		demo.Event("bad-2", "acct-bad", ledger.TypeCaptured, `{"account":"acct-bad","amount_cents":20}`),
		demo.Event("bad-3", "acct-bad", ledger.TypeCaptured, `{"account":"acct-bad","amount_cents":3}`),
		demo.Event("odd-1", "acct-odd", "payment.mystery", `{}`),
		demo.Event("good-1", "acct-good", ledger.TypeCaptured, `{"account":"acct-good","amount_cents":50}`),
	})
	addr := freeAddr(t)
	w := c.startWorker("a", "--retry-delays", "none", "--http-addr", addr)
	c.waitCommitted(2, int64(c.sent), 60*time.Second)
	b := consoleOn(t, c, addr, nil)

	// The overview: one member, answering its /status, owning both
	// partitions, caught up; the four dead letters, newest first.
	o, err := b.Overview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Members) != 1 || o.Members[0].Status == nil || !o.Members[0].Status.Joined || o.Members[0].StatusURL != "http://"+addr+"/status" ||
		!slices.Equal(o.Members[0].Assigned, []string{"payments.parked/0", "payments.parked/1", "payments/0", "payments/1"}) {
		t.Fatalf("members: %+v", o.Members)
	}
	if len(o.Problems) != 0 {
		t.Errorf("problems: %q", o.Problems)
	}
	// The source and its parked topic (empty: nothing committed there).
	var hwm int64
	var topics []string
	for _, p := range o.Partitions {
		topics = append(topics, p.Topic)
		if p.Lag != 0 || p.Member != o.Members[0].ID || p.LagSeconds != 0 || p.Topic == e2eTopic && max(p.Committed, 0) != p.HighWaterMark {
			t.Errorf("partition caught up: %+v", p)
		}
		if p.Topic == e2eTopic {
			hwm += p.HighWaterMark
		}
	}
	if !slices.Equal(topics, []string{e2eTopic, e2eTopic, "payments.parked", "payments.parked"}) || hwm != int64(c.sent) {
		t.Errorf("partitions %+v: want payments' and payments.parked's, %d messages in all", o.Partitions, c.sent)
	}
	if ids := letterIDs(o.LastFailures); len(ids) != 4 || !newestFirstOrder(o.LastFailures) {
		t.Errorf("last failures %v: want the 4 dead letters, newest first", ids)
	}

	// Filters narrow; pages are newest first and count them all.
	list := func(f console.Filter) ([]console.DeadLetter, int) {
		t.Helper()
		ls, total, err := b.DeadLetters(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return ls, total
	}
	all, total := list(console.Filter{})
	if total != 4 || len(all) != 4 || !newestFirstOrder(all) {
		t.Fatalf("all dead letters: %d of %d %v", len(all), total, letterIDs(all))
	}
	for _, tt := range []struct {
		f    console.Filter
		want []string
	}{
		{console.Filter{Key: "acct-bad"}, []string{"bad-1", "bad-2", "bad-3"}},
		{console.Filter{Reason: consumer.ReasonUnknownType}, []string{"odd-1"}},
		{console.Filter{Type: "payment.mystery"}, []string{"odd-1"}},
		{console.Filter{ID: "bad-2", Source: demo.Source}, []string{"bad-2"}},
		{console.Filter{Group: "another"}, nil},
		{console.Filter{Until: all[len(all)-1].Written}, nil},
	} {
		ls, n := list(tt.f)
		if got := letterIDs(ls); n != len(tt.want) || !sameSet(got, tt.want) {
			t.Errorf("filter %+v: %v (total %d), want %v", tt.f, got, n, tt.want)
		}
	}
	first, n1 := list(console.Filter{Limit: 3})
	rest, n2 := list(console.Filter{Skip: 3, Limit: 3})
	if n1 != 4 || n2 != 4 || len(first) != 3 || len(rest) != 1 || !slices.Equal(letterIDs(append(first, rest...)), letterIDs(all)) {
		t.Errorf("pages %v + %v (totals %d, %d), want %v", letterIDs(first), letterIDs(rest), n1, n2, letterIDs(all))
	}

	// One dead letter whole, with its record; none where there is none.
	var ref2 console.LetterRef
	for _, d := range all {
		if d.ID == "bad-2" {
			ref2 = d.Ref
		}
	}
	d2, err := b.DeadLetter(ctx, ref2)
	if err != nil {
		t.Fatal(err)
	}
	if d2.ID != "bad-2" || d2.Reason != consumer.ReasonInvalidEffect || d2.Group != "ledger-e2e" || string(d2.Value) != `{"account":"acct-bad","amount_cents":20}` ||
		!hasHeader(d2.Headers, consumer.HeaderErrorKind, consumer.ReasonInvalidEffect) || d2.Record == nil || d2.Record.State == dedupe.StateDone ||
		d2.RecordRef == nil || *d2.RecordRef != (console.RecordRef{Group: "ledger-e2e", Key: "acct-bad", Source: demo.Source, ID: "bad-2"}) {
		t.Fatalf("dead letter bad-2: %+v (record %+v)", d2, d2.Record)
	}
	for _, ref := range []console.LetterRef{
		{Topic: ref2.Topic, Partition: ref2.Partition, Offset: 999},
		{Topic: e2eTopic, Partition: 0, Offset: 0}, // not a dead-letter topic
		{Topic: "elsewhere.dlq", Partition: 0, Offset: 0},
	} {
		if _, err := b.DeadLetter(ctx, ref); !errors.Is(err, console.ErrNotFound) {
			t.Errorf("dead letter at %+v: %v, want not found", ref, err)
		}
	}

	// The fix; a dry run changes nothing.
	if err := c.rdb.Del(ctx, ledger.BalanceKey("acct-bad")).Err(); err != nil {
		t.Fatal(err)
	}
	bad := console.Selection{Filter: console.Filter{Key: "acct-bad"}}
	dry, err := b.Replay(ctx, bad, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !dry.DryRun || dry.Replayed != 3 || len(dry.Verdicts) != 3 || !strings.HasPrefix(dry.Summary, "would replay 3 of 3 dead letters") {
		t.Errorf("dry run: %+v", dry)
	}
	if n := replayedIn(t, c); n != 0 {
		t.Fatalf("a dry run republished %d events", n)
	}
	if rec, err := b.Record(ctx, *d2.RecordRef); err != nil || rec.State != d2.Record.State || rec.Attempts != d2.Record.Attempts || rec.Fence != d2.Record.Fence {
		t.Errorf("record after a dry run: %+v, %v; want it unchanged, %+v", rec, err, *d2.Record)
	}

	// One dead letter replayed, then the rest; again, nothing.
	var ref1 console.LetterRef
	for _, d := range all {
		if d.ID == "bad-1" {
			ref1 = d.Ref
		}
	}
	var progress [][2]int
	one, err := b.Replay(ctx, console.Selection{Ref: &ref1}, false, func(done, total int) { progress = append(progress, [2]int{done, total}) })
	if err != nil {
		t.Fatal(err)
	}
	if one.Replayed != 1 || len(one.Verdicts) != 1 || !one.Verdicts[0].Replay || one.Verdicts[0].ID != "bad-1" || one.Verdicts[0].To != e2eTopic ||
		!slices.Equal(progress, [][2]int{{1, 1}}) {
		t.Fatalf("replay of bad-1: %+v, progress %v", one, progress)
	}
	c.sent++
	c.waitCommitted(2, int64(c.sent), 60*time.Second)
	c.checkBalances(map[string]int64{"acct-bad": 100})
	rest3, err := b.Replay(ctx, bad, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rest3.Replayed != 2 || verdictOf(rest3, "bad-1") != replayDone || verdictOf(rest3, "bad-2") != replayPublish {
		t.Fatalf("replay of acct-bad: %+v", rest3)
	}
	c.sent += 2
	c.waitCommitted(2, int64(c.sent), 60*time.Second)
	c.checkBalances(map[string]int64{"acct-bad": 123, "acct-good": 50})
	again, err := b.Replay(ctx, bad, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Replayed != 0 || !strings.HasPrefix(again.Summary, "replayed 0 of 3 dead letters; skipped 3 already done") {
		t.Errorf("second replay: %+v", again)
	}
	if n := replayedIn(t, c); n != 3 {
		t.Errorf("%d events republished, want 3: each once", n)
	}

	// The record: done, forgotten, gone.
	if rec, err := b.Record(ctx, *d2.RecordRef); err != nil || rec.State != dedupe.StateDone {
		t.Errorf("record of bad-2 after its replay: %+v, %v", rec, err)
	}
	if ok, err := b.Forget(ctx, *d2.RecordRef); !ok || err != nil {
		t.Fatalf("forget: %v, %v", ok, err)
	}
	if _, err := b.Record(ctx, *d2.RecordRef); !errors.Is(err, console.ErrNotFound) {
		t.Errorf("record after forget: %v, want not found", err)
	}
	if ok, err := b.Forget(ctx, *d2.RecordRef); ok || err != nil {
		t.Errorf("forget again: %v, %v; want false", ok, err)
	}
	if _, err := b.Record(ctx, console.RecordRef{Group: "ledger-e2e", Source: demo.Source}); err == nil || !strings.Contains(err.Error(), "give id") {
		t.Errorf("record without an id: %v", err)
	}

	// The worker gone, three events unread: the lag, and its age by the
	// backend's clock.
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-w.exited
	sentAt := time.Now()
	c.publish([]kafka.Message{
		demo.Event("late-1", "acct-l1", ledger.TypeCaptured, `{"account":"acct-l1","amount_cents":1}`),
		demo.Event("late-2", "acct-l2", ledger.TypeCaptured, `{"account":"acct-l2","amount_cents":1}`),
		demo.Event("late-3", "acct-l3", ledger.TypeCaptured, `{"account":"acct-l3","amount_cents":1}`),
	})
	later := consoleOn(t, c, addr, func(cfg *consoleConfig) { cfg.Now = func() time.Time { return sentAt.Add(time.Hour) } })
	o, err = later.Overview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lag int64
	for _, p := range o.Partitions {
		lag += p.Lag
		if p.Topic == e2eTopic && max(p.Committed, 0)+p.Lag != p.HighWaterMark || (p.Lag > 0) != (p.LagSeconds > 3590 && p.LagSeconds < 3610) {
			t.Errorf("partition %d: committed %d (-1: none) + lag %d != high-water mark %d, or lag of %v s", p.Partition, p.Committed, p.Lag, p.HighWaterMark, p.LagSeconds)
		}
	}
	if lag != 3 {
		t.Errorf("lag %d, want the 3 unread events: %+v", lag, o.Partitions)
	}
}

// TestConsoleHeldKeys runs a worker that holds a key after its dead
// letter and sends an event that its HTTP handler refuses for now to a
// retry tier an hour away: the overview shows the held key, the tier and
// when its first event is due; Unblock lets the key go once. A /status
// that does not answer, and a Redis that does not, are problems or errors
// that name no secret.
func TestConsoleHeldKeys(t *testing.T) {
	c := newCluster(t, 2)
	ctx := context.Background()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	addr := freeAddr(t)
	c.startWorker("b", "--http-addr", addr, "--on-dead-letter", "hold", "--retry-delays", "1h", "--in-place-attempts", "1",
		"--http-handler", "flaky.*="+down.URL)
	c.publish([]kafka.Message{
		demo.Event("hold-bad", "acct-h", ledger.TypeCaptured, `{"account":"acct-h","amount_cents":-5}`),
		demo.Event("hold-good", "acct-h", ledger.TypeCaptured, `{"account":"acct-h","amount_cents":700}`),
		demo.Event("flaky-1", "sku-f", "flaky.thing", `{}`),
	})
	b := consoleOn(t, c, addr, nil)
	var o console.Overview
	eventually(t, 60*time.Second, "acct-h held and flaky-1 waiting in a retry tier", func() bool {
		var err error
		if o, err = b.Overview(ctx); err != nil {
			t.Fatal(err)
		}
		held := slices.ContainsFunc(o.HeldKeys, func(k console.HeldKey) bool { return k.Key == "acct-h" && k.State == "held" && k.Queued == 1 })
		return held && len(o.Tiers) == 1
	})
	tier := o.Tiers[0]
	if due := time.Until(tier.NextDue); tier.Topic != consumer.RetryTopic(e2eTopic, 1) || tier.Waiting != 1 || due < 50*time.Minute || due > 70*time.Minute {
		t.Errorf("tier: %+v, due in %v; want 1 waiting in %s, due in an hour", tier, due, consumer.RetryTopic(e2eTopic, 1))
	}
	var tierParts int
	for _, p := range o.Partitions {
		if p.Topic == tier.Topic {
			tierParts++
		}
	}
	if tierParts != 2 || len(o.Members) != 1 || o.Members[0].Status == nil {
		t.Errorf("want the retry tier's 2 partitions and the member with its status: %+v %+v", o.Partitions, o.Members)
	}

	said, err := b.Unblock(ctx, "acct-h")
	if err != nil || !strings.Contains(said, "unblocked acct-h") || !strings.Contains(said, consumer.ParkedTopic(e2eTopic)) {
		t.Fatalf("unblock: %q, %v", said, err)
	}
	eventually(t, 60*time.Second, "the payment parked behind acct-h's head run", func() bool {
		return c.rdb.Get(ctx, ledger.BalanceKey("acct-h")).Val() == "700"
	})
	if _, err := b.Unblock(ctx, "acct-h"); err == nil || !strings.Contains(err.Error(), "not held") {
		t.Errorf("unblock again: %v, want not held", err)
	}

	// A /status that does not answer is a problem, not a failure.
	asked := consoleOn(t, c, addr, func(cfg *consoleConfig) { cfg.StatusURLs = []string{"http://ops:s3cret@127.0.0.1:1/status"} })
	o, err = asked.Overview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	problems := strings.Join(o.Problems, "\n")
	if !strings.Contains(problems, "127.0.0.1:1/status did not answer") || !strings.Contains(problems, "names member") || strings.Contains(problems, "s3cret") ||
		len(o.Members) != 1 || o.Members[0].Status != nil {
		t.Errorf("problems %q, members %+v", o.Problems, o.Members)
	}

	// A Redis that does not answer: errors that name its address, never
	// its password.
	target, err := parseRedis(redisStandalone, "redis://:hunter2@127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	noRedis := consoleOn(t, c, addr, func(cfg *consoleConfig) { cfg.Redis = target })
	_, rerr := noRedis.Record(ctx, console.RecordRef{Source: demo.Source, ID: "x"})
	o, err = noRedis.Overview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range append(o.Problems, errString(rerr)) {
		if strings.Contains(msg, "hunter2") {
			t.Errorf("a message holds the password: %q", msg)
		}
	}
	if rerr == nil || !strings.Contains(rerr.Error(), "redis at 127.0.0.1:1") || !strings.Contains(strings.Join(o.Problems, "\n"), "held keys: redis at 127.0.0.1:1") {
		t.Errorf("record: %v; problems %q", rerr, o.Problems)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func letterIDs(ls []console.DeadLetter) []string {
	var out []string
	for _, d := range ls {
		out = append(out, d.ID)
	}
	return out
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// newestFirstOrder reports whether ls are newest first: by the time they
// were written, then by offset.
func newestFirstOrder(ls []console.DeadLetter) bool {
	for i := 1; i < len(ls); i++ {
		a, b := ls[i-1], ls[i]
		if a.Written.Before(b.Written) || a.Written.Equal(b.Written) && a.Ref.Offset < b.Ref.Offset {
			return false
		}
	}
	return true
}

func hasHeader(hs []console.Header, key, value string) bool {
	return slices.ContainsFunc(hs, func(h console.Header) bool { return h.Key == key && string(h.Value) == value })
}

func verdictOf(r console.ReplayReport, id string) string {
	for _, v := range r.Verdicts {
		if v.ID == id {
			return v.Verdict
		}
	}
	return ""
}

// replayedIn counts the republished events in the source topic.
func replayedIn(t *testing.T, c *cluster) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	if err := readTopic(ctx, c.brokers, nil, e2eTopic, func(m kafka.Message) error {
		if demo.Header(m, "fleet-replayed-from") != "" {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}
