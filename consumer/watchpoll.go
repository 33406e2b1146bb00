package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/fetch"
)

// How the watcher asks whether sleeping partitions have something to read:
// one fetch per leader broker, from each partition's next offset, and what
// it makes of the answers.

// poll asks the leaders of the watched partitions, at once, whether they
// have something to read, waiting up to wait for something to be written,
// and wakes those that do.
func (w *watcher) poll(ctx context.Context, watched []*partition, wait time.Duration) error {
	if err := w.resolve(ctx, watched); err != nil {
		return err
	}
	watched = slices.DeleteFunc(watched, func(p *partition) bool { return p.wm.commitOffset() == kafka.LastOffset })
	byLeader, err := w.leaders(ctx, watched)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(byLeader))
	i := 0
	for _, ps := range byLeader {
		j := i
		wg.Go(func() { errs[j] = w.ask(ctx, ps, wait) })
		i++
	}
	wg.Wait()
	return errors.Join(errs...)
}

// leaders groups the watched partitions by their leader broker, as the
// transport knows them (the fetches go where it routes them); a partition
// without a known leader waits for the next round.
func (w *watcher) leaders(ctx context.Context, watched []*partition) (map[int][]*partition, error) {
	if w.leaderOf == nil || time.Since(w.leadersRead) > leadersTTL {
		if err := w.readLeaders(ctx); err != nil {
			return nil, err
		}
	}
	out := map[int][]*partition{}
	for _, p := range watched {
		if id, ok := w.leaderOf[topicPartition{p.topic, p.id}]; ok {
			out[id] = append(out[id], p)
		}
	}
	return out, nil
}

// readLeaders reads the leaders of the watcher's partitions.
func (w *watcher) readLeaders(ctx context.Context) error {
	topics := map[string]bool{}
	for tp := range w.parts {
		topics[tp.topic] = true
	}
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	md, err := w.client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	w.leaderOf = make(map[topicPartition]int, len(w.parts))
	for _, t := range md.Topics {
		for _, p := range t.Partitions {
			w.leaderOf[topicPartition{t.Name, p.ID}] = p.Leader.ID
		}
	}
	w.leadersRead = time.Now()
	return nil
}

// ask sends one fetch for partitions of one leader and wakes those with
// something to read.
func (w *watcher) ask(ctx context.Context, ps []*partition, wait time.Duration) error {
	req := watchRequest(ps, wait)
	m, err := w.transport.RoundTrip(ctx, w.client.Addr, req)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	resp, ok := m.(*fetch.Response)
	if !ok {
		return fmt.Errorf("fetch: answered with a %T", m)
	}
	if resp.ErrorCode != 0 {
		return fmt.Errorf("fetch: %w", kafka.Error(resp.ErrorCode))
	}
	var wake []*partition
	for _, t := range resp.Topics {
		for _, a := range t.Partitions {
			p := w.parts[topicPartition{t.Topic, int(a.Partition)}]
			if p != nil && p.answered(a) {
				wake = append(wake, p)
			}
		}
	}
	w.wakeReadable(wake)
	return nil
}

// watchRequest is the fetch that asks about ps: from each one's next offset
// (0 for one that starts at the first offset), waiting up to wait for one
// byte, and taking at most a byte of each (a broker still sends a first
// batch whole).
func watchRequest(ps []*partition, wait time.Duration) *fetch.Request {
	byTopic := map[string][]fetch.RequestPartition{}
	for _, p := range ps {
		byTopic[p.topic] = append(byTopic[p.topic], fetch.RequestPartition{
			Partition: int32(p.id), CurrentLeaderEpoch: -1, FetchOffset: max(p.wm.commitOffset(), 0), // #nosec G115 -- a partition id
			LogStartOffset: -1, PartitionMaxBytes: 1,
		})
	}
	req := &fetch.Request{ReplicaID: -1, MaxWaitTime: int32(max(wait.Milliseconds(), 1)), MinBytes: 1, MaxBytes: 1, // #nosec G115 -- at most MaxWait
		SessionID: -1, SessionEpoch: -1}
	for t, parts := range byTopic {
		req.Topics = append(req.Topics, fetch.RequestTopic{Topic: t, Partitions: parts})
	}
	return req
}

// answered takes the watcher's answer for a sleeping partition: its end,
// for the lag, and whether it has something to read. A partition that
// starts at the first offset learns where that is.
func (p *partition) answered(a fetch.ResponsePartition) bool {
	next := p.wm.commitOffset()
	if next == kafka.FirstOffset {
		if a.ErrorCode == int16(kafka.OffsetOutOfRange) && a.LogStartOffset > 0 {
			p.wm.startAt(a.LogStartOffset)
			return false
		}
		next = 0
	}
	if a.ErrorCode == 0 && a.HighWatermark >= 0 {
		p.hwm.Store(a.HighWatermark)
		p.lag.Set(float64(max(a.HighWatermark-next, 0)))
	}
	return readable(next, a.HighWatermark, a.LogStartOffset, a.ErrorCode)
}

// resolve gives the partitions that start at the last offset, and have no
// committed offset yet, their start: the end of the partition now, so that
// what is written to it from now on is read however long it sleeps.
func (w *watcher) resolve(ctx context.Context, watched []*partition) error {
	req := map[string][]kafka.OffsetRequest{}
	at := map[topicPartition]*partition{}
	for _, p := range watched {
		if p.wm.commitOffset() == kafka.LastOffset {
			req[p.topic] = append(req[p.topic], kafka.LastOffsetOf(p.id))
			at[topicPartition{p.topic, p.id}] = p
		}
	}
	if len(at) == 0 {
		return nil
	}
	resp, err := w.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		return fmt.Errorf("list offsets: %w", err)
	}
	for t, offsets := range resp.Topics {
		for _, o := range offsets {
			if p := at[topicPartition{t, o.Partition}]; p != nil && o.Error == nil && o.LastOffset >= 0 {
				p.wm.startAt(o.LastOffset)
			}
		}
	}
	return nil
}
