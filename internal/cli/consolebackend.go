package cli

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/internal/console"
)

// consoleConfig is what the console's backend reads and acts on: one
// consumer group's brokers and idempotency store.
type consoleConfig struct {
	Brokers []string
	// Dialer carries Kafka's TLS and SASL settings (nil: none).
	Dialer *kafka.Dialer
	// Redis is the group's idempotency store.
	Redis redisTarget
	Group string
	// Topics are the group's source topics. Empty: the topics the group
	// has committed offsets on or is assigned, found at each read, their
	// retry tiers, parked and dead-letter topics left out.
	Topics []string
	// StatusPort is the port of each member's /status, on the host the
	// member connects to Kafka from (default 8080). StatusURLs, when
	// given, are asked instead (http://host:port/status), and each member
	// is found among their answers by its member id.
	StatusPort int
	StatusURLs []string
	// StatusTimeout bounds each /status request (default 2 s).
	StatusTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// withDefaults fills the settings left zero.
func (c consoleConfig) withDefaults() consoleConfig {
	if c.StatusPort == 0 {
		c.StatusPort = 8080
	}
	if c.StatusTimeout == 0 {
		c.StatusTimeout = 2 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Brokers, c.Topics, c.StatusURLs = trimAll(c.Brokers), trimAll(c.Topics), trimAll(c.StatusURLs)
	return c
}

// Validate says what is wrong with the settings, all of it at once.
func (c consoleConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one is required"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("group: required"))
	}
	if c.Redis.mode == "" {
		errs = append(errs, errors.New("redis: the group's idempotency store is required"))
	}
	for _, t := range c.Topics {
		if !isSourceTopic(t) {
			errs = append(errs, fmt.Errorf("topic %s: a source topic, not a retry tier, parked or dead-letter topic", t))
		}
	}
	if c.StatusPort < 1 || c.StatusPort > 65535 {
		errs = append(errs, fmt.Errorf("status port %d: not a port", c.StatusPort))
	}
	if c.StatusTimeout < 0 {
		errs = append(errs, fmt.Errorf("status timeout %v: must be positive", c.StatusTimeout))
	}
	return errors.Join(errs...)
}

// consoleBackend is the console's Backend over Kafka and the idempotency
// store (see console.Backend): it reads one consumer group's members,
// offsets and dead letters, and acts with fleet dlq replay's and fleet
// keys' rules. It is safe for concurrent use; Close ends it.
type consoleBackend struct {
	cfg        consoleConfig
	transport  *kafka.Transport
	client     *kafka.Client
	store      *dedupe.Redis
	closeStore func() error
	http       *http.Client
	// reads holds a slot for each read of whole dead-letter topics that
	// runs (two at most).
	reads chan struct{}
}

var _ console.Backend = (*consoleBackend)(nil)

// newConsoleBackend checks cfg and connects to the store, without waiting
// for it or for Kafka to answer: what does not answer is said at each read.
func newConsoleBackend(cfg consoleConfig) (*consoleBackend, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, configError{err}
	}
	rdb := cfg.Redis.quiet().client()
	store, err := dedupe.NewRedis(rdb, dedupe.DefaultConfig())
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	t := consumer.Transport(cfg.Dialer)
	return &consoleBackend{
		cfg:        cfg,
		transport:  t,
		client:     &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: t, Timeout: 10 * time.Second},
		store:      store,
		closeStore: rdb.Close,
		// A member's host is where the broker says it connects from,
		// which anyone who joins the group chooses: its /status is
		// asked there and nowhere a redirect names.
		http: &http.Client{Timeout: cfg.StatusTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		reads: make(chan struct{}, 2),
	}, nil
}

// Close closes the connections to Redis and Kafka.
func (b *consoleBackend) Close() error {
	b.transport.CloseIdleConnections()
	b.http.CloseIdleConnections()
	return b.closeStore()
}

// Group is the consumer group the backend is about.
func (b *consoleBackend) Group() string { return b.cfg.Group }

