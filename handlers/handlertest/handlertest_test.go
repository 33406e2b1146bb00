package handlertest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/handlertest"
)

// TestKit checks the kit itself: each key's events run in order, each event
// once, duplicates are skipped, a reused id with another payload is a
// conflict, and effects of a run are applied all or none.
func TestKit(t *testing.T) {
	var seen []string
	r := handlers.NewRouter()
	err := r.Register("t", handlers.HandlerFunc(func(_ context.Context, ev handlers.Event, tx *handlers.Tx) error {
		seen = append(seen, ev.Key+"/"+ev.ID)
		tx.HIncrBy("h:{"+ev.Key+"}", "n", 1)
		if string(ev.Data) == "bad" {
			tx.IncrBy("h:{"+ev.Key+"}", 1) // a string effect on a hash: refused, with the HINCRBY before it
		}
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	k := handlertest.New(t, r, 3)
	var evs []handlers.Event
	for _, key := range []string{"a", "b", "c"} {
		for _, id := range []string{"1", "2", "3", "4"} {
			evs = append(evs, handlers.Event{ID: key + id, Source: "s", Type: "t", Key: key, Data: []byte("ok")})
		}
	}
	k.Deliver(evs...)
	k.AssertAppliedOnce(evs...)
	if len(seen) != len(evs) || k.Duplicates() != len(evs) {
		t.Fatalf("%d runs and %d duplicates for %d events delivered twice", len(seen), k.Duplicates(), len(evs))
	}
	last := map[string]string{}
	for _, s := range seen {
		key, id := s[:1], s[2:]
		if id <= last[key] {
			t.Fatalf("key %s ran %s after %s: %v", key, id, last[key], seen)
		}
		last[key] = id
	}
	k.AssertState(handlertest.Expect{Key: "h:{a}", Field: "n", Value: "4"})

	reused := handlers.Event{ID: "a1", Source: "s", Type: "t", Key: "a", Data: []byte("other")}
	k.DeliverInOrder(reused)
	k.AssertState(handlertest.Expect{Key: "h:{a}", Field: "n", Value: "4"})

	bad := handlers.Event{ID: "x", Source: "s", Type: "t", Key: "a", Data: []byte("bad")}
	k.DeliverInOrder(bad)
	if k.Err(bad) == nil {
		t.Fatal("an effect that cannot apply was accepted")
	}
	k.AssertState(handlertest.Expect{Key: "h:{a}", Field: "n", Value: "4"}) // all or none
}

// TestKitIdentity checks that the kit names events as the fleet does:
// separators in a source or id never make two events one, a copy under
// another message key can touch only its own key's state, and a JSON
// payload sent again in another form is the same payload.
func TestKitIdentity(t *testing.T) {
	r := handlers.NewRouter()
	err := r.Register("t", handlers.HandlerFunc(func(_ context.Context, ev handlers.Event, tx *handlers.Tx) error {
		tx.IncrBy("n:{acct}", 1) // bound only to events keyed acct
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	k := handlertest.New(t, r, 5)
	json := func(source, id, key, data string) handlers.Event {
		return handlers.Event{ID: id, Source: source, Type: "t", Key: key, DataContentType: "application/json", Data: []byte(data)}
	}
	first := json("api/eu", "7", "acct", `{"a":1,"b":2}`)
	other := json("api", "eu/7", "acct", `{"a":1,"b":2}`)
	again := json("api/eu", "7", "acct", `{ "b": 2, "a": 1.0 }`)
	elsewhere := json("api/eu", "7", "ACCT", `{"a":1,"b":2}`)
	k.DeliverInOrder(first, other, again, elsewhere)
	k.AssertState(handlertest.Expect{Key: "n:{acct}", Value: "2"})
	if k.Duplicates() != 1 {
		t.Errorf("%d duplicates, want 1: the re-serialised payload", k.Duplicates())
	}
	if err := k.Err(elsewhere); !errors.Is(err, handlertest.ErrUnboundEffect) {
		t.Errorf("a copy under another key: %v, want ErrUnboundEffect", err)
	}
}

// TestKitEffectsAsRedis checks that effects mean in the kit what they mean
// in Redis: SET replaces a hash, an emptied hash is gone, integers follow
// Redis's syntax, fleet's own keys are refused, and times to live are kept.
func TestKitEffectsAsRedis(t *testing.T) {
	r := handlers.NewRouter()
	runs := map[string]func(tx *handlers.Tx){
		"hash":  func(tx *handlers.Tx) { tx.HSet("h:{a}", "f", "1"); tx.Set("s:{a}", "+5") },
		"over":  func(tx *handlers.Tx) { tx.Set("h:{a}", "7"); tx.Expire("h:{a}", time.Hour); tx.HDel("e:{a}", "f") },
		"plus":  func(tx *handlers.Tx) { tx.IncrBy("h:{a}", 1); tx.IncrBy("s:{a}", 1) },
		"own":   func(tx *handlers.Tx) { tx.IncrBy("fleet:{a}", 1) },
		"after": func(tx *handlers.Tx) { tx.IncrBy("e:{a}", 1) },
		"keep":  func(tx *handlers.Tx) { tx.IncrBy("h:{a}", 1) },
	}
	err := r.Register("t", handlers.HandlerFunc(func(_ context.Context, ev handlers.Event, tx *handlers.Tx) error {
		runs[ev.ID](tx)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	k := handlertest.New(t, r, 1)
	ev := func(id string) handlers.Event {
		return handlers.Event{ID: id, Source: "s", Type: "t", Key: "a", Data: []byte(id)}
	}
	evs := []handlers.Event{ev("hash"), ev("over"), ev("plus"), ev("own"), ev("after"), ev("keep")}
	k.DeliverInOrder(evs...)
	want := map[string]error{"hash": nil, "over": nil, "plus": handlertest.ErrInvalidEffect,
		"own": handlertest.ErrUnboundEffect, "after": nil, "keep": nil}
	for _, e := range evs {
		if err := k.Err(e); !errors.Is(err, want[e.ID]) || (want[e.ID] == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", e.ID, err, want[e.ID])
		}
	}
	if err := k.Err(ev("plus")); err == nil || !strings.Contains(err.Error(), "effect 1:") {
		t.Errorf("plus: %v, want the second effect named", err)
	}
	st := k.State()
	k.AssertState(handlertest.Expect{Key: "h:{a}", Value: "8"}, handlertest.Expect{Key: "s:{a}", Value: "+5"},
		handlertest.Expect{Key: "e:{a}", Value: "1"})
	if ttl, ok := st.TTL("h:{a}"); !ok || ttl != time.Hour {
		t.Errorf("TTL of h:{a} %v, %v: want 1h, kept by INCRBY, and time stands still", ttl, ok)
	}
	if got := strings.Join(st.Keys(), " "); got != "e:{a} h:{a} s:{a}" || st.Type("h:{a}") != "string" {
		t.Errorf("keys %q, h:{a} a %s", got, st.Type("h:{a}"))
	}
}
