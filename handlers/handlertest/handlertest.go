// Package handlertest runs handlers the way the fleet does, in memory, for
// the tests of handler authors: every event goes through the idempotency
// protocol (a claim, the handler on a fresh Tx, its staged effects applied
// atomically with the completion, duplicates acknowledged without a run,
// an id reused with another payload refused as a conflict), every event is
// delivered twice, and the events of different keys arrive shuffled while
// each key keeps its order, as on a Kafka partition. Then the test asserts
// that effects were applied once, and what the state holds.
//
// It needs no Redis and no Kafka, and imports neither.
package handlertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/fleetworks/fleet/handlers"
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
// first payload stands, and effects on keys not bound to the aggregate
// (handlers.BoundTo) are refused.
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
			if err = bound(ev, tx.Ops()); err == nil {
				err = k.state.apply(tx.Ops())
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

// ErrUnboundEffect is an effect on a key that is not bound to the event's
// aggregate: the fleet dead-letters such an event as invalid_effect.
var ErrUnboundEffect = errors.New("effect on a key not bound to the event's aggregate")

func bound(ev handlers.Event, ops []handlers.Op) error {
	for _, op := range ops {
		if !handlers.BoundTo(op.Key, ev.Aggregate()) {
			return fmt.Errorf("%s %s: %w: give it the hash tag {%s}", op.Kind, op.Key, ErrUnboundEffect, ev.Aggregate())
		}
	}
	return nil
}

// Duplicates counts deliveries acknowledged without a run.
func (k *Kit) Duplicates() int { return k.dups }

// Runs counts the handler runs of an event (source and id), retries
// included.
func (k *Kit) Runs(ev handlers.Event) int { return k.runs[identity(ev)] }

// Err returns why an event failed (its last error: permanent, or retryable
// past MaxAttempts, or an effect that could not apply), or nil once it is
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
			got = k.state.strs[e.Key]
		} else {
			got = k.state.hashes[e.Key][e.Field]
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

// State is an in-memory Redis for effects: strings and hashes. It
// implements handlers.View. Time to live is recorded, not enforced.
type State struct {
	strs   map[string]string
	hashes map[string]map[string]string
	ttls   map[string]int64
}

// NewState returns an empty state.
func NewState() *State {
	return &State{strs: map[string]string{}, hashes: map[string]map[string]string{}, ttls: map[string]int64{}}
}

// Get returns the string at key.
func (s *State) Get(key string) string { return s.strs[key] }

// HGetAll implements handlers.View.
func (s *State) HGetAll(_ context.Context, key string) (map[string]string, error) {
	out := map[string]string{}
	for f, v := range s.hashes[key] {
		out[f] = v
	}
	return out, nil
}

// errWrongType is an effect on a key of another type, or an increment of a
// value that is no integer.
var errWrongType = errors.New("effect on a value of the wrong type")

// apply applies ops atomically: all or, on the first that cannot apply,
// none.
func (s *State) apply(ops []handlers.Op) error {
	next := &State{strs: map[string]string{}, hashes: map[string]map[string]string{}, ttls: map[string]int64{}}
	for k, v := range s.strs {
		next.strs[k] = v
	}
	for k, h := range s.hashes {
		next.hashes[k] = map[string]string{}
		for f, v := range h {
			next.hashes[k][f] = v
		}
	}
	for k, v := range s.ttls {
		next.ttls[k] = v
	}
	for _, op := range ops {
		if err := next.one(op); err != nil {
			return fmt.Errorf("%s %s: %w", op.Kind, op.Key, err)
		}
	}
	*s = *next
	return nil
}

func (s *State) one(op handlers.Op) error {
	_, isHash := s.hashes[op.Key]
	_, isStr := s.strs[op.Key]
	incr := func(v string, d int64) (string, error) {
		if v == "" {
			v = "0"
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || (d > 0 && n > n+d) || (d < 0 && n < n+d) {
			return "", errWrongType
		}
		return strconv.FormatInt(n+d, 10), nil
	}
	switch op.Kind {
	case handlers.OpIncrBy, handlers.OpSet:
		if isHash {
			return errWrongType
		}
		if op.Kind == handlers.OpSet {
			s.strs[op.Key] = op.Value
			return nil
		}
		v, err := incr(s.strs[op.Key], op.Delta)
		s.strs[op.Key] = v
		return err
	case handlers.OpHSet, handlers.OpHIncrBy, handlers.OpHDel:
		if isStr {
			return errWrongType
		}
		h := s.hashes[op.Key]
		if h == nil {
			h = map[string]string{}
			s.hashes[op.Key] = h
		}
		switch op.Kind {
		case handlers.OpHSet:
			h[op.Field] = op.Value
		case handlers.OpHDel:
			delete(h, op.Field)
		default:
			v, err := incr(h[op.Field], op.Delta)
			if err != nil {
				return err
			}
			h[op.Field] = v
		}
		return nil
	case handlers.OpDel:
		delete(s.strs, op.Key)
		delete(s.hashes, op.Key)
		return nil
	case handlers.OpExpire:
		s.ttls[op.Key] = op.TTL.Milliseconds()
		return nil
	}
	return fmt.Errorf("unknown effect %v", op.Kind)
}
