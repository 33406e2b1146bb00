package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// devCmd is `fleet dev`: an embedded broker (kfake) and, unless --redis names
// one, an embedded Redis (miniredis); the binary's demo stream, with
// duplicates and poison messages (fleet's own: ledger events); the engine,
// wired as `fleet run` wires it; and a summary that checks the dead letters
// and the demo's projections. A binary without a demo stays up and says how
// to publish.
type devCmd struct {
	Redis       string        `env:"FLEET_REDIS_URL" help:"Use this Redis instead of the embedded one (a redis:// or rediss:// URL)."`
	HTTPAddr    string        `name:"http-addr" env:"FLEET_HTTP_ADDR" default:"127.0.0.1:8080" help:"Address serving /metrics, /healthz, /readyz and /status (the default moves to a free port when taken)."`
	Topic       string        `default:"${dev_topic}" help:"Topic of the demo stream."`
	Partitions  int           `default:"6" help:"Partitions of the demo topic."`
	Events      int           `default:"2000" help:"Unique events of the demo stream to publish."`
	Accounts    int           `default:"50" help:"Accounts (message keys) the demo events spread over."`
	Duplicates  float64       `default:"0.2" help:"Share of events published twice with the same id and payload."`
	Timeout     time.Duration `default:"1m" help:"Give up when the stream is not finished after this long."`
	Workers     int           `default:"3" help:"Workers run in this process, members of one consumer group (1 to 16)."`
	KeepRunning bool          `help:"After the verified summary, keep the broker, Redis, the worker and /metrics up, and print how to publish to them; Ctrl-C stops. Without a demo stream, always."`
	LogLevel    string        `env:"FLEET_LOG_LEVEL" default:"error" enum:"debug,info,warn,error" help:"Level of the engine's log on stderr (warn shows every dead letter)."`
	ConsoleAddr string        `name:"console-addr" env:"FLEET_CONSOLE_ADDR" default:"127.0.0.1:8090" help:"While it keeps running, where the operator console listens, with an operator token made at start and printed (a free port when this one is taken; off: no console)."`

	httpHandlerFlags `embed:""`
}

const (
	defaultDevHTTPAddr = "127.0.0.1:8080"
	devGroup           = "fleet-dev"
)

func (c *devCmd) Run(app *App) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return dev(ctx, app, c, os.Stdout, os.Stderr)
}

