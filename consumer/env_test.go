package consumer_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/internal/redistest"
)

const topic = "payments"

// env is a real broker (kfake) and a real redis-server, both private to one
// test.
type env struct {
	t       *testing.T
	cluster *kfake.Cluster
	brokers []string
	redis   *redistest.Server
	rdb     *redis.Client
	writer  *kafka.Writer
	// transport carries the test's own Kafka requests; closed at the end.
	transport *kafka.Transport
}

func newEnv(t *testing.T, partitions int) *env {
	t.Helper()
	return newEnvWith(t, partitions, 1)
}

// newEnvWith is newEnv with a number of brokers and redis-server arguments.
func newEnvWith(t *testing.T, partitions, brokers int, redisArgs ...string) *env {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(brokers), kfake.SeedTopics(int32(partitions), topic), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	e := &env{t: t, cluster: c, brokers: c.ListenAddrs(), redis: redistest.Start(t, redisArgs...), transport: &kafka.Transport{}}
	t.Cleanup(e.transport.CloseIdleConnections)
	e.rdb = e.redis.Client(t)
	e.writer = &kafka.Writer{
		Addr:         kafka.TCP(e.brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond,
		BatchSize:    1000,
		Transport:    e.transport,
	}
	t.Cleanup(func() { e.writer.Close() })
	return e
}

// publish writes messages to the source topic and waits for their acks.
func (e *env) publish(msgs ...kafka.Message) {
	e.t.Helper()
	if err := e.writer.WriteMessages(context.Background(), msgs...); err != nil {
		e.t.Fatalf("publish: %v", err)
	}
}

// engine is one running engine with its metrics registry.
type engine struct {
	*consumer.Engine
	reg   *prometheus.Registry
	m     *consumer.Metrics
	store *dedupe.Redis
	stop  func()
	done  chan error
}

type options struct {
	group     string
	router    *handlers.Router
	configure func(*consumer.Config)
	lease     time.Duration
	// store, when set, is the client of the engine's store (the env's
	// client otherwise).
	store *redis.Client
	// minReplicas is the store's MinReplicas.
	minReplicas int
	// logs, when set, receives the engine's log as JSON lines, from Info.
	logs io.Writer
	// wrap, when set, wraps the engine's store (to delay or cut a call).
	wrap func(*dedupe.Redis) consumer.Store
}

// start runs an engine over the env's topic until the returned engine is
// stopped (or the test ends).
func (e *env) start(o options) *engine {
	e.t.Helper()
	if o.group == "" {
		o.group = "ledger"
	}
	if o.lease == 0 {
		o.lease = 5 * time.Second
	}
	cfg := consumer.DefaultConfig()
	cfg.Brokers = e.brokers
	cfg.Topics = []string{topic}
	cfg.Group = o.group
	cfg.Lease = o.lease
	cfg.SessionTimeout = 6 * time.Second
	cfg.HeartbeatInterval = 200 * time.Millisecond
	cfg.RebalanceTimeout = 6 * time.Second
	cfg.DrainTimeout = 3 * time.Second
	cfg.CommitInterval = 100 * time.Millisecond
	cfg.RetryBackoff = 5 * time.Millisecond
	cfg.MaxRetryBackoff = 50 * time.Millisecond
	cfg.MaxWait = 50 * time.Millisecond
	if o.configure != nil {
		o.configure(&cfg)
	}
	rdb := e.rdb
	if o.store != nil {
		rdb = o.store
	}
	store, err := dedupe.NewRedis(rdb, dedupe.Config{Lease: o.lease, Retention: time.Hour, MinReplicas: o.minReplicas, ReplicaTimeout: 200 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := store.Load(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	m := consumer.NewMetrics(reg)
	dlq := consumer.NewPublisher(e.brokers, nil)
	log := slog.New(slog.NewTextHandler(testWriter(e.t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	if o.logs != nil {
		log = slog.New(slog.NewJSONHandler(o.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	var engineStore consumer.Store = store
	if o.wrap != nil {
		engineStore = o.wrap(store)
	}
	eng, err := consumer.New(cfg, engineStore, o.router, dlq, log, m)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	en := &engine{Engine: eng, reg: reg, m: m, store: store, done: make(chan error, 1)}
	go func() { en.done <- eng.Run(ctx) }()
	var once sync.Once
	en.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-en.done; err != nil {
				e.t.Errorf("engine run: %v", err)
			}
			dlq.Close()
		})
	}
	e.t.Cleanup(en.stop)
	return en
}

// finished counts events finished with an outcome, or with any outcome.
func (en *engine) finished(outcome string) int {
	mfs, err := en.reg.Gather()
	if err != nil {
		panic(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "fleet_consumer_events_finished_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && (outcome == "" || l.GetValue() == outcome) {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return int(n)
}

// value sums the samples of a counter or gauge (0 when it has none).
func (en *engine) value(name string) float64 {
	mfs, _ := en.reg.Gather()
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return v
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// payment builds a binary-mode ledger event.
func payment(id, account, typ string, cents int64) kafka.Message {
	data, _ := json.Marshal(ledger.Payment{Account: account, AmountCents: cents})
	return kafka.Message{
		Key:   []byte(account),
		Value: data,
		Headers: []kafka.Header{
			{Key: "ce_specversion", Value: []byte("1.0")},
			{Key: "ce_id", Value: []byte(id)},
			{Key: "ce_source", Value: []byte("payments-api")},
			{Key: "ce_type", Value: []byte(typ)},
			{Key: "content-type", Value: []byte("application/json")},
		},
	}
}

// countingRouter is the ledger behind a wrapper that counts successful runs
// per event id and lets a test inject failures.
type countingRouter struct {
	mu     sync.Mutex
	runs   map[string]int // successful runs by event id
	calls  int
	before func(ctx context.Context, ev handlers.Event) error
}

func newCountingRouter(t *testing.T, before func(ctx context.Context, ev handlers.Event) error) (*handlers.Router, *countingRouter) {
	c := &countingRouter{runs: map[string]int{}, before: before}
	inner := handlers.NewRouter()
	if err := ledger.Register(inner, nil); err != nil {
		t.Fatal(err)
	}
	r := handlers.NewRouter()
	for _, typ := range inner.Types() {
		h, _ := inner.Lookup(typ)
		err := r.Register(typ, handlers.HandlerFunc(func(ctx context.Context, ev handlers.Event, tx *handlers.Tx) error {
			c.mu.Lock()
			c.calls++
			c.mu.Unlock()
			if c.before != nil {
				if err := c.before(ctx, ev); err != nil {
					return err
				}
			}
			if err := h.Handle(ctx, ev, tx); err != nil {
				return err
			}
			c.mu.Lock()
			c.runs[ev.ID]++
			c.mu.Unlock()
			return nil
		}))
		if err != nil {
			t.Fatal(err)
		}
	}
	return r, c
}

func (c *countingRouter) callCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// balances reads every account's balance from Redis.
func (e *env) balances(accounts []string) map[string]int64 {
	e.t.Helper()
	out := make(map[string]int64, len(accounts))
	for _, a := range accounts {
		v, err := e.rdb.Get(context.Background(), ledger.BalanceKey(a)).Int64()
		if err != nil && err != redis.Nil {
			e.t.Fatalf("balance of %s: %v", a, err)
		}
		out[a] = v
	}
	return out
}

// dlq reads n messages from the dead-letter topic.
func (e *env) dlq(n int) []kafka.Message {
	e.t.Helper()
	return e.read(consumer.DeadLetterTopic(topic), n)
}

// read reads a topic from its start to its end, partition by partition, and
// fails the test unless it holds n messages.
func (e *env) read(name string, n int) []kafka.Message {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []kafka.Message
	// A fresh transport: kafka-go answers Metadata from a cached view of the
	// cluster, which may predate the dead-letter topic.
	fresh := &kafka.Transport{}
	defer fresh.CloseIdleConnections()
	parts, err := (&kafka.Client{Addr: kafka.TCP(e.brokers...), Transport: fresh}).Metadata(ctx, &kafka.MetadataRequest{Topics: []string{name}})
	if err != nil || len(parts.Topics) != 1 || parts.Topics[0].Error != nil {
		e.t.Fatalf("%s metadata: %v %+v", name, err, parts)
	}
	for _, p := range parts.Topics[0].Partitions {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: name, Partition: p.ID, MaxWait: 50 * time.Millisecond})
		last, err := r.ReadLag(ctx)
		if err != nil {
			e.t.Fatalf("dlq lag: %v", err)
		}
		for i := int64(0); i < last; i++ {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				e.t.Fatalf("read dlq: %v", err)
			}
			out = append(out, m)
		}
		r.Close()
	}
	if len(out) != n {
		e.t.Fatalf("%s holds %d messages, want %d", name, len(out), n)
	}
	return out
}

func headerValue(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func testWriter(t *testing.T) io.Writer {
	if os.Getenv("FLEET_TEST_LOGS") != "" {
		return tWriter{t}
	}
	return io.Discard
}

// TestMain checks that no test leaves a goroutine of the engine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
