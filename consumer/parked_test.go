package consumer

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/segmentio/kafka-go"
)

func TestParkedRoundTrip(t *testing.T) {
	for _, m := range []kafka.Message{
		{Topic: "payments.parked", Partition: 3, Key: []byte("acct-1"), Value: []byte(`{"a":1}`),
			Headers: []kafka.Header{{Key: "ce_id", Value: []byte("x")}, {Key: "empty", Value: []byte{}}, {Key: "nil"}}},
		{Topic: "t", Partition: 0}, // no key, no value: missing, not empty
		{Topic: "t", Partition: 1<<31 - 1, Key: []byte{}, Value: []byte{}}, // empty, not missing
		{Topic: "", Partition: 7, Value: bytes.Repeat([]byte{0, '\n', 0xff}, 1000)},
	} {
		got, err := decodeParked(encodeParked(&m))
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, m)
		}
	}
}

func TestParkedRefusesWhatItDidNotWrite(t *testing.T) {
	good := encodeParked(&kafka.Message{Topic: "t", Partition: 2, Key: []byte("k"), Value: []byte("v"),
		Headers: []kafka.Header{{Key: "h", Value: []byte("x")}}})
	for name, b := range map[string][]byte{
		"empty":               nil,
		"another version":     append([]byte{9}, good[1:]...),
		"cut short":           good[:len(good)-1],
		"trailing bytes":      append(append([]byte(nil), good...), 0),
		"negative partition":  append([]byte{parkedVersion, 2, 't'}, 1), // varint -1
		"length past the end": {parkedVersion, 0x7f},
	} {
		if _, err := decodeParked(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// FuzzParked: decoding never panics, and what decodes encodes back to the
// same bytes.
func FuzzParked(f *testing.F) {
	f.Add(encodeParked(&kafka.Message{Topic: "t", Partition: 1, Key: []byte("k"), Headers: []kafka.Header{{Key: "a", Value: []byte("b")}}}))
	f.Add([]byte{parkedVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeParked(b)
		if err != nil {
			return
		}
		if again := encodeParked(&m); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", b, m, again)
		}
	})
}