// dev runs the demo, printing progress and the summary to out and the
// engine's log to logs. It returns an error when anything does not check.
func dev(ctx context.Context, app *App, c *devCmd, out, logs io.Writer) error {
	if err := c.check(); err != nil {
		return err
	}
	httpHandlers, err := c.httpHandlerFlags.settings()
	if err != nil {
		return configError{err}
	}
	stream, err := app.demoRun(c)
	if err != nil {
		return configError{err}
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(c.Partitions), c.Topic) /* #nosec G115 -- checked: 1 to 1024 */, kfake.AllowAutoTopicCreation())
	if err != nil {
		return fmt.Errorf("embedded broker: %w", err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	redisURL, closeRedis, err := c.redis()
	if err != nil {
		return err
	}
	defer closeRedis()
	opts, err := parseRedisURL(redisURL)
	if err != nil {
		return configError{err}
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	c.describe(out, brokers[0], opts.Addr, stream)

	interrupted := ctx
	ctx, cancelTimeout := context.WithTimeout(ctx, c.Timeout)
	defer cancelTimeout()
	w := wiring{app: app, httpHandlers: httpHandlers, consumer: devConsumerConfig(brokers, c.Topic), rdb: rdb,
		httpAddr: c.httpAddr(out), skipPolicyCheck: c.Redis == ""}
	w.store = dedupe.Config{Lease: w.consumer.Lease, Retention: time.Hour}
	workers := startDevWorkers(interrupted, c.Workers, w, newLogger(logs, c.LogLevel, "text"), out)
	servedAddr, err := workers.waitStarted(ctx, interrupted, opts.Addr, c.Timeout)
	if err != nil {
		return err
	}
	if err := workers.waitOneGeneration(ctx, interrupted, c.Timeout); err != nil {
		return err
	}
	help := devHelp{broker: brokers[0], redisURL: redisURL, httpAddr: servedAddr, topic: c.Topic, workers: c.Workers}
	keepRunning := func() error {
		if c.ConsoleAddr != "off" {
			if help.console, err = startDevConsole(interrupted, newLogger(logs, c.LogLevel, "text"), logs, c.ConsoleAddr, brokers, redisURL, c.Topic, servedAddr); err != nil {
				return err
			}
			defer help.console.wait()
		}
		keepRunningHelp(out, app, help, app.example(rdb, httpHandlers.endpoints))
		return workers.keepRunning(interrupted)
	}
	if stream == nil {
		fmt.Fprintln(out, "this binary has no demo stream: publish events of your own")
		return keepRunning()
	}
	elapsed, err := workers.runStream(ctx, interrupted, stream, brokers, c)
	if err != nil {
		return err
	}
	view := dedupe.NewRedisView(rdb)
	if !c.KeepRunning {
		if err := workers.stopAll(); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		return summarize(ctx, out, stream, view, brokers, c.Topic, workers.reg, elapsed)
	}
	if err := summarize(ctx, out, stream, view, brokers, c.Topic, workers.reg, elapsed); err != nil {
		_ = workers.stopAll()
		return err
	}
	return keepRunning()
}

// check refuses what dev cannot run.
func (c *devCmd) check() error {
	switch {
	case c.Partitions < 1 || c.Partitions > 1024:
		return configError{fmt.Errorf("partitions %d: must be between 1 and 1024", c.Partitions)}
	case c.Timeout <= 0:
		return configError{fmt.Errorf("timeout %v: must be positive", c.Timeout)}
	case c.Workers < 1 || c.Workers > 16:
		return configError{fmt.Errorf("workers %d: must be between 1 and 16", c.Workers)}
	}
	return nil
}

// redis is the Redis dev uses: --redis, or an embedded one that the
// returned function stops.
func (c *devCmd) redis() (string, func(), error) {
	if c.Redis != "" {
		return c.Redis, func() {}, nil
	}
	mr, err := miniredis.Run()
	if err != nil {
		return "", nil, fmt.Errorf("embedded redis: %w", err)
	}
	return "redis://" + mr.Addr() + "/0", mr.Close, nil
}

// describe says what runs where.
func (c *devCmd) describe(out io.Writer, broker, redisAddr string, stream *DemoRun) {
	which := "embedded: miniredis"
	if c.Redis != "" {
		which = "given"
	}
	source := ""
	if stream != nil {
		source = ", event source " + stream.Source
	}
	fmt.Fprintf(out, "broker %s (embedded), redis %s (%s), topic %s with %d partitions, consumer group %s%s\n",
		broker, redisAddr, which, c.Topic, c.Partitions, devGroup, source)
}

// httpAddr is --http-addr, or a free port when the default is taken: only
// the default moves, since an address asked for is one the user expects
// (and serve says so when it is taken).
func (c *devCmd) httpAddr(out io.Writer) string {
	if c.HTTPAddr == defaultDevHTTPAddr && !free(c.HTTPAddr) {
		fmt.Fprintf(out, "%s is in use; serving on a free port instead\n", c.HTTPAddr)
		return "127.0.0.1:0"
	}
	return c.HTTPAddr
}

// devConsumerConfig is the engine's configuration in dev: short timeouts,
// quick commits and retries, for a demo that takes a second.
func devConsumerConfig(brokers []string, topic string) consumer.Config {
	cfg := consumer.DefaultConfig()
	cfg.Brokers, cfg.Topics, cfg.Group = brokers, []string{topic}, devGroup
	cfg.SessionTimeout, cfg.RebalanceTimeout, cfg.HeartbeatInterval, cfg.DrainTimeout = 10*time.Second, 10*time.Second, time.Second, 5*time.Second
	cfg.CommitInterval, cfg.MaxWait = 200*time.Millisecond, 100*time.Millisecond
	cfg.RetryBackoff, cfg.MaxRetryBackoff = 10*time.Millisecond, 100*time.Millisecond
	return cfg
}

// redactURL is s with any password replaced by xxxxx: for what fleet
// prints; a URL that does not parse is not printed at all.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return u.Redacted()
}

// publish writes msgs to topic, acknowledged by every in-sync replica.
func publish(ctx context.Context, brokers []string, topic string, msgs []kafka.Message) error {
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: 500}
	err := w.WriteMessages(ctx, msgs...)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("publish demo stream: %w", err)
	}
	return nil
}

