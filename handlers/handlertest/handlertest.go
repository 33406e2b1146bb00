// Package handlertest runs handlers the way the fleet does, in memory, for
// the tests of handler authors: every event goes through the idempotency
// protocol (a claim, the handler on a fresh Tx, its staged effects applied
// atomically with the completion, duplicates acknowledged without a run,
// an id reused with another payload refused as a conflict), every event is
// delivered twice, and the events of different keys arrive shuffled while
// each key keeps its order, as on a Kafka partition. Then the test asserts
// that effects were applied once, and what the state holds.
//
// Effects mean here what they mean in the fleet: the kit applies them with
// package internal/effects, the one meaning of effects outside Redis, which
// dedupe.Memory uses too and a differential test holds to a real
// redis-server (see that package for why the kit does not run on
// dedupe.Memory itself). The kit refuses what the fleet refuses: an effect
// on a key a handler may not write (ErrUnboundEffect) and one that Redis
// refuses (ErrInvalidEffect), both of which the fleet dead-letters as
// invalid_effect.
//
// It needs no Redis and no Kafka, and imports neither.
package handlertest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/effects"
)

// MaxAttempts is how often a retryable failure is tried before the event
// counts as failed (dead-lettered, in the fleet).
const MaxAttempts = 3

// Kit is one in-memory fleet for one test.
type Kit struct {
	t       testing.TB
	handler handlers.Handler
	state   *State
	rand    *rand.Rand

	done    map[string]string // record (aggregate, identity) -> fingerprint
	applied map[string]int
	runs    map[string]int
	failed  map[string]error
	dups    int
	fence   int64
}

// New returns a kit running r's handlers, with an empty state. The seed
// fixes the shuffle, so that a failure can be replayed.
func New(t testing.TB, r *handlers.Router, seed uint64) *Kit {
	return &Kit{t: t, handler: handlers.Chain(r, handlers.Recover()), state: NewState(),
		rand: rand.New(rand.NewPCG(seed, seed^0x5bd1e995)), // #nosec G404 -- a test shuffle
		done: map[string]string{}, applied: map[string]int{}, runs: map[string]int{}, failed: map[string]error{}}
}

// State is what the handlers' effects wrote.
func (k *Kit) State() *State { return k.state }

// Deliver delivers every event twice: the first deliveries in an order that
// keeps each key's events in their given order and shuffles the keys, each
// duplicate somewhere after its original.
func (k *Kit) Deliver(events ...handlers.Event) {
	k.t.Helper()
	for _, ev := range k.order(events) {
		k.deliver(ev)
	}
}

// DeliverInOrder delivers the events once each, in the given order.
func (k *Kit) DeliverInOrder(events ...handlers.Event) {
	k.t.Helper()
	for _, ev := range events {
		k.deliver(ev)
	}
}

func (k *Kit) order(events []handlers.Event) []handlers.Event {
	// Per-key queues, drained in random interleaving.
	var keys []string
	queues := map[string][]handlers.Event{}
	for _, ev := range events {
		key := ev.Key
		if key == "" {
			key = "\x00" + ev.ID
		}
		if _, ok := queues[key]; !ok {
			keys = append(keys, key)
		}
		queues[key] = append(queues[key], ev)
	}
	firsts := make([]handlers.Event, 0, len(events))
	for len(keys) > 0 {
		i := k.rand.IntN(len(keys))
		q := queues[keys[i]]
		firsts = append(firsts, q[0])
		if len(q) == 1 {
			keys = append(keys[:i], keys[i+1:]...)
		} else {
			queues[keys[i]] = q[1:]
		}
	}
	// Each duplicate lands after its original.
	after := make([][]handlers.Event, len(firsts)+1)
	for i, ev := range firsts {
		j := i + 1 + k.rand.IntN(len(firsts)-i)
		after[j] = append(after[j], ev)
	}
	out := make([]handlers.Event, 0, 2*len(firsts))
	for i, ev := range firsts {
		out = append(out, after[i]...)
		out = append(out, ev)
	}
	return append(out, after[len(firsts)]...)
}

// Group is the consumer group the kit's identities belong to.
const Group = "handlertest"

