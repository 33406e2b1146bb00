package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// DefaultMaxMessageBytes is Kafka's default limit on a record batch
// (message.max.bytes, max.message.bytes), assumed for a topic whose own
// limit could not be read.
const DefaultMaxMessageBytes = 1048588

// batchOverhead is what a record batch adds to its messages: the v2 batch
// header and some room for the per-record varints kafka-go does not count.
const batchOverhead = 512

// DeadLetterWriter writes dead letters and retry messages. Every write waits
// for all in-sync replicas; batches are sent after at most 5 ms and never
// exceed the target topic's message limit (SetLimit), so that a batch is
// refused for being too large only when one message alone is; and each
// message goes to the partition it names (see [PartitionBalancer]). It owns
// its Kafka transport, so that Close also closes its broker connections
// (kafka-go's shared default transport would keep them open for the life of
// the process). It is safe for concurrent use.
type DeadLetterWriter struct {
	brokers   []string
	transport *kafka.Transport

	mu      sync.Mutex
	limits  map[string]int
	writers map[int]*kafka.Writer
}

// NewPublisher returns a writer for dead letters and retry messages. A
// struct-literal kafka.Writer would default to no acknowledgements at all,
// and to batches of 1 MiB whatever the topic allows.
func NewPublisher(brokers []string, dialer *kafka.Dialer) *DeadLetterWriter {
	return &DeadLetterWriter{
		brokers:   brokers,
		transport: Transport(dialer),
		limits:    map[string]int{},
		writers:   map[int]*kafka.Writer{},
	}
}

// SetLimit records a topic's message limit (its max.message.bytes).
func (w *DeadLetterWriter) SetLimit(topic string, maxMessageBytes int) {
	w.mu.Lock()
	w.limits[topic] = maxMessageBytes
	w.mu.Unlock()
}

// WriteMessages writes msgs and returns once all are acknowledged. A message
// larger than its topic's limit fails with a kafka.MessageTooLargeError
// without being sent.
func (w *DeadLetterWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	for len(msgs) > 0 {
		// Consecutive messages with one limit go together.
		wr := w.writer(msgs[0].Topic)
		n := 1
		for n < len(msgs) && w.writer(msgs[n].Topic) == wr {
			n++
		}
		if err := wr.WriteMessages(ctx, msgs[:n]...); err != nil {
			return err
		}
		msgs = msgs[n:]
	}
	return nil
}

// writer returns the writer for a topic's limit.
func (w *DeadLetterWriter) writer(topic string) *kafka.Writer {
	w.mu.Lock()
	defer w.mu.Unlock()
	limit, ok := w.limits[topic]
	if !ok {
		limit = DefaultMaxMessageBytes
	}
	wr := w.writers[limit]
	if wr == nil {
		wr = &kafka.Writer{
			Addr:                   kafka.TCP(w.brokers...),
			Balancer:               PartitionBalancer{},
			RequiredAcks:           kafka.RequireAll,
			BatchTimeout:           5 * time.Millisecond,
			BatchBytes:             int64(max(limit-batchOverhead, 1024)),
			AllowAutoTopicCreation: true,
			Transport:              w.transport,
		}
		w.writers[limit] = wr
	}
	return wr
}

// Close flushes pending writes and closes the broker connections.
func (w *DeadLetterWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for _, wr := range w.writers {
		errs = append(errs, wr.Close())
	}
	w.transport.CloseIdleConnections()
	return errors.Join(errs...)
}

// Transport returns a Kafka transport with the dialer's TLS, SASL and client
// id: kafka-go's clients and writers take a transport, its readers and
// consumer groups a dialer. A nil dialer gives the defaults.
func Transport(d *kafka.Dialer) *kafka.Transport {
	t := &kafka.Transport{}
	if d != nil {
		t.TLS, t.SASL, t.ClientID = d.TLS, d.SASLMechanism, d.ClientID
	}
	return t
}

// PartitionBalancer writes a message to the partition it names
// (Message.Partition) while the topic has it, and otherwise to the partition
// the Java client's default partitioner picks for its key (murmur2). Retry
// tiers and dead letters keep their source partition this way, and a
// replayed event goes back to the partition its key's live events are on,
// whatever partitioner their producer used.
type PartitionBalancer struct{}

// Balance implements kafka.Balancer.
func (PartitionBalancer) Balance(msg kafka.Message, partitions ...int) int {
	for _, p := range partitions {
		if p == msg.Partition {
			return p
		}
	}
	return kafka.Murmur2Balancer{Consistent: true}.Balance(msg, partitions...)
}

// tooLarge reports whether a write failed because a message is larger than
// the topic (or the writer's batch) allows: refused by the writer before
// sending, or by the broker (inside kafka.WriteErrors, which does not
// unwrap).
func tooLarge(err error) bool {
	var mtl kafka.MessageTooLargeError
	if errors.As(err, &mtl) || errors.Is(err, kafka.MessageSizeTooLarge) {
		return true
	}
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) {
		for _, e := range werrs {
			if e != nil && tooLarge(e) {
				return true
			}
		}
	}
	return false
}