// free reports whether addr can be listened on now.
func free(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// groupOffsets reads a consumer group's progress on one topic.
type groupOffsets struct {
	client     *kafka.Client
	group      string
	topic      string
	partitions int
}

func (g *groupOffsets) ids() []int {
	ids := make([]int, g.partitions)
	for i := range ids {
		ids[i] = i
	}
	return ids
}

// end returns the end offset (the next offset to be written) of every
// partition.
func (g *groupOffsets) end(ctx context.Context) (map[int]int64, error) {
	var reqs []kafka.OffsetRequest
	for _, p := range g.ids() {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	resp, err := g.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{g.topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", g.topic, err)
	}
	end := map[int]int64{}
	for _, p := range resp.Topics[g.topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("list offsets of %s partition %d: %w", g.topic, p.Partition, p.Error)
		}
		end[p.Partition] = p.LastOffset
	}
	if len(end) != g.partitions {
		return nil, fmt.Errorf("list offsets of %s: %d of %d partitions answered", g.topic, len(end), g.partitions)
	}
	return end, nil
}

// committed returns the group's committed offset of every partition; a
// partition without one is absent.
func (g *groupOffsets) committed(ctx context.Context) (map[int]int64, error) {
	resp, err := g.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: g.group, Topics: map[string][]int{g.topic: g.ids()}})
	if err == nil {
		err = resp.Error
	}
	if err != nil {
		return nil, fmt.Errorf("fetch committed offsets of %s: %w", g.group, err)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[g.topic] {
		if p.Error == nil && p.CommittedOffset >= 0 {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return out, nil
}

// reached reports whether every partition's committed offset is at its end.
func reached(committed, end map[int]int64) bool {
	for p, e := range end {
		if e > 0 && committed[p] < e {
			return false
		}
	}
	return true
}

// finished sums fleet_consumer_events_finished_total over the series of one
// outcome, or of every outcome when outcome is "".
func finished(reg prometheus.Gatherer, outcome string) int {
	want := map[string]string{}
	if outcome != "" {
		want["outcome"] = outcome
	}
	return int(sumMetric(reg, "fleet_consumer_events_finished_total", want))
}

// sumMetric sums a counter's series whose labels include every pair in want.
func sumMetric(reg prometheus.Gatherer, name string, want map[string]string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			match := true
			for k, v := range want {
				match = match && labels[k] == v
			}
			if match {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// oneGeneration reports whether every worker is a member of one and the same
// consumer group generation.
func oneGeneration(statuses []func() consumer.Status) bool {
	var gen int32
	for i, status := range statuses {
		st := status()
		if !st.Joined || (i > 0 && st.Generation != gen) {
			return false
		}
		gen = st.Generation
	}
	return true
}

// summarize prints what happened and checks it: the outcomes, the dead
// letters and their kinds, and every balance. It returns an error when
// anything does not match.
func summarize(ctx context.Context, out io.Writer, s *DemoRun, view handlers.View, brokers []string, topic string,
	reg prometheus.Gatherer, elapsed time.Duration) error {
	processed := finished(reg, consumer.OutcomeProcessed)
	dups := finished(reg, consumer.OutcomeDuplicate)
	// Conflicts are dead-lettered too; their outcome names them.
	dead := finished(reg, consumer.OutcomeDeadLettered) + finished(reg, consumer.OutcomeConflict)
	fmt.Fprintf(out, "\nall %d messages finished and committed in %v: %d processed, %d duplicates skipped, %d dead-lettered\n",
		len(s.Messages), elapsed.Round(time.Millisecond), processed, dups, dead)

	var problems []string
	if processed != s.Unique {
		problems = append(problems, fmt.Sprintf("processed %d events, want %d", processed, s.Unique))
	}
	if dups != s.Duplicates {
		problems = append(problems, fmt.Sprintf("skipped %d duplicates, want %d", dups, s.Duplicates))
	}
	problems = append(problems, checkDeadLetters(ctx, out, s, brokers, topic)...)

	checked, err := s.Check(ctx, view)
	if err != nil {
		return fmt.Errorf("demo check: %w", err)
	}
	if checked.Summary != "" {
		fmt.Fprintln(out, printable(checked.Summary))
	}
	problems = append(problems, checked.Problems...)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(out, "MISMATCH: %s\n", printable(p))
		}
		return fmt.Errorf("demo check: %d problems", len(problems))
	}
	fmt.Fprintln(out, "OK: every event applied exactly once, every poison message dead-lettered with its reason")
	return nil
}

// checkDeadLetters prints the dead letters of the demo topic and returns
// where their kinds differ from the demo's poison.
func checkDeadLetters(ctx context.Context, out io.Writer, s *DemoRun, brokers []string, topic string) []string {
	var problems []string
	dlq := consumer.DeadLetterTopic(topic)
	letters, err := readDeadLetters(ctx, brokers, dlq)
	if err != nil {
		problems = append(problems, err.Error())
	}
	fmt.Fprintf(out, "dead-letter topic %s holds %d messages:\n", dlq, len(letters))
	slices.SortFunc(letters, func(a, b kafka.Message) int {
		return cmp.Or(cmp.Compare(headerNamed(a.Headers, consumer.HeaderErrorKind), headerNamed(b.Headers, consumer.HeaderErrorKind)),
			cmp.Compare(originalOffset(a), originalOffset(b)))
	})
	got := map[string]int{}
	for _, m := range letters {
		kind := headerNamed(m.Headers, consumer.HeaderErrorKind)
		got[kind]++
		fmt.Fprintf(out, "  %-13s %s/%s@%s  %s\n", printable(kind), printable(headerNamed(m.Headers, consumer.HeaderOriginalTopic)),
			printable(headerNamed(m.Headers, consumer.HeaderOriginalPartition)), printable(headerNamed(m.Headers, consumer.HeaderOriginalOffset)),
			printable(headerNamed(m.Headers, consumer.HeaderErrorMessage)))
	}
	want := map[string]int{}
	for _, k := range s.Poison {
		want[k]++
	}
	for _, k := range kinds(got, want) {
		if got[k] != want[k] {
			problems = append(problems, fmt.Sprintf("dead letters of kind %s: %d, want %d", k, got[k], want[k]))
		}
	}
	return problems
}

// kinds is the sorted set of keys of a and b.
func kinds(a, b map[string]int) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func originalOffset(m kafka.Message) int64 {
	n, _ := strconv.ParseInt(headerNamed(m.Headers, consumer.HeaderOriginalOffset), 10, 64)
	return n
}

// readDeadLetters reads every message of every partition of topic.
func readDeadLetters(ctx context.Context, brokers []string, topic string) ([]kafka.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// A fresh transport: kafka-go's transports answer Metadata from a cached
	// view of the cluster, which may predate the dead-letter topic.
	transport := &kafka.Transport{}
	defer transport.CloseIdleConnections()
	meta, err := (&kafka.Client{Addr: kafka.TCP(brokers...), Transport: transport}).Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	switch {
	case err != nil:
		return nil, fmt.Errorf("dead-letter topic %s: metadata: %w", topic, err)
	case len(meta.Topics) == 0:
		return nil, fmt.Errorf("dead-letter topic %s: missing", topic)
	case meta.Topics[0].Error != nil:
		return nil, fmt.Errorf("dead-letter topic %s: %w", topic, meta.Topics[0].Error)
	}
	var out []kafka.Message
	for _, p := range meta.Topics[0].Partitions {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p.ID, MaxWait: 50 * time.Millisecond})
		lag, err := r.ReadLag(ctx)
		for i := int64(0); err == nil && i < lag; i++ {
			var m kafka.Message
			if m, err = r.ReadMessage(ctx); err == nil {
				out = append(out, m)
			}
		}
		_ = r.Close()
		if err != nil {
			return out, fmt.Errorf("read %s partition %d: %w", topic, p.ID, err)
		}
	}
	return out, nil
}
