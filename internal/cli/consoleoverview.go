package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/internal/console"
)

// lastFailures is how many dead letters the overview shows.
const lastFailures = 10

// Overview reads the group's state. Only a cluster that cannot be asked
// for its topics is an error; every other part that cannot be read is
// left empty and said in Problems.
func (b *consoleBackend) Overview(ctx context.Context) (console.Overview, error) {
	o := console.Overview{Group: b.cfg.Group, ReadAt: b.cfg.Now()}
	md, err := b.client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return o, fmt.Errorf("read the topics of the cluster at %v: %w", b.cfg.Brokers, err)
	}
	partitions := map[string]int{}
	for _, t := range md.Topics {
		if t.Error == nil {
			partitions[t.Name] = len(t.Partitions)
		}
	}
	problem := func(err error) { o.Problems = append(o.Problems, err.Error()) }
	if o.Members, err = b.members(ctx); err != nil {
		problem(err)
	}
	committed, err := b.committed(ctx)
	if err != nil {
		problem(err)
	}
	srcs := b.sourcesOf(committed, o.Members)
	for _, s := range srcs {
		if _, ok := partitions[s]; !ok {
			o.Problems = append(o.Problems, fmt.Sprintf("topic %s is missing", s))
		}
	}
	reads, problems := b.lags(ctx, consumedTopics(srcs, partitions), partitions, committed, owners(o.Members), o.ReadAt)
	o.Problems = append(o.Problems, problems...)
	for _, r := range reads {
		o.Partitions = append(o.Partitions, r.PartitionLag)
	}
	o.Tiers = tierWaits(reads)
	if o.HeldKeys, err = b.heldKeys(ctx); err != nil {
		problem(err)
	}
	if o.LastFailures, err = b.lastFailures(ctx, srcs, partitions); err != nil {
		problem(err)
	}
	o.Problems = append(o.Problems, b.memberStatuses(ctx, o.Members)...)
	return o, nil
}

// assignedTopics are the topics the members are assigned partitions of.
func assignedTopics(members []console.Member) []string {
	var out []string
	for _, m := range members {
		for _, a := range m.Assigned {
			if topic, _, ok := cutPartition(a); ok {
				out = append(out, topic)
			}
		}
	}
	return out
}

// owners maps each assigned partition ("topic/partition") to its member.
func owners(members []console.Member) map[string]string {
	out := map[string]string{}
	for _, m := range members {
		for _, a := range m.Assigned {
			out[a] = m.ID
		}
	}
	return out
}

// cutPartition splits "topic/partition".
func cutPartition(s string) (topic string, partition int, ok bool) {
	i := strings.LastIndexByte(s, '/')
	if i <= 0 {
		return "", 0, false
	}
	p, err := strconv.Atoi(s[i+1:])
	return s[:i], p, err == nil && p >= 0
}

// consumedTopics are the topics a group with sources srcs consumes, of
// those that exist (topic: partitions): each source, then its retry tiers
// in order, then its parked topic.
func consumedTopics(srcs []string, exist map[string]int) []string {
	var out []string
	for _, s := range srcs {
		if _, ok := exist[s]; ok {
			out = append(out, s)
		}
		var tiers []int
		for t := range exist {
			if src, n, ok := retryTier(t); ok && src == s {
				tiers = append(tiers, n)
			}
		}
		slices.Sort(tiers)
		for _, n := range tiers {
			out = append(out, consumer.RetryTopic(s, n))
		}
		if _, ok := exist[consumer.ParkedTopic(s)]; ok {
			out = append(out, consumer.ParkedTopic(s))
		}
	}
	return out
}

// partitionRead is a partition the group consumes, and for a retry tier
// when its first waiting message is due (zero: nothing waits, or unknown).
type partitionRead struct {
	console.PartitionLag
	due time.Time
}

// partitionLag is where the group reads a partition from and how many
// messages wait there: from its committed offset (-1: none, the start),
// never before the partition's first offset (retention), up to the
// high-water mark.
func partitionLag(committed, first, hwm int64) (start, lag int64) {
	start = max(committed, first)
	return start, max(hwm-start, 0)
}

// lags reads the committed offsets, first offsets and high-water marks of
// every partition of topics and, where messages wait, the first of them:
// its age, and for a retry tier when it is due.
func (b *consoleBackend) lags(ctx context.Context, topics []string, partitions map[string]int, committed map[string]map[int]int64,
	owner map[string]string, now time.Time) ([]partitionRead, []string) {
	if len(topics) == 0 {
		return nil, nil
	}
	req := map[string][]kafka.OffsetRequest{}
	for _, t := range topics {
		for p := range partitions[t] {
			req[t] = append(req[t], kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
		}
	}
	offs, err := b.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: req})
	if err != nil {
		return nil, []string{fmt.Sprintf("list the offsets of %d topics: %v", len(topics), err)}
	}
	var reads []partitionRead
	var problems []string
	for _, t := range topics {
		for _, po := range offs.Topics[t] {
			if po.Error != nil {
				problems = append(problems, fmt.Sprintf("offsets of %s/%d: %v", t, po.Partition, po.Error))
				continue
			}
			c, ok := committed[t][po.Partition]
			if !ok {
				c = -1
			}
			_, lag := partitionLag(c, po.FirstOffset, po.LastOffset)
			reads = append(reads, partitionRead{PartitionLag: console.PartitionLag{Topic: t, Partition: po.Partition, Committed: c,
				HighWaterMark: po.LastOffset, Lag: lag, Member: owner[fmt.Sprintf("%s/%d", t, po.Partition)]}})
		}
	}
	slices.SortStableFunc(reads, func(a, b partitionRead) int {
		return cmp.Or(cmp.Compare(slices.Index(topics, a.Topic), slices.Index(topics, b.Topic)), cmp.Compare(a.Partition, b.Partition))
	})
	return reads, append(problems, b.firstWaiting(ctx, reads, offs, now)...)
}

