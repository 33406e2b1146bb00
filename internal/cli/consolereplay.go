package cli

import (
	"context"
	"slices"

	"github.com/fleetworks/fleet/internal/console"
)

// Replay replays the dead letters sel selects for the backend's group,
// with fleet dlq replay's rules, one dead-letter topic after another. On
// an error the report holds what was decided before it.
func (b *consoleBackend) Replay(ctx context.Context, sel console.Selection, dryRun bool, progress func(done, total int)) (console.ReplayReport, error) {
	letters, err := b.selected(ctx, sel)
	if err != nil {
		return console.ReplayReport{DryRun: dryRun}, err
	}
	total := len(letters)
	var tally replayTally
	for _, topic := range topicsOf(letters) {
		of := slices.DeleteFunc(slices.Clone(letters), func(d deadLetter) bool { return d.Msg.Topic != topic })
		base := len(tally.steps)
		r := replayer{brokers: b.cfg.Brokers, dialer: b.cfg.Dialer, dlq: topic, group: b.cfg.Group, store: b.store, dryRun: dryRun}
		t, err := r.run(ctx, of, func(done int) {
			if progress != nil {
				progress(base+done, total)
			}
		})
		tally.add(t)
		if err != nil {
			return replayReport(&tally, total, dryRun), err
		}
	}
	return replayReport(&tally, total, dryRun), nil
}

// selected reads the dead letters a replay takes: the one sel names, or
// every one its filter selects, in topic, partition and offset order.
func (b *consoleBackend) selected(ctx context.Context, sel console.Selection) ([]deadLetter, error) {
	if sel.Ref != nil {
		d, err := b.letterAt(ctx, *sel.Ref)
		if err != nil {
			return nil, err
		}
		return []deadLetter{d}, nil
	}
	f := sel.Filter
	f.Skip, f.Limit = 0, 0
	return b.collect(ctx, f, false)
}

// topicsOf are the topics of the dead letters, in their order.
func topicsOf(letters []deadLetter) []string {
	var out []string
	for _, d := range letters {
		if !slices.Contains(out, d.Msg.Topic) {
			out = append(out, d.Msg.Topic)
		}
	}
	return out
}

// replayReport is what the console shows of a replay's tally.
func replayReport(t *replayTally, total int, dryRun bool) console.ReplayReport {
	r := console.ReplayReport{DryRun: dryRun, Replayed: t.published, Summary: t.summary(total, dryRun)}
	if dryRun {
		r.Replayed = t.counts[replayPublish]
	}
	for _, s := range t.steps {
		d := &s.letter
		r.Verdicts = append(r.Verdicts, console.ReplayVerdict{
			Ref:  console.LetterRef{Topic: d.Msg.Topic, Partition: d.Msg.Partition, Offset: d.Msg.Offset},
			Type: d.Event.Type, ID: d.Event.ID, Key: d.Msg.Key, To: s.to, Verdict: s.verdict, Replay: s.verdict == replayPublish,
		})
	}
	return r
}
