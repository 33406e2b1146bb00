package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/segmentio/kafka-go"
)

// ensureTopics creates the retry and dead-letter topics of every source
// topic that exists and lacks them, with the source's partition count,
// replication factor and message limit, and returns the topics to subscribe
// to: the sources, and every retry topic of theirs that exists, the
// configured tiers and any others. A group restarted with fewer tiers (or
// none), or a rolling deploy with mixed settings, so still runs the events
// waiting in a tier it no longer writes to; a failure there goes on to the
// next configured tier or to the dead-letter topic. A retry topic that
// cannot be created (no permission, say) is left out with a warning: its
// tier's events are then written to it, and wait there, until it is
// created. The message limits of the topics fleet writes to are passed to
// the dead-letter writer.
//
// It retries while the cluster cannot be asked at all, until ctx is done.
func (e *Engine) ensureTopics(ctx context.Context) ([]string, error) {
	t := Transport(e.cfg.Dialer)
	defer t.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(e.cfg.Brokers...), Transport: t, Timeout: 10 * time.Second}
	return retry(ctx, kafkaRetry, func() ([]string, error) {
		subscribe, err := e.createMissing(ctx, client)
		switch {
		case err == nil, ctx.Err() != nil:
			return subscribe, err
		case refused(err):
			return nil, backoff.Permanent(err)
		}
		// A refused SASL login shows here only as a dropped connection:
		// ask the dialer, which reports the broker's error code.
		if aerr := e.authenticate(ctx); refused(aerr) {
			return nil, backoff.Permanent(aerr)
		}
		return nil, err
	}, func(err error) {
		e.kafkaFailed(err)
		e.log.Warn("read topic metadata", "err", err)
	})
}

func (e *Engine) createMissing(ctx context.Context, client *kafka.Client) ([]string, error) {
	// Every topic: retry tiers beyond the configured ones are found by name.
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, err
	}
	exists := map[string]kafka.Topic{}
	for _, t := range md.Topics {
		if t.Error == nil && len(t.Partitions) > 0 {
			exists[t.Name] = t
		}
	}
	limits := e.messageLimits(ctx, client, slices.Collect(maps.Keys(exists)))
	if err := e.createTopics(ctx, client, e.missingTopics(exists, limits), exists); err != nil {
		return nil, err
	}
	if lw, ok := e.dlq.(interface{ SetLimit(string, int) }); ok {
		for t, l := range limits {
			lw.SetLimit(t, l)
		}
	}
	e.routes = routesOf(e.cfg.Topics, len(e.cfg.RetryDelays), slices.Collect(maps.Keys(exists)))
	var subscribe []string
	for _, t := range slices.Sorted(maps.Keys(e.routes)) {
		if _, ok := exists[t]; ok || !e.routes[t].fleets() {
			subscribe = append(subscribe, t)
		}
	}
	return subscribe, nil
}

// missingTopics are the retry and dead-letter topics of the existing
// sources that do not exist yet, shaped like their source: its partitions,
// replication factor and message limit (which limits then holds for them).
func (e *Engine) missingTopics(exists map[string]kafka.Topic, limits map[string]int) []kafka.TopicConfig {
	var create []kafka.TopicConfig
	for _, s := range e.cfg.Topics {
		src, ok := exists[s]
		if !ok {
			e.log.Warn("source topic does not exist (yet): its retry and dead-letter topics are not created", "topic", s)
			continue
		}
		for _, d := range derivedTopics(s, len(e.cfg.RetryDelays), e.cfg.RetryOrder == OrderKey) {
			if _, ok := exists[d]; ok {
				continue
			}
			c := kafka.TopicConfig{
				Topic:             d,
				NumPartitions:     len(src.Partitions),
				ReplicationFactor: max(len(src.Partitions[0].Replicas), 1),
			}
			if l, ok := limits[s]; ok {
				c.ConfigEntries = []kafka.ConfigEntry{{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(l)}}
				limits[d] = l
			}
			create = append(create, c)
		}
	}
	return create
}

