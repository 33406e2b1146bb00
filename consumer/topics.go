package consumer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"
)

// ensureTopics creates the retry and dead-letter topics of every source
// topic that exists and lacks them, with the source's partition count and
// replication factor, and returns the topics to subscribe to: the sources,
// and each retry topic that exists. A retry topic that cannot be created
// (no permission, say) is left out with a warning: its tier's events are
// then written to it, and wait there, until it is created.
//
// It retries while the cluster cannot be asked at all, until ctx is done.
func (e *Engine) ensureTopics(ctx context.Context) ([]string, error) {
	t := Transport(e.cfg.Dialer)
	defer t.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(e.cfg.Brokers...), Transport: t, Timeout: 10 * time.Second}

	want := slices.Sorted(maps.Keys(e.routes))
	for _, s := range e.cfg.Topics {
		want = append(want, DeadLetterTopic(s))
	}
	for attempt := 0; ; attempt++ {
		subscribe, err := e.createMissing(ctx, client, want)
		if err == nil {
			return subscribe, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if refused(err) {
			return nil, err
		}
		// A refused SASL login shows here only as a dropped connection:
		// ask the dialer, which reports the broker's error code.
		if aerr := e.authenticate(ctx); refused(aerr) {
			return nil, aerr
		}
		e.log.Warn("read topic metadata", "err", err)
		if !sleep(ctx, backoff(attempt, 200*time.Millisecond, 5*time.Second)) {
			return nil, ctx.Err()
		}
	}
}

func (e *Engine) createMissing(ctx context.Context, client *kafka.Client, want []string) ([]string, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: want})
	if err != nil {
		return nil, err
	}
	exists := map[string]kafka.Topic{}
	for _, t := range md.Topics {
		if t.Error == nil && len(t.Partitions) > 0 {
			exists[t.Name] = t
		}
	}
	var create []kafka.TopicConfig
	for _, s := range e.cfg.Topics {
		src, ok := exists[s]
		if !ok {
			e.log.Warn("source topic does not exist (yet): its retry and dead-letter topics are not created", "topic", s)
			continue
		}
		derived := []string{DeadLetterTopic(s)}
		for n := 1; n <= len(e.cfg.RetryDelays); n++ {
			derived = append(derived, RetryTopic(s, n))
		}
		for _, d := range derived {
			if _, ok := exists[d]; !ok {
				create = append(create, kafka.TopicConfig{
					Topic:             d,
					NumPartitions:     len(src.Partitions),
					ReplicationFactor: max(len(src.Partitions[0].Replicas), 1),
				})
			}
		}
	}
	if len(create) > 0 {
		resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: create})
		if err != nil {
			return nil, fmt.Errorf("create topics: %w", err)
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
	}
	var subscribe []string
	for _, t := range slices.Sorted(maps.Keys(e.routes)) {
		if _, ok := exists[t]; ok || e.routes[t].tier == 0 {
			subscribe = append(subscribe, t)
		}
	}
	return subscribe, nil
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
