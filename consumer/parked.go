package consumer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/segmentio/kafka-go"
)

// A parked event is queued in its gate as the message to write to
// <topic>.parked when its turn comes: its topic, partition, key, value and
// headers, each length-prefixed (unsigned varints) after a version byte.
// A length is stored plus one, so that a missing key or value (0) stays
// apart from an empty one.

const parkedVersion = 1

var errParkedItem = errors.New("not a parked message")

// parkedMessage is the message that releases a parked event: its source
// message, with the failure headers a retry message carries (tier 0) and
// the parked topic of its source.
func parkedMessage(m *kafka.Message, r route, f failure) kafka.Message {
	o := originOf(m, r)
	o.tier = 0
	return failureMessage(m, ParkedTopic(o.topic), o, f, nil)
}

// encodeParked encodes m's topic, partition, key, value and headers.
func encodeParked(m *kafka.Message) []byte {
	n := 1 + 5*(4+2*len(m.Headers)) + len(m.Topic) + len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	b := make([]byte, 0, n)
	b = append(b, parkedVersion)
	b = appendBytes(b, []byte(m.Topic))
	b = binary.AppendVarint(b, int64(m.Partition))
	b = appendBytes(b, m.Key)
	b = appendBytes(b, m.Value)
	b = binary.AppendUvarint(b, uint64(len(m.Headers)))
	for _, h := range m.Headers {
		b = appendBytes(b, []byte(h.Key))
		b = appendBytes(b, h.Value)
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	if v == nil {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

// decodeParked is the inverse of encodeParked.
func decodeParked(b []byte) (kafka.Message, error) {
	var m kafka.Message
	if len(b) == 0 || b[0] != parkedVersion {
		return m, fmt.Errorf("%w: unknown version", errParkedItem)
	}
	r := parkedReader{b: b[1:]}
	m.Topic = r.str()
	m.Partition = r.partition()
	m.Key = r.bytes()
	m.Value = r.bytes()
	if n := r.uvarint(uint64(len(r.b))); n > 0 {
		m.Headers = make([]kafka.Header, n)
		for i := range m.Headers {
			m.Headers[i] = kafka.Header{Key: r.str(), Value: r.bytes()}
		}
	}
	if r.err != nil || len(r.b) != 0 {
		return kafka.Message{}, fmt.Errorf("%w: malformed", errParkedItem)
	}
	return m, nil
}

// parkedReader reads what encodeParked wrote; its first error sticks.
type parkedReader struct {
	b   []byte
	err error
}

// uvarint reads a varint no greater than most, in its shortest form (so
// that one message has one encoding).
func (r *parkedReader) uvarint(most uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > most || n != len(binary.AppendUvarint(nil, v)) { // canonical only
		r.err = errParkedItem
		return 0
	}
	r.b = r.b[n:]
	return v
}

// partition reads a partition number: 0 to 2^31-1.
func (r *parkedReader) partition() int {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 || v < 0 || v > math.MaxInt32 || n != len(binary.AppendVarint(nil, v)) {
		r.err = errParkedItem
		return 0
	}
	r.b = r.b[n:]
	return int(v)
}

// str reads a string, which is never missing.
func (r *parkedReader) str() string {
	v := r.bytes()
	if v == nil {
		r.err = errParkedItem
	}
	return string(v)
}

// bytes reads a length-prefixed value: nil when it was missing.
func (r *parkedReader) bytes() []byte {
	n := r.uvarint(uint64(len(r.b)) + 1)
	if n == 0 || r.err != nil {
		return nil
	}
	if n-1 > uint64(len(r.b)) { // the length counted its own varint
		r.err = errParkedItem
		return nil
	}
	v := r.b[: n-1 : n-1]
	r.b = r.b[n-1:]
	return v
}
