package consumer

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestPartitionReaderMatchesKafkaGo holds partitionReader (reader.go), which
// reads a partition over a connection to its leader, to kafka-go's Reader
// in partition mode, which it replaces: from the first offset, from offsets
// inside compressed batches and at the end of the log, over batches of
// every size written with and without compression, both return the same
// messages (offset, key, value, headers, time), in the same order, and
// neither returns one before its start.
func TestPartitionReaderMatchesKafkaGo(t *testing.T) {
	const topic = "diff"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	transport := &kafka.Transport{}
	defer transport.CloseIdleConnections()
	rng := rand.New(rand.NewPCG(7, 11)) // #nosec G404 -- test data
	total := 0
	for i, codec := range []compress.Compression{0, compress.Gzip, compress.Snappy, compress.Lz4, compress.Zstd, 0} {
		w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Compression: codec, BatchSize: 1 + rng.IntN(300),
			BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll, Transport: transport}
		var msgs []kafka.Message
		for j := range 200 + rng.IntN(400) {
			v := make([]byte, rng.IntN(3000))
			for k := range v {
				v[k] = byte(rng.IntN(4)) // compressible
			}
			m := kafka.Message{Key: fmt.Appendf(nil, "k%d-%d", i, j), Value: v}
			if j%3 == 0 {
				m.Headers = []kafka.Header{{Key: "ce_id", Value: fmt.Appendf(nil, "%d/%d", i, j)}, {Key: "empty"}}
			}
			msgs = append(msgs, m)
		}
		if err := w.WriteMessages(context.Background(), msgs...); err != nil {
			t.Fatal(err)
		}
		_ = w.Close()
		total += len(msgs)
	}
	for _, start := range []int64{kafka.FirstOffset, 1, 7, int64(total / 3), int64(total/2 + 1), int64(total - 5)} {
		want := readWithKafkaGo(t, brokers, topic, start, total)
		got := readWithPartitionReader(t, brokers, topic, start, total)
		if len(got) != len(want) {
			t.Fatalf("from %d: %d messages, kafka-go's Reader read %d", start, len(got), len(want))
		}
		for i := range want {
			if d := messageDiff(got[i], want[i]); d != "" {
				t.Fatalf("from %d, message %d: %s", start, i, d)
			}
		}
		if from := max(start, 0); len(got) > 0 && got[0].Offset != from {
			t.Fatalf("from %d: the first message read is at %d", start, got[0].Offset)
		}
	}
}

// readWithKafkaGo reads the partition from start to its end (total
// messages) with kafka-go's Reader.
func readWithKafkaGo(t *testing.T, brokers []string, topic string, start int64, total int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MinBytes: 1, MaxBytes: fetchMaxBytes,
		MaxWait: 50 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		t.Fatal(err)
	}
	return readAll(t, total, start, r.ReadMessage)
}

// readWithPartitionReader reads the partition from start to its end with
// partitionReader.
func readWithPartitionReader(t *testing.T, brokers []string, topic string, start int64, total int) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := &partitionReader{ctx: ctx, dialer: kafka.DefaultDialer, leaders: newLeaders(nil, brokers, []string{topic}), topic: topic,
		maxWait: 50 * time.Millisecond, offset: start}
	defer r.close()
	return readAll(t, total, start, func(context.Context) (kafka.Message, error) { return r.next() })
}

// readAll reads the messages from start to the end of a partition of total
// messages.
func readAll(t *testing.T, total int, start int64, read func(context.Context) (kafka.Message, error)) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []kafka.Message
	for n := total - int(max(start, 0)); len(out) < n; {
		m, err := read(ctx)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

// messageDiff says how two messages read from one partition differ, or "".
func messageDiff(got, want kafka.Message) string {
	switch {
	case got.Offset != want.Offset:
		return fmt.Sprintf("offset %d, want %d", got.Offset, want.Offset)
	case !bytes.Equal(got.Key, want.Key) || !bytes.Equal(got.Value, want.Value):
		return fmt.Sprintf("key %q or value (%d bytes) differ from %q (%d bytes)", got.Key, len(got.Value), want.Key, len(want.Value))
	case !got.Time.Equal(want.Time):
		return fmt.Sprintf("time %v, want %v", got.Time, want.Time)
	case len(got.Headers) != len(want.Headers):
		return fmt.Sprintf("headers %v, want %v", got.Headers, want.Headers)
	}
	for i := range want.Headers {
		if got.Headers[i].Key != want.Headers[i].Key || !bytes.Equal(got.Headers[i].Value, want.Headers[i].Value) {
			return fmt.Sprintf("headers %v, want %v", got.Headers, want.Headers)
		}
	}
	return ""
}
