// Package demo generates the ledger event stream of `fleet dev` and
// `fleet bench`: CloudEvents 1.0 in Kafka binary mode, keyed by account, with
// duplicates (the same id and payload published again) and poison messages,
// together with what a correct run must produce from it.
//
// A Stream is plain data: safe to read from several goroutines, not to
// modify.
package demo

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers/ledger"
)

// Source is the ce_source of every demo event.
const Source = "demo-shop"

// Stream is a generated demo stream.
type Stream struct {
	// Run tags the ids and accounts of this stream, so that streams generated
	// with different seeds never share an idempotency record or a balance,
	// even in one Redis.
	Run string
	// Messages is everything to publish, in order: the events with some
	// duplicates right behind their original (in flight together), the other
	// duplicates, then the poison messages.
	Messages []kafka.Message
	// Valid is Messages without the poison: the unique events and their
	// duplicates, in the same order.
	Valid []kafka.Message
	// Unique and Duplicates count the valid messages: Unique + Duplicates ==
	// len(Valid).
	Unique, Duplicates int
	// Poison holds, for each poison message, the dead-letter kind
	// (fleet-error-kind) it must get.
	Poison []string
	// Accounts are the accounts the events spread over.
	Accounts []string
	// Want is every account's balance in cents once each unique event has
	// been applied exactly once, computed by decoding the published payloads.
	Want map[string]int64
}

// New generates a stream of events unique ledger events over accounts
// accounts, of which a share dupShare (0 to 1) is published twice. The same
// arguments give the same stream, except for ce_time.
func New(events, accounts int, dupShare float64, seed uint64) (*Stream, error) {
	return NewWith(Options{Events: events, Accounts: accounts, DupShare: dupShare, Seed: seed})
}

// Options are the arguments of NewWith.
type Options struct {
	// Events unique events over Accounts accounts, of which a share
	// DupShare (0 to 1) is published twice; Seed makes the stream.
	Events, Accounts int
	DupShare         float64
	Seed             uint64
	// Zipf, when above 1, picks each event's account from a Zipf
	// distribution of that exponent (math/rand/v2's NewZipf): the first
	// accounts are hot, the 1,000th gets about 1,000^-Zipf of the first's
	// events. Zero picks accounts uniformly, as New does.
	Zipf float64
}

// NewWith generates a stream as New does, with the options of o. The same
// options give the same stream, except for ce_time.
func NewWith(o Options) (*Stream, error) {
	events, accounts, dupShare, seed := o.Events, o.Accounts, o.DupShare, o.Seed
	if events < 1 || accounts < 1 || dupShare < 0 || dupShare > 1 || (o.Zipf != 0 && o.Zipf <= 1) {
		return nil, fmt.Errorf("demo stream: %d events, %d accounts, duplicate share %v, zipf %v: need at least one event and account, a share in [0, 1] and a zipf exponent of 0 or above 1",
			events, accounts, dupShare, o.Zipf)
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) // #nosec G404 -- a reproducible demo stream, not a secret
	pick := func() int { return r.IntN(accounts) }
	if o.Zipf != 0 {
		z := rand.NewZipf(r, o.Zipf, 1, uint64(accounts-1)) // #nosec G115 -- accounts is at least 1
		pick = func() int { return int(z.Uint64()) }        // #nosec G115 -- at most accounts-1
	}
	s := &Stream{Run: fmt.Sprintf("%08x", (seed^seed>>32)&0xffffffff), Unique: events}
	for i := range accounts {
		s.Accounts = append(s.Accounts, fmt.Sprintf("acct-%s-%04d", s.Run, i))
	}
	var unique, late []kafka.Message
	for i := range events {
		acct := s.Accounts[pick()]
		typ := ledger.TypeCaptured
		if r.IntN(5) == 0 {
			typ = ledger.TypeRefunded
		}
		m := Event(fmt.Sprintf("demo-%s-%06d", s.Run, i), acct, typ, payment(acct, int64(100+r.IntN(99_900))))
		unique = append(unique, m)
		s.Valid = append(s.Valid, m)
		if r.Float64() < dupShare {
			s.Duplicates++
			if r.IntN(2) == 0 {
				s.Valid = append(s.Valid, m)
			} else {
				late = append(late, m)
			}
		}
	}
	s.Valid = append(s.Valid, late...)
	want, err := balances(unique)
	if err != nil {
		return nil, err
	}
	s.Want = want

	acct := s.Accounts[0]
	first := unique[0]
	poison := []struct {
		m    kafka.Message
		kind string
	}{
		// A value that is no CloudEvent and has no ce_ headers.
		{kafka.Message{Key: []byte(acct), Value: []byte("this is not a cloudevent")}, consumer.ReasonDecode},
		// A CloudEvent without its id.
		{Event("", acct, ledger.TypeCaptured, payment(acct, 1)), consumer.ReasonDecode},
		// A type no handler is registered for.
		{Event("demo-"+s.Run+"-unknown", acct, "payment.voided", payment(acct, 1)), consumer.ReasonUnknownType},
		// A payment the ledger refuses.
		{Event("demo-"+s.Run+"-negative", acct, ledger.TypeCaptured, payment(acct, -500)), consumer.ReasonPermanent},
		// The first event's id again, with another payload; it comes after
		// the original on the same key, so it finds it done.
		{Event(Header(first, consumer.HeaderID), string(first.Key), ledger.TypeCaptured, payment(string(first.Key), 1)), consumer.ReasonConflict},
	}
	s.Messages = append(s.Messages, s.Valid...)
	for _, p := range poison {
		s.Messages = append(s.Messages, p.m)
		s.Poison = append(s.Poison, p.kind)
	}
	return s, nil
}

// balances applies each event once through the ledger's own decoding.
func balances(events []kafka.Message) (map[string]int64, error) {
	want := map[string]int64{}
	for _, m := range events {
		p, err := ledger.Decode(m.Value)
		if err != nil {
			return nil, fmt.Errorf("demo event %s: %w", Header(m, consumer.HeaderID), err)
		}
		d, err := ledger.Delta(Header(m, consumer.HeaderType), p)
		if err != nil {
			return nil, fmt.Errorf("demo event %s: %w", Header(m, consumer.HeaderID), err)
		}
		want[p.Account] += d
	}
	return want, nil
}

func payment(account string, cents int64) string {
	return fmt.Sprintf(`{"account":%q,"amount_cents":%d}`, account, cents)
}

// Event is a binary-mode CloudEvent keyed by account, with source Source;
// an empty id leaves ce_id out.
func Event(id, account, eventType, data string) kafka.Message {
	hs := []kafka.Header{
		{Key: consumer.HeaderSpecVersion, Value: []byte("1.0")},
		{Key: consumer.HeaderSource, Value: []byte(Source)},
		{Key: consumer.HeaderType, Value: []byte(eventType)},
		{Key: consumer.HeaderTime, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		{Key: consumer.HeaderContentType, Value: []byte("application/json")},
	}
	if id != "" {
		hs = append(hs, kafka.Header{Key: consumer.HeaderID, Value: []byte(id)})
	}
	return kafka.Message{Key: []byte(account), Value: []byte(data), Headers: hs}
}

// Header is the value of m's first header named key, or "".
func Header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
