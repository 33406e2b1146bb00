package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/internal/console"
)

// DeadLetters reads the dead-letter topics of the group's sources whole and
// returns the page of those f selects, newest first, and how many it
// selects in all.
func (b *consoleBackend) DeadLetters(ctx context.Context, f console.Filter) ([]console.DeadLetter, int, error) {
	letters, err := b.collect(ctx, f, true)
	if err != nil {
		return nil, 0, err
	}
	newestFirst(letters)
	lo, hi := page(len(letters), f.Skip, f.Limit)
	out := make([]console.DeadLetter, 0, hi-lo)
	for i := lo; i < hi; i++ {
		out = append(out, b.letterView(&letters[i]))
	}
	return out, len(letters), nil
}

// collect reads the dead letters f selects from the dead-letter topic of
// every source of the group, in topic, partition and offset order; with
// listOnly, only what a list shows of each (deadLetter.lighten). Reads of
// whole topics take turns: at most two run at once.
func (b *consoleBackend) collect(ctx context.Context, f console.Filter, listOnly bool) ([]deadLetter, error) {
	select {
	case b.reads <- struct{}{}:
		defer func() { <-b.reads }()
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the dead-letter reads before this one: %w", ctx.Err())
	}
	srcs, err := b.sources(ctx)
	if err != nil {
		return nil, err
	}
	var out []deadLetter
	for _, src := range srcs {
		sel := b.filter(src, f)
		sel.listOnly = listOnly
		letters, err := sel.collect(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, letters...)
	}
	return out, nil
}

// filter is the dlqFilter that selects what f does in src's dead letters.
func (b *consoleBackend) filter(src string, f console.Filter) dlqFilter {
	return dlqFilter{Brokers: b.cfg.Brokers, Topic: src, Type: f.Type, Key: f.Key, Source: f.Source, ID: f.ID,
		Group: f.Group, Reason: f.Reason, since: f.Since, until: f.Until, dialer: b.cfg.Dialer}
}

// newestFirst sorts dead letters by the time they were written, newest
// first, then by offset, highest first (then by topic and partition, for a
// stable order).
func newestFirst(letters []deadLetter) {
	slices.SortStableFunc(letters, func(a, b deadLetter) int {
		return cmp.Or(b.Msg.Time.Compare(a.Msg.Time), cmp.Compare(b.Msg.Offset, a.Msg.Offset),
			cmp.Compare(a.Msg.Topic, b.Msg.Topic), cmp.Compare(a.Msg.Partition, b.Msg.Partition))
	})
}

// page is the range [lo, hi) of n items left after skipping skip, at most
// limit of them (no limit when limit <= 0).
func page(n, skip, limit int) (lo, hi int) {
	lo = min(max(skip, 0), n)
	hi = n
	if limit > 0 {
		hi = min(lo+limit, n)
	}
	return lo, hi
}

// DeadLetter reads one dead letter of the group's dead-letter topics whole,
// with its event's idempotency record.
func (b *consoleBackend) DeadLetter(ctx context.Context, ref console.LetterRef) (console.DeadLetter, error) {
	d, err := b.letterAt(ctx, ref)
	if err != nil {
		return console.DeadLetter{}, err
	}
	v := b.letterView(&d)
	for _, h := range d.Msg.Headers {
		v.Headers = append(v.Headers, console.Header{Key: h.Key, Value: h.Value})
	}
	v.Value = d.Msg.Value
	if v.RecordRef == nil {
		return v, nil
	}
	rec, err := b.store.Inspect(ctx, recordKey(*v.RecordRef))
	switch {
	case errors.Is(err, dedupe.ErrNotFound):
	case err != nil:
		return console.DeadLetter{}, b.redisFailed(err)
	default:
		r := recordView(rec)
		v.Record = &r
	}
	return v, nil
}

// letterAt reads the dead letter at ref: console.ErrNotFound when ref is
// not in one of the group's dead-letter topics or there is none there.
func (b *consoleBackend) letterAt(ctx context.Context, ref console.LetterRef) (deadLetter, error) {
	own, err := b.ownDeadLetterTopic(ctx, ref.Topic)
	if err != nil {
		return deadLetter{}, err
	}
	if !own || ref.Partition < 0 || ref.Offset < 0 {
		return deadLetter{}, console.ErrNotFound
	}
	m, ok, err := fetchAt(ctx, b.client, ref.Topic, ref.Partition, ref.Offset)
	switch {
	case errors.Is(err, kafka.UnknownTopicOrPartition):
		return deadLetter{}, console.ErrNotFound
	case err != nil:
		return deadLetter{}, err
	case !ok:
		return deadLetter{}, console.ErrNotFound
	}
	return newDeadLetter(m), nil
}

// letterView is what the list shows of a dead letter, and the reference of
// its event's record: under the group the dead letter names, else the
// backend's.
func (b *consoleBackend) letterView(d *deadLetter) console.DeadLetter {
	v := console.DeadLetter{
		Ref:     console.LetterRef{Topic: d.Msg.Topic, Partition: d.Msg.Partition, Offset: d.Msg.Offset},
		Written: d.Msg.Time, Key: d.Msg.Key, Reason: d.Reason, Error: d.Error, Group: d.Group, Attempts: d.Attempts,
	}
	if d.DecodeErr != nil {
		return v
	}
	v.Type, v.Source, v.ID = d.Event.Type, d.Event.Source, d.Event.ID
	group := cmp.Or(d.Group, b.cfg.Group)
	v.RecordRef = &console.RecordRef{Group: group, Key: d.Event.Key, Source: d.Event.Source, ID: d.Event.ID}
	return v
}
