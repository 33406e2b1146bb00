package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// replayer republishes the dead letters of one dead-letter topic to the
// topic it belongs to, for one consumer group: fleet dlq replay and the
// console both replay through it. A replayer is used by one goroutine at
// a time.
type replayer struct {
	brokers []string
	dialer  *kafka.Dialer
	// dlq is the dead-letter topic; its events go back only to the topic
	// it belongs to.
	dlq    string
	group  string
	store  *dedupe.Redis
	dryRun bool
}

// replayStep is what became of one dead letter: the letter as replayed (a
// dead letter written without its value has it back), its verdict and the
// topic it goes to.
type replayStep struct {
	letter      deadLetter
	verdict, to string
}

// replayTally is what a replay decided, and did unless it was a dry run.
type replayTally struct {
	steps  []replayStep
	counts map[string]int
	// published counts the events republished.
	published int
	// unrecorded counts the dead letters to replay that say they ran
	// (they count attempts) but have no record in the store.
	unrecorded int
}

// replayBatch is how many republished events go out in one acknowledged
// write.
const replayBatch = 100

// run decides what becomes of each dead letter, in order, and unless this
// is a dry run republishes those to replay. progress, when not nil, is
// called with the number of dead letters done so far (skipped, or
// republished and acknowledged). On an error the tally holds what was done
// before it, and the error says how many were replayed.
func (r *replayer) run(ctx context.Context, letters []deadLetter, progress func(done int)) (replayTally, error) {
	tally := replayTally{counts: map[string]int{}}
	if progress == nil {
		progress = func(int) {}
	}
	// Each event goes back to the partition it was consumed from, where its
	// key's live events are, whatever partitioner their producer used.
	writer := &kafka.Writer{Addr: kafka.TCP(r.brokers...), Balancer: consumer.PartitionBalancer{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, Transport: consumer.Transport(r.dialer)}
	defer writer.Close()

	var pending []kafka.Message
	done := 0
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := writer.WriteMessages(ctx, pending...); err != nil {
			return fmt.Errorf("republish: %w (replayed so far: %d)", err, tally.published)
		}
		tally.published += len(pending)
		done += len(pending)
		progress(done)
		pending = pending[:0]
		return nil
	}
	seen := map[string]bool{}
	for _, d := range letters {
		step, msg, missing, err := r.one(ctx, &d, seen)
		if step.verdict == replayPublish && d.Attempts > 0 && missing {
			tally.unrecorded++
		}
		if err != nil {
			if ferr := flush(); ferr != nil {
				return tally, ferr
			}
			return tally, fmt.Errorf("dead letter %s/%d@%d: %w (replayed so far: %d)", d.Msg.Topic, d.Msg.Partition, d.Msg.Offset, err, tally.published)
		}
		tally.counts[step.verdict]++
		tally.steps = append(tally.steps, step)
		if msg == nil {
			done++
			progress(done)
			continue
		}
		if pending = append(pending, *msg); len(pending) == replayBatch {
			if err := flush(); err != nil {
				return tally, err
			}
		}
	}
	return tally, flush()
}

// one decides what becomes of one dead letter and, unless this is a dry
// run, prepares it: a fresh attempt budget for its record, and the message
// that republishes the event to its original topic and partition with its
// key, value and headers (nil when there is none to send). A dead letter
// written without its value (too large for the dead-letter topic) gets it
// back from the original topic, partition and offset. missing is true when
// the event had no record in the store.
func (r *replayer) one(ctx context.Context, d *deadLetter, seen map[string]bool) (step replayStep, msg *kafka.Message, missing bool, err error) {
	// Only ever to the topic this dead-letter topic belongs to: anyone who
	// can write to it could name another.
	to := strings.TrimSuffix(r.dlq, ".dlq")
	verdict := func(v string) replayStep { return replayStep{letter: *d, verdict: v, to: to} }
	switch {
	case d.OriginalTopic != "" && d.OriginalTopic != to:
		return verdict(replayOtherTopic), nil, false, nil
	case d.Group != "" && d.Group != r.group:
		return verdict(replayOtherGroup), nil, false, nil
	}
	if dropped(d.Msg.Headers, "value") {
		orig, ok, err := r.original(ctx, d, to)
		switch {
		case err != nil:
			return verdict(""), nil, false, fmt.Errorf("fetch the value from %s/%d@%d: %w", to, d.OriginalPartition, d.OriginalOffset, err)
		case !ok:
			return verdict(replayGone), nil, false, nil
		}
		ev, derr := consumer.Decode(&orig)
		if derr != nil || !sameEvent(r.group, d, ev) {
			return verdict(replayMismatch), nil, false, nil
		}
		d.Msg.Key, d.Msg.Value, d.Msg.Headers = orig.Key, orig.Value, append(orig.Headers, fleetOwn(d.Msg.Headers)...)
		d.Event, d.DecodeErr = ev, nil
	}
	if d.DecodeErr != nil {
		return verdict(replayUndecodable), nil, false, nil
	}
	key := dedupe.Key(r.group, d.Event.Key, d.Event.Source, d.Event.ID)
	if seen[key] {
		return verdict(replayRepeat), nil, false, nil
	}
	seen[key] = true
	rec, err := r.store.Inspect(ctx, key)
	missing = errors.Is(err, dedupe.ErrNotFound)
	if err != nil && !missing {
		return verdict(""), nil, false, fmt.Errorf("read its idempotency record: %w", err)
	}
	v := recordVerdict(rec, !missing, handlers.Fingerprint(d.Event))
	if v != replayPublish || r.dryRun {
		return verdict(v), nil, missing, nil
	}
	if !missing {
		if _, err := r.store.ResetAttempts(ctx, key); err != nil {
			return verdict(""), nil, false, fmt.Errorf("reset its attempt budget: %w", err)
		}
	}
	return verdict(replayPublish), republished(d, to), missing, nil
}

