package demo

import (
	"bytes"
	"math"
	"reflect"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
)

// TestStructuredTwins: every message of a stream in structured mode decodes
// to the same event as its binary twin.
func TestStructuredTwins(t *testing.T) {
	s, err := New(500, 20, 0.2, 3)
	if err != nil {
		t.Fatal(err)
	}
	twins, err := Mixed(s.Valid, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range s.Valid {
		tw := twins[i]
		if Header(tw, consumer.HeaderContentType) != consumer.StructuredContentType || len(tw.Headers) != 1 {
			t.Fatalf("message %d: headers %v, want only content-type %s", i, tw.Headers, consumer.StructuredContentType)
		}
		want, err := consumer.Decode(&m)
		if err != nil {
			t.Fatalf("binary message %d: %v", i, err)
		}
		got, err := consumer.Decode(&tw)
		if err != nil {
			t.Fatalf("structured twin %d: %v\n%s", i, err, tw.Value)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("message %d decodes to\n%+v\nin structured mode, to\n%+v\nin binary mode", i, got, want)
		}
	}
}

// TestMixed: a share of the events goes structured, chosen by id, so that a
// duplicate is in its original's mode.
func TestMixed(t *testing.T) {
	s, err := New(2000, 20, 0.3, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, share := range []float64{0, 0.25, 0.5, 1} {
		mixed, err := Mixed(s.Valid, share)
		if err != nil {
			t.Fatal(err)
		}
		structured := 0
		mode := map[string]bool{}
		for i, m := range mixed {
			isStructured := Header(m, consumer.HeaderContentType) == consumer.StructuredContentType
			if !isStructured && !sameMessage(m, s.Valid[i]) {
				t.Fatalf("share %v: binary message %d changed", share, i)
			}
			ev, err := consumer.Decode(&m)
			if err != nil {
				t.Fatalf("share %v: message %d: %v", share, i, err)
			}
			if was, ok := mode[ev.ID]; ok && was != isStructured {
				t.Fatalf("share %v: the copies of %s are in two modes", share, ev.ID)
			}
			mode[ev.ID] = isStructured
			if isStructured {
				structured++
			}
		}
		got := float64(structured) / float64(len(mixed))
		if got < share-0.05 || got > share+0.05 {
			t.Errorf("share %v: %d of %d messages structured", share, structured, len(mixed))
		}
	}
	for _, bad := range []float64{-0.1, 1.01, math.NaN()} {
		if _, err := Mixed(s.Valid, bad); err == nil {
			t.Errorf("Mixed accepted share %v", bad)
		}
	}
}

func TestStructuredRefusesWhatItCannotCarry(t *testing.T) {
	ext := Event("e1", "acct-1", "payment.captured", `{"a":1}`)
	ext.Headers = append(ext.Headers, kafka.Header{Key: "ce_traceparent", Value: []byte("00-x")})
	text := Event("e2", "acct-1", "payment.captured", "not json")
	for _, m := range []kafka.Message{ext, text} {
		if _, err := Structured(m); err == nil {
			t.Errorf("Structured accepted %s", Header(m, consumer.HeaderID))
		}
	}
}

func sameMessage(a, b kafka.Message) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && reflect.DeepEqual(a.Headers, b.Headers)
}
