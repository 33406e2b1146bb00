package demo

import (
	"bytes"
	"testing"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/handlers/ledger"
)

func TestNew(t *testing.T) {
	s, err := New(1000, 20, 0.3, 7)
	if err != nil {
		t.Fatal(err)
	}
	if s.Unique != 1000 || len(s.Valid) != s.Unique+s.Duplicates {
		t.Fatalf("unique %d, duplicates %d, valid %d", s.Unique, s.Duplicates, len(s.Valid))
	}
	if s.Duplicates < 200 || s.Duplicates > 400 {
		t.Errorf("duplicates %d of 1000 at share 0.3", s.Duplicates)
	}
	if len(s.Messages) != len(s.Valid)+len(s.Poison) || len(s.Poison) != 5 {
		t.Fatalf("messages %d = valid %d + poison %d?", len(s.Messages), len(s.Valid), len(s.Poison))
	}

	// Every id is published once, or twice with the same key and payload.
	seen := map[string]int{}
	payload := map[string][]byte{}
	var sum int64
	for _, m := range s.Valid {
		id := Header(m, consumer.HeaderID)
		seen[id]++
		if p, ok := payload[id]; ok && !bytes.Equal(p, m.Value) {
			t.Fatalf("duplicate %s has another payload", id)
		}
		payload[id] = m.Value
		p, err := ledger.Decode(m.Value)
		if err != nil {
			t.Fatalf("valid event %s: %v", id, err)
		}
		if string(m.Key) != p.Account {
			t.Fatalf("event %s keyed %q, account %q", id, m.Key, p.Account)
		}
	}
	twice := 0
	for id, n := range seen {
		switch n {
		case 1:
		case 2:
			twice++
		default:
			t.Fatalf("id %s published %d times", id, n)
		}
	}
	if len(seen) != s.Unique || twice != s.Duplicates {
		t.Fatalf("%d ids, %d twice; want %d, %d", len(seen), twice, s.Unique, s.Duplicates)
	}
	for _, w := range s.Want {
		sum += w
	}
	if len(s.Want) == 0 || sum == 0 {
		t.Fatalf("expected balances %v", s.Want)
	}

	// The poison: one of each kind, and the conflict reuses a valid id.
	kinds := map[string]int{}
	for _, k := range s.Poison {
		kinds[k]++
	}
	want := map[string]int{consumer.ReasonDecode: 2, consumer.ReasonUnknownType: 1, consumer.ReasonPermanent: 1, consumer.ReasonConflict: 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("poison of kind %s: %d, want %d", k, kinds[k], n)
		}
	}
	last := s.Messages[len(s.Messages)-1]
	if id := Header(last, consumer.HeaderID); seen[id] == 0 || bytes.Equal(payload[id], last.Value) {
		t.Errorf("the conflict %s does not reuse a valid id with another payload", id)
	}
}

func TestNewIsDeterministicAndRunScoped(t *testing.T) {
	a, _ := New(50, 5, 0.5, 1)
	b, _ := New(50, 5, 0.5, 1)
	c, _ := New(50, 5, 0.5, 2)
	for i := range a.Messages {
		if !bytes.Equal(a.Messages[i].Value, b.Messages[i].Value) || Header(a.Messages[i], consumer.HeaderID) != Header(b.Messages[i], consumer.HeaderID) {
			t.Fatalf("message %d differs between two streams of one seed", i)
		}
	}
	for acct := range a.Want {
		if _, ok := c.Want[acct]; ok {
			t.Fatalf("account %s appears in streams of two seeds", acct)
		}
	}
}

func TestNewRejectsBadArguments(t *testing.T) {
	for _, tt := range []struct {
		events, accounts int
		share            float64
	}{{0, 1, 0}, {1, 0, 0}, {1, 1, -0.1}, {1, 1, 1.5}} {
		if _, err := New(tt.events, tt.accounts, tt.share, 1); err == nil {
			t.Errorf("New(%d, %d, %v) accepted", tt.events, tt.accounts, tt.share)
		}
	}
}

// TestNewWithZipf: a Zipf stream puts most events on a few hot accounts,
// a uniform one spreads them; both stay valid streams with their balances.
func TestNewWithZipf(t *testing.T) {
	const events, accounts = 20000, 10000
	share := func(s *Stream) float64 {
		counts := map[string]int{}
		for _, m := range s.Valid {
			counts[string(m.Key)]++
		}
		return float64(counts[s.Accounts[0]]) / float64(len(s.Valid))
	}
	zipf, err := NewWith(Options{Events: events, Accounts: accounts, Seed: 3, Zipf: 1.1})
	if err != nil {
		t.Fatal(err)
	}
	uniform, err := NewWith(Options{Events: events, Accounts: accounts, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := share(zipf); got < 0.05 {
		t.Errorf("zipf: hottest account has %.3f of the events, want at least 0.05", got)
	}
	if got := share(uniform); got > 0.01 {
		t.Errorf("uniform: first account has %.3f of the events, want at most 0.01", got)
	}
	if zipf.Unique != events || len(zipf.Want) == 0 || len(zipf.Want) >= accounts {
		t.Errorf("zipf: %d unique events over %d accounts with a balance", zipf.Unique, len(zipf.Want))
	}
	for _, zipfS := range []float64{1, 0.5, -2} {
		if _, err := NewWith(Options{Events: 1, Accounts: 1, Zipf: zipfS}); err == nil {
			t.Errorf("zipf %v: accepted", zipfS)
		}
	}
}

// TestNewMatchesNewWith: New is NewWith with uniform accounts.
func TestNewMatchesNewWith(t *testing.T) {
	a, err := New(500, 30, 0.2, 11)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewWith(Options{Events: 500, Accounts: 30, DupShare: 0.2, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Valid) != len(b.Valid) {
		t.Fatalf("valid %d and %d", len(a.Valid), len(b.Valid))
	}
	for i := range a.Valid {
		if !bytes.Equal(a.Valid[i].Key, b.Valid[i].Key) || !bytes.Equal(a.Valid[i].Value, b.Valid[i].Value) {
			t.Fatalf("message %d differs", i)
		}
	}
}
