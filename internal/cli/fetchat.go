package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
)

// fetchAt reads the message at one offset of a partition with one fetch;
// ok is false when the partition holds none there (past its end, before
// its start, or compacted away) or is not there at all.
func fetchAt(ctx context.Context, client *kafka.Client, topic string, partition int, offset int64) (m kafka.Message, ok bool, err error) {
	resp, err := client.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: partition, Offset: offset,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 500 * time.Millisecond})
	if err != nil {
		return kafka.Message{}, false, fmt.Errorf("fetch %s/%d@%d: %w", topic, partition, offset, err)
	}
	if resp.Error != nil {
		if errors.Is(resp.Error, kafka.OffsetOutOfRange) || errors.Is(resp.Error, kafka.UnknownTopicOrPartition) {
			return kafka.Message{}, false, nil
		}
		return kafka.Message{}, false, fmt.Errorf("fetch %s/%d@%d: %w", topic, partition, offset, resp.Error)
	}
	// The broker answers with whole batches: the first may start before
	// the offset asked for.
	for {
		r, err := resp.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return kafka.Message{}, false, nil
		}
		if err != nil {
			return kafka.Message{}, false, fmt.Errorf("fetch %s/%d@%d: %w", topic, partition, offset, err)
		}
		if r.Offset < offset {
			continue
		}
		if r.Offset > offset {
			return kafka.Message{}, false, nil
		}
		return messageOf(topic, partition, r)
	}
}

// messageOf is a fetched record as a message.
func messageOf(topic string, partition int, r *kafka.Record) (kafka.Message, bool, error) {
	key, err := kafka.ReadAll(r.Key)
	if err != nil {
		return kafka.Message{}, false, err
	}
	value, err := kafka.ReadAll(r.Value)
	if err != nil {
		return kafka.Message{}, false, err
	}
	return kafka.Message{Topic: topic, Partition: partition, Offset: r.Offset, Time: r.Time, Key: key, Value: value, Headers: r.Headers}, true, nil
}