// recordVerdict is what becomes of a dead letter's event given its
// record (found is false when it has none) and the fingerprint of the
// event's payload: the record of another payload stands, a done event is
// not run again, anything else is replayed.
func recordVerdict(rec dedupe.Record, found bool, fingerprint string) string {
	switch {
	case !found:
		return replayPublish
	case rec.Fingerprint != fingerprint:
		return replayConflict
	case rec.State == dedupe.StateDone:
		return replayDone
	}
	return replayPublish
}

// republished is the message that sends a dead letter's event back to
// topic, on the partition it was consumed from, with its key, value and
// headers but none of fleet's, and where it was replayed from.
func republished(d *deadLetter, topic string) *kafka.Message {
	msg := &kafka.Message{Topic: topic, Partition: d.OriginalPartition, Key: d.Msg.Key, Value: d.Msg.Value}
	for _, h := range d.Msg.Headers {
		if !strings.HasPrefix(strings.ToLower(h.Key), "fleet-") {
			msg.Headers = append(msg.Headers, h)
		}
	}
	msg.Headers = append(msg.Headers, kafka.Header{Key: "fleet-replayed-from",
		Value: fmt.Appendf(nil, "%s/%d/%d", d.Msg.Topic, d.Msg.Partition, d.Msg.Offset)})
	return msg
}

// original fetches the message a dead letter was made from, at its original
// partition and offset of topic; ok is false when the topic no longer holds
// it (retention, compaction).
func (r *replayer) original(ctx context.Context, d *deadLetter, topic string) (kafka.Message, bool, error) {
	if d.OriginalPartition < 0 || d.OriginalOffset < 0 {
		return kafka.Message{}, false, nil
	}
	t := consumer.Transport(r.dialer)
	defer t.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(r.brokers...), Transport: t, Timeout: 30 * time.Second}
	return fetchAt(ctx, client, topic, d.OriginalPartition, d.OriginalOffset)
}

// add counts another dead-letter topic's replay into the tally.
func (t *replayTally) add(o replayTally) {
	if t.counts == nil {
		t.counts = map[string]int{}
	}
	t.steps = append(t.steps, o.steps...)
	for v, n := range o.counts {
		t.counts[v] += n
	}
	t.published += o.published
	t.unrecorded += o.unrecorded
}

// summary is the sentence a replay of total dead letters ends with.
func (t *replayTally) summary(total int, dryRun bool) string {
	verb, skip := "replayed", "skipped"
	if dryRun {
		verb, skip = "would replay", "would skip"
	}
	c := t.counts
	return fmt.Sprintf("%s %d of %d dead letters; %s %d already done, %d undecodable, %d repeated, %d conflicting, %d without a value, %d of other groups or topics", verb,
		c[replayPublish], total, skip, c[replayDone], c[replayUndecodable], c[replayRepeat],
		c[replayConflict], c[replayGone]+c[replayMismatch], c[replayOtherGroup]+c[replayOtherTopic])
}

// warning is what the operator must hear before the summary: dead
// letters that ran with no record of theirs in this store ("" when none).
func (t *replayTally) warning() string {
	if t.unrecorded == 0 {
		return ""
	}
	return fmt.Sprintf("warning: %s ran (they count attempts) but no idempotency record of theirs is in this Redis: is it the group's Redis?",
		plural(t.unrecorded, "dead letter"))
}