// firstWaiting fetches the first waiting message of every partition with
// a lag, a few at a time, for its age and, on a retry tier, when it is
// due.
func (b *consoleBackend) firstWaiting(ctx context.Context, reads []partitionRead, offs *kafka.ListOffsetsResponse, now time.Time) []string {
	first := map[string]int64{}
	for t, ps := range offs.Topics {
		for _, po := range ps {
			first[fmt.Sprintf("%s/%d", t, po.Partition)] = po.FirstOffset
		}
	}
	var mu sync.Mutex
	var problems []string
	var g errgroup.Group
	g.SetLimit(8)
	for i := range reads {
		r := &reads[i]
		if r.Lag == 0 {
			continue
		}
		g.Go(func() error {
			start, _ := partitionLag(r.Committed, first[fmt.Sprintf("%s/%d", r.Topic, r.Partition)], r.HighWaterMark)
			m, ok, err := fetchAt(ctx, b.client, r.Topic, r.Partition, start)
			if err != nil || !ok {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("the first waiting message of %s/%d: %v", r.Topic, r.Partition, cmp.Or[error](err, errNoMessage)))
				mu.Unlock()
				return nil
			}
			r.LagSeconds = max(now.Sub(m.Time).Seconds(), 0)
			if _, _, tier := retryTier(r.Topic); tier {
				r.due, _ = time.Parse(time.RFC3339Nano, headerNamed(m.Headers, consumer.HeaderNotBefore))
			}
			return nil
		})
	}
	_ = g.Wait()
	slices.Sort(problems)
	return problems
}

// errNoMessage is a partition that holds no message at the offset asked.
var errNoMessage = errors.New("none at its offset")

// tierWaits are the retry tiers with messages waiting, in the order of
// their partitions: how many, and when the first is due (the earliest of
// their partitions').
func tierWaits(reads []partitionRead) []console.TierWait {
	var out []console.TierWait
	for _, r := range reads {
		if _, _, ok := retryTier(r.Topic); !ok || r.Lag == 0 {
			continue
		}
		if len(out) == 0 || out[len(out)-1].Topic != r.Topic {
			out = append(out, console.TierWait{Topic: r.Topic})
		}
		w := &out[len(out)-1]
		w.Waiting += r.Lag
		if !r.due.IsZero() && (w.NextDue.IsZero() || r.due.Before(w.NextDue)) {
			w.NextDue = r.due
		}
	}
	return out
}

// heldKeys are the group's gated keys, held first, then oldest first.
// HeldKeys implements console.KeyHolds.
func (b *consoleBackend) HeldKeys(ctx context.Context) ([]console.HeldKey, error) {
	return b.heldKeys(ctx)
}

func (b *consoleBackend) heldKeys(ctx context.Context) ([]console.HeldKey, error) {
	list, err := b.store.ListGates(ctx, gateScan)
	if err != nil {
		return nil, fmt.Errorf("held keys: %w", b.redisFailed(err))
	}
	var out []console.HeldKey
	for _, g := range consumer.HeldFirst(list.Gates) {
		if g.Ref.Group == b.cfg.Group {
			out = append(out, heldKey(g))
		}
	}
	return out, nil
}

// heldKey is what the console shows of a gate: Head is the head event's
// identity (handlers.IdempotencyKey), as /status shows it.
func heldKey(g dedupe.GateInfo) console.HeldKey {
	return console.HeldKey{Key: g.Ref.Key, Head: g.Head, Since: g.Since, State: g.State.String(), Queued: g.Queued}
}

// lastFailures are the newest dead letters of the sources' dead-letter
// topics that exist: the last few of each partition are read, not the
// whole topic.
func (b *consoleBackend) lastFailures(ctx context.Context, srcs []string, partitions map[string]int) ([]console.DeadLetter, error) {
	var letters []deadLetter
	for _, s := range srcs {
		dlq := consumer.DeadLetterTopic(s)
		n, ok := partitions[dlq]
		if !ok {
			continue
		}
		var req []kafka.OffsetRequest
		for p := range n {
			req = append(req, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
		}
		offs, err := b.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{dlq: req}})
		if err != nil {
			return nil, fmt.Errorf("last failures: list offsets of %s: %w", dlq, err)
		}
		for _, po := range offs.Topics[dlq] {
			if po.Error != nil || po.LastOffset <= po.FirstOffset {
				continue
			}
			po.FirstOffset = max(po.FirstOffset, po.LastOffset-lastFailures)
			err := readPartition(ctx, b.cfg.Brokers, b.cfg.Dialer, dlq, po, func(m kafka.Message) error {
				letters = append(letters, newDeadLetter(m))
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("last failures: %w", err)
			}
		}
	}
	newestFirst(letters)
	out := make([]console.DeadLetter, 0, min(len(letters), lastFailures))
	for i := range min(len(letters), lastFailures) {
		out = append(out, b.letterView(&letters[i]))
	}
	return out, nil
}
