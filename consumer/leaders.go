package consumer

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// leaders knows the leader broker of every partition of a generation's
// topics, from one metadata request, so that a partition's reader dials its
// leader directly (reader.go). A reader that finds the leader moved says so
// (moved), and the next question reads the metadata again, at most once per
// leadersRefresh. It is safe for concurrent use.
type leaders struct {
	dialer  *kafka.Dialer
	brokers []string
	topics  []string

	mu          sync.Mutex
	byPartition map[topicPartition]kafka.Broker
	read        time.Time
	stale       bool
	readErr     error
}

// topicPartition names a partition.
type topicPartition struct {
	topic string
	id    int
}

// leadersRefresh is the least time between two metadata requests.
const leadersRefresh = time.Second

func newLeaders(dialer *kafka.Dialer, brokers, topics []string) *leaders {
	if dialer == nil {
		dialer = kafka.DefaultDialer
	}
	return &leaders{dialer: dialer, brokers: brokers, topics: topics}
}

// leader returns the leader of a partition, reading the metadata first when
// it was never read or a reader found it stale.
func (l *leaders) leader(ctx context.Context, topic string, id int) (kafka.Broker, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byPartition == nil || (l.stale && time.Since(l.read) >= leadersRefresh) {
		l.readErr = l.refresh(ctx)
	}
	b, ok := l.byPartition[topicPartition{topic, id}]
	switch {
	case ok:
		return b, nil
	case l.readErr != nil:
		return kafka.Broker{}, l.readErr
	}
	l.stale = true
	return kafka.Broker{}, fmt.Errorf("no leader known for %s partition %d: %w", topic, id, kafka.LeaderNotAvailable)
}

// moved marks the leaders stale: a reader found one that is no longer.
func (l *leaders) moved() {
	l.mu.Lock()
	l.stale = true
	l.mu.Unlock()
}

// refresh reads the metadata of the topics from a bootstrap broker.
func (l *leaders) refresh(ctx context.Context) error {
	l.read = time.Now()
	var err error
	for _, b := range l.brokers {
		var parts []kafka.Partition
		if parts, err = l.readFrom(ctx, b); err == nil {
			l.byPartition = make(map[topicPartition]kafka.Broker, len(parts))
			for _, p := range parts {
				l.byPartition[topicPartition{p.Topic, p.ID}] = p.Leader
			}
			l.stale = false
			return nil
		}
	}
	return fmt.Errorf("read the partitions' leaders: %w", err)
}

func (l *leaders) readFrom(ctx context.Context, broker string) ([]kafka.Partition, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := l.dialer.DialContext(ctx, "tcp", broker)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	return conn.ReadPartitions(l.topics...)
}