// redisFailed names the store in an error, by its address only: its URL
// may hold a password.
func (b *consoleBackend) redisFailed(err error) error {
	return fmt.Errorf("redis at %s: %w", b.cfg.Redis.addr(), err)
}

// sources are the group's source topics: the configured ones, or those
// its committed offsets and its members' assignments name.
func (b *consoleBackend) sources(ctx context.Context) ([]string, error) {
	if len(b.cfg.Topics) > 0 {
		return b.cfg.Topics, nil
	}
	committed, err := b.committed(ctx)
	if err != nil {
		return nil, err
	}
	members, err := b.members(ctx)
	if err != nil {
		return nil, err
	}
	return b.sourcesOf(committed, members), nil
}

// sourcesOf are the configured source topics, or those named by the
// group's committed offsets and its members' assignments.
func (b *consoleBackend) sourcesOf(committed map[string]map[int]int64, members []console.Member) []string {
	if len(b.cfg.Topics) > 0 {
		return b.cfg.Topics
	}
	return sourceTopics(append(slices.Collect(maps.Keys(committed)), assignedTopics(members)...))
}

// committed reads the group's committed offsets on every topic, by topic
// and partition.
func (b *consoleBackend) committed(ctx context.Context) (map[string]map[int]int64, error) {
	resp, err := b.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: b.cfg.Group})
	if err == nil {
		err = resp.Error
	}
	if err != nil {
		return nil, fmt.Errorf("read the committed offsets of group %s: %w", b.cfg.Group, err)
	}
	out := map[string]map[int]int64{}
	for topic, parts := range resp.Topics {
		out[topic] = map[int]int64{}
		for _, p := range parts {
			if p.Error == nil {
				out[topic][p.Partition] = p.CommittedOffset
			}
		}
	}
	return out, nil
}

// deadLetterTopics are the dead-letter topics of the group's sources.
func (b *consoleBackend) deadLetterTopics(ctx context.Context) ([]string, error) {
	srcs, err := b.sources(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(srcs))
	for i, s := range srcs {
		out[i] = consumer.DeadLetterTopic(s)
	}
	return out, nil
}

// ownDeadLetterTopic reports whether topic is the dead-letter topic of one
// of the group's sources: the console reads and replays no other.
func (b *consoleBackend) ownDeadLetterTopic(ctx context.Context, topic string) (bool, error) {
	dlqs, err := b.deadLetterTopics(ctx)
	return slices.Contains(dlqs, topic), err
}

// sourceTopics are the source topics among the names of topics a group
// consumes, sorted: a retry tier or parked topic stands for its source;
// dead-letter topics are left out.
func sourceTopics(topics []string) []string {
	set := map[string]bool{}
	for _, t := range topics {
		if s, ok := sourceOf(t); ok {
			set[s] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// sourceOf is the source topic whose events topic carries: itself, or
// the source of a retry tier (<source>.retry.<n>) or parked topic
// (<source>.parked); ok is false for a dead-letter topic.
func sourceOf(topic string) (source string, ok bool) {
	if s, _, ok := retryTier(topic); ok {
		return s, true
	}
	if s, ok := strings.CutSuffix(topic, ".parked"); ok && s != "" {
		return s, true
	}
	if strings.HasSuffix(topic, ".dlq") {
		return "", false
	}
	return topic, topic != ""
}

// isSourceTopic reports whether topic is a source topic, not one of
// fleet's own.
func isSourceTopic(topic string) bool {
	s, ok := sourceOf(topic)
	return ok && s == topic
}

// retryTier splits a retry tier's topic (consumer.RetryTopic) into its
// source topic and tier.
func retryTier(topic string) (source string, tier int, ok bool) {
	i := strings.LastIndex(topic, ".retry.")
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(topic[i+len(".retry."):])
	if err != nil || n < 1 || consumer.RetryTopic(topic[:i], n) != topic {
		return "", 0, false
	}
	return topic[:i], n, true
}
