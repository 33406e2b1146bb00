package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/internal/console"
)

// Record looks up an event's idempotency record (fleet keys get); a ref
// without a group is the backend's group's.
func (b *consoleBackend) Record(ctx context.Context, ref console.RecordRef) (console.Record, error) {
	if err := checkRecordRef(ref); err != nil {
		return console.Record{}, err
	}
	rec, err := b.store.Inspect(ctx, recordKey(b.recordRef(ref)))
	switch {
	case errors.Is(err, dedupe.ErrNotFound):
		return console.Record{}, console.ErrNotFound
	case err != nil:
		return console.Record{}, b.redisFailed(err)
	}
	return recordView(rec), nil
}

// Forget deletes an event's idempotency record (fleet keys forget).
func (b *consoleBackend) Forget(ctx context.Context, ref console.RecordRef) (bool, error) {
	if err := checkRecordRef(ref); err != nil {
		return false, err
	}
	ok, err := b.store.Forget(ctx, recordKey(b.recordRef(ref)))
	if err != nil {
		return false, b.redisFailed(err)
	}
	return ok, nil
}

func (b *consoleBackend) recordRef(ref console.RecordRef) console.RecordRef {
	ref.Group = cmp.Or(ref.Group, b.cfg.Group)
	return ref
}

// checkRecordRef says what a record reference lacks: an event is named by
// its source and id.
func checkRecordRef(ref console.RecordRef) error {
	var missing []string
	if ref.Source == "" {
		missing = append(missing, "source")
	}
	if ref.ID == "" {
		missing = append(missing, "id")
	}
	if len(missing) > 0 {
		return fmt.Errorf("a record is named by its event's source and id: give %s", strings.Join(missing, " and "))
	}
	return nil
}

// recordKey is the Redis key of the record ref names.
func recordKey(ref console.RecordRef) string {
	return dedupe.Key(ref.Group, ref.Key, ref.Source, ref.ID)
}

// recordView is what the console shows of a record.
func recordView(r dedupe.Record) console.Record {
	return console.Record{Key: r.Key, State: r.State, Fence: r.Fence, Attempts: r.Attempts, Fingerprint: r.Fingerprint,
		LeaseDeadline: r.LeaseDeadline, Result: r.Result, TTL: r.TTL}
}

// Unblock lets a key held in the backend's group go (fleet keys unblock):
// the next event parked behind its dead-lettered head is written to the
// parked topic and runs. A key held on several topics or partitions of the
// group is refused: fleet keys unblock names one.
func (b *consoleBackend) Unblock(ctx context.Context, key string) (string, error) {
	list, err := b.store.ListGates(ctx, gateScan)
	if err != nil {
		return "", b.redisFailed(err)
	}
	held := heldGates(list.Gates, dedupe.GateRef{Key: key, Group: b.cfg.Group, Partition: -1})
	switch {
	case len(held) == 0:
		return "", fmt.Errorf("%s is not held in group %s", key, b.cfg.Group)
	case len(held) > 1:
		return "", fmt.Errorf("%s is held in %d places of group %s: fleet keys unblock --topic --partition names one", key, len(held), b.cfg.Group)
	}
	ref := held[0]
	pub := consumer.NewPublisher(b.cfg.Brokers, b.cfg.Dialer)
	defer pub.Close()
	f, err := consumer.Unblock(ctx, b.store, pub, ref)
	if err != nil {
		return "", fmt.Errorf("unblock %s: %w", key, err)
	}
	return fmt.Sprintf("unblocked %s (group %s, topic %s, partition %d): %s", ref.Key, ref.Group, ref.Topic, ref.Partition,
		released(ref, f != nil)), nil
}