// createTopics creates topics and adds the ones that exist now to exists. A
// topic the cluster refuses to create is left out with a warning.
func (e *Engine) createTopics(ctx context.Context, client *kafka.Client, create []kafka.TopicConfig, exists map[string]kafka.Topic) error {
	if len(create) == 0 {
		return nil
	}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: create})
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for _, c := range create {
		switch err := resp.Errors[c.Topic]; {
		case err == nil:
			e.log.Info("created topic", "topic", c.Topic, "partitions", c.NumPartitions, "replication_factor", c.ReplicationFactor)
			exists[c.Topic] = kafka.Topic{Name: c.Topic}
		case errors.Is(err, kafka.TopicAlreadyExists):
			exists[c.Topic] = kafka.Topic{Name: c.Topic}
		default:
			e.log.Warn("create topic: create it by hand", "topic", c.Topic, "err", err)
		}
	}
	return nil
}

// derivedTopics are the topics fleet writes a source topic's events to: its
// dead-letter topic and its configured retry tiers.
func derivedTopics(source string, tiers int, ordered bool) []string {
	out := []string{DeadLetterTopic(source)}
	for n := 1; n <= tiers; n++ {
		out = append(out, RetryTopic(source, n))
	}
	if ordered {
		out = append(out, ParkedTopic(source))
	}
	return out
}

// routesOf lists the topics to consume: the sources, their configured
// retry tiers, and every other retry topic of theirs among existing.
func routesOf(sources []string, tiers int, existing []string) map[string]route {
	r := make(map[string]route, len(sources)*(1+tiers))
	for _, t := range sources {
		r[t] = route{source: t}
		r[ParkedTopic(t)] = route{source: t, parked: true}
		for n := 1; n <= tiers; n++ {
			r[RetryTopic(t, n)] = route{source: t, tier: n}
		}
	}
	for _, t := range existing {
		if src, n, ok := parseRetryTopic(t); ok && slices.Contains(sources, src) {
			r[t] = route{source: src, tier: n}
		}
	}
	return r
}

// messageLimits reads the max.message.bytes of topics. A topic whose limit
// cannot be read is left out (the writer then assumes Kafka's default).
func (e *Engine) messageLimits(ctx context.Context, client *kafka.Client, topics []string) map[string]int {
	limits := map[string]int{}
	if len(topics) == 0 {
		return limits
	}
	req := &kafka.DescribeConfigsRequest{}
	for _, t := range topics {
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: t, ConfigNames: []string{"max.message.bytes"}})
	}
	resp, err := client.DescribeConfigs(ctx, req)
	if err != nil {
		e.log.Warn("read the message limits of the topics: assuming Kafka's default", "err", err)
		return limits
	}
	for _, r := range resp.Resources {
		for _, c := range r.ConfigEntries {
			if n, err := strconv.Atoi(c.ConfigValue); r.Error == nil && c.ConfigName == "max.message.bytes" && err == nil && n > 0 {
				limits[r.ResourceName] = n
			}
		}
	}
	return limits
}

// refused reports whether the cluster refused our credentials or our
// rights: waiting cannot fix that, so the engine stops with it.
func refused(err error) bool {
	for _, code := range []kafka.Error{kafka.SASLAuthenticationFailed, kafka.UnsupportedSASLMechanism, kafka.IllegalSASLState,
		kafka.ClusterAuthorizationFailed, kafka.GroupAuthorizationFailed} {
		if errors.Is(err, code) {
			return true
		}
	}
	return false
}

// authenticate dials a bootstrap broker with the configured dialer when it
// authenticates (SASL): kafka-go's request path reports refused credentials
// only as the broker closing the connection (unexpected EOF), its dialer
// reports the broker's error code.
func (e *Engine) authenticate(ctx context.Context) error {
	d := e.cfg.Dialer
	if d == nil || d.SASLMechanism == nil {
		return nil
	}
	var err error
	for _, b := range e.cfg.Brokers {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var conn *kafka.Conn
		conn, err = d.DialContext(dctx, "tcp", b)
		cancel()
		if err == nil {
			return conn.Close()
		}
		if refused(err) {
			return err
		}
	}
	return err
}
