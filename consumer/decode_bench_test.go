package consumer_test

import (
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/internal/demo"
)

// BenchmarkDecode decodes the ledger event that fleet dev and fleet bench
// publish, in binary mode and as its structured-mode twin.
func BenchmarkDecode(b *testing.B) {
	s, err := demo.New(1, 1, 0, 1)
	if err != nil {
		b.Fatal(err)
	}
	binary := s.Valid[0]
	structured, err := demo.Structured(binary)
	if err != nil {
		b.Fatal(err)
	}
	for _, bm := range []struct {
		name string
		msg  kafka.Message
	}{{"binary", binary}, {"structured", structured}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := consumer.Decode(&bm.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