// identity names an event as the fleet does: (group, source, id), whatever
// characters they contain.
func identity(ev handlers.Event) string { return handlers.IdempotencyKey(Group, ev.Source, ev.ID) }

// deliver runs one delivery through the protocol, as the fleet does: the
// record is the identity's within its aggregate (a copy under another
// message key has its own, and can touch only its own key's state), the
// first payload stands, effects on keys a handler may not write are
// refused (effects.CheckBound), and the effects of a run apply all or none.
func (k *Kit) deliver(ev handlers.Event) {
	id := identity(ev)
	record := ev.Aggregate() + "\x00" + id
	fp := handlers.Fingerprint(ev)
	if prev, ok := k.done[record]; ok {
		if prev == fp {
			k.dups++
			return
		}
		k.failed[id+"#conflict"] = fmt.Errorf("conflict: %s/%s reused with another payload", ev.Source, ev.ID)
		return
	}
	k.fence++
	var err error
	for attempt := 1; attempt <= MaxAttempts; attempt++ {
		tx := handlers.NewTx(id, k.fence, attempt)
		k.runs[id]++
		if err = k.handler.Handle(context.Background(), ev, tx); err == nil {
			if err = effects.CheckBound(ev.Aggregate(), tx.Ops()); err == nil {
				err = k.state.space.Apply(tx.Ops())
			}
			if err == nil {
				k.done[record] = fp
				k.applied[id]++
				delete(k.failed, id)
				return
			}
			break // an effect that cannot apply never will
		}
		if handlers.KindOf(err) != handlers.KindRetryable {
			break
		}
	}
	k.failed[id] = err
}

var (
	// ErrUnboundEffect is an effect on a key that a handler may not write:
	// not bound to the event's aggregate (handlers.BoundTo), or one of
	// fleet's own (fleet:…). The fleet dead-letters such an event as
	// invalid_effect.
	ErrUnboundEffect = effects.ErrUnbound
	// ErrInvalidEffect is an effect that Redis refuses (a string effect on
	// a hash, an increment of a value that is no integer or past the 64-bit
	// range …). The fleet dead-letters such an event as invalid_effect.
	ErrInvalidEffect = effects.ErrRefused
)

// Duplicates counts deliveries acknowledged without a run.
func (k *Kit) Duplicates() int { return k.dups }

// Runs counts the handler runs of an event (source and id), retries
// included.
func (k *Kit) Runs(ev handlers.Event) int { return k.runs[identity(ev)] }

// Err returns why an event failed (its last error: permanent, or retryable
// past MaxAttempts, or an effect that could not apply: ErrUnboundEffect or
// ErrInvalidEffect, with the effect's place in the run), or nil once it is
// done.
func (k *Kit) Err(ev handlers.Event) error { return k.failed[identity(ev)] }

// AssertAppliedOnce fails the test unless the effects of every given event
// that succeeded were applied exactly once, and every other event failed
// without effects.
func (k *Kit) AssertAppliedOnce(events ...handlers.Event) {
	k.t.Helper()
	for _, ev := range events {
		id := identity(ev)
		switch n := k.applied[id]; {
		case n > 1:
			k.t.Errorf("%s/%s: effects applied %d times", ev.Source, ev.ID, n)
		case n == 0 && k.failed[id] == nil:
			k.t.Errorf("%s/%s: neither applied nor failed", ev.Source, ev.ID)
		}
	}
}

// Expect is one value the state must hold: a string key (Field empty) or a
// hash field. Value "" means absent.
type Expect struct {
	Key, Field, Value string
}

// AssertState fails the test for every expectation the state does not meet.
func (k *Kit) AssertState(expects ...Expect) {
	k.t.Helper()
	for _, e := range expects {
		var got string
		if e.Field == "" {
			got, _ = k.state.space.Get(e.Key)
		} else {
			got, _ = k.state.space.HGet(e.Key, e.Field)
		}
		if got != e.Value {
			if e.Field == "" {
				k.t.Errorf("%s = %q, want %q", e.Key, got, e.Value)
			} else {
				k.t.Errorf("%s %s = %q, want %q", e.Key, e.Field, got, e.Value)
			}
		}
	}
}
