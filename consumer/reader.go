package consumer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
)

// partitionReader reads one partition, for one session, over one
// connection to its leader, on the goroutine that calls next. kafka-go's
// Reader would do it with two goroutines and a queue of 100 messages, and
// it dials through Dialer.DialLeader, which reads the metadata of the
// partition's whole topic at every dial: a worker starting readers for P
// partitions then decodes P times the metadata of P partitions (91% of the
// bytes allocated by a worker assigned 1,024 partitions with their tiers).
// This one dials the leader that the generation's leaders (leaders.go)
// name. Its errors are those of kafka-go's Conn and Batch; it closes its
// connection on the ones that leave it unusable, and dials again at the
// next call. It is not safe for concurrent use.
type partitionReader struct {
	ctx     context.Context
	dialer  *kafka.Dialer
	leaders *leaders
	topic   string
	id      int
	maxWait time.Duration
	// offset is the next offset to read: an absolute offset, or
	// kafka.FirstOffset or kafka.LastOffset until a dial resolves it.
	offset int64

	conn *kafka.Conn
	// unwatch stops the watch that interrupts the connection's reads when
	// ctx is done.
	unwatch func() bool
	batch   *kafka.Batch
}

// readBatchTimeout bounds the reading of one message of a fetched batch.
const readBatchTimeout = 10 * time.Second

// fetchMaxBytes bounds a fetch's answer, read from the connection as the
// messages are taken.
const fetchMaxBytes = 16 << 20

// openReader is p's reader for a session that reads until ctx is done,
// from p's next offset.
func (p *partition) openReader(ctx context.Context) *partitionReader {
	dialer := p.e.cfg.Dialer
	if dialer == nil {
		dialer = kafka.DefaultDialer
	}
	return &partitionReader{ctx: ctx, dialer: dialer, leaders: p.leaders, topic: p.topic, id: p.id,
		maxWait: p.e.cfg.MaxWait, offset: p.wm.commitOffset()}
}

// next returns the next message, fetching as needed; it returns ctx's error
// once ctx is done.
func (r *partitionReader) next() (kafka.Message, error) {
	for {
		if err := r.ctx.Err(); err != nil {
			return kafka.Message{}, err
		}
		if r.batch == nil {
			if err := r.fetch(); err != nil {
				return kafka.Message{}, err
			}
		}
		_ = r.conn.SetReadDeadline(time.Now().Add(readBatchTimeout))
		m, err := r.batch.ReadMessage()
		if err == nil {
			r.offset = m.Offset + 1
			return m, nil
		}
		if err := r.endBatch(err); err != nil {
			return kafka.Message{}, err
		}
	}
}

// fetch sends the next fetch, waiting up to maxWait on the broker for a
// message, dialling first when there is no connection.
func (r *partitionReader) fetch() error {
	if r.conn == nil {
		if err := r.dial(); err != nil {
			return err
		}
	}
	_ = r.conn.SetReadDeadline(time.Now().Add(r.maxWait + readBatchTimeout))
	r.batch = r.conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: fetchMaxBytes, MaxWait: r.maxWait})
	return nil
}

// endBatch closes a batch that ended with err: the end of its messages
// (the next call fetches again), or an error that next returns.
func (r *partitionReader) endBatch(err error) error {
	_ = r.batch.Close() // it reports err again
	r.batch = nil
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, kafka.RequestTimedOut):
		return nil
	case errors.Is(err, kafka.OffsetOutOfRange):
		// The next dial checks the offset against the log: before its
		// start, it skips to it; past its end, it fails.
		r.hangUp()
		return nil
	case errors.Is(err, kafka.NotLeaderForPartition), errors.Is(err, kafka.UnknownTopicOrPartition),
		errors.Is(err, kafka.LeaderNotAvailable):
		r.leaders.moved()
	}
	r.hangUp()
	if r.ctx.Err() != nil {
		return r.ctx.Err()
	}
	return fmt.Errorf("read %s partition %d at offset %d: %w", r.topic, r.id, r.offset, err)
}

// dial connects to the partition's leader and seeks to the next offset: the
// first or last one for kafka.FirstOffset and kafka.LastOffset, the first
// one when retention deleted it. An offset past the log's end is an error
// (kafka.OffsetOutOfRange), until the log grows past it.
func (r *partitionReader) dial() error {
	leader, err := r.leaders.leader(r.ctx, r.topic, r.id)
	if err != nil {
		return err
	}
	conn, err := r.dialer.DialPartition(r.ctx, "tcp", "", kafka.Partition{Topic: r.topic, ID: r.id, Leader: leader})
	if err != nil {
		r.leaders.moved()
		return fmt.Errorf("dial the leader of %s partition %d: %w", r.topic, r.id, err)
	}
	r.conn = conn
	r.unwatch = context.AfterFunc(r.ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	_ = conn.SetDeadline(time.Now().Add(readBatchTimeout))
	first, last, err := conn.ReadOffsets()
	if err != nil {
		r.hangUp()
		return fmt.Errorf("read the offsets of %s partition %d: %w", r.topic, r.id, err)
	}
	switch {
	case r.offset == kafka.FirstOffset, r.offset >= 0 && r.offset < first:
		r.offset = first
	case r.offset == kafka.LastOffset:
		r.offset = last
	case r.offset > last:
		r.hangUp()
		return fmt.Errorf("read %s partition %d at offset %d, past its end %d: %w", r.topic, r.id, r.offset, last, kafka.OffsetOutOfRange)
	}
	_, _ = conn.Seek(r.offset, kafka.SeekAbsolute|kafka.SeekDontCheck) // cannot fail without the check
	_ = conn.SetDeadline(time.Time{})
	return nil
}

// hangUp closes the connection, if there is one.
func (r *partitionReader) hangUp() {
	if r.conn == nil {
		return
	}
	r.unwatch()
	_ = r.conn.Close() // closing: nothing to do about its error
	r.conn = nil
}

// close ends the session's reading.
func (r *partitionReader) close() {
	if r.batch != nil {
		_ = r.batch.Close()
		r.batch = nil
	}
	r.hangUp()
}
