package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// runGeneration processes the partitions of one generation until it ends or
// ctx is cancelled, then drains: fetching stops, queued events are released,
// running handlers get DrainTimeout to finish, and the watermarks are
// committed. It returns only then: the generation ends for every partition
// when this function returns.
func (e *Engine) runGeneration(ctx, genCtx context.Context, gen *kafka.Generation) {
	e.joined.Store(true)
	e.m.groupJoined.Set(1)
	e.gen.Store(&generation{id: gen.ID, member: gen.MemberID})
	e.alive.Store(time.Now().UnixNano())
	defer func() {
		e.joined.Store(false)
		e.m.groupJoined.Set(0)
		e.parts.Store(nil)
		e.draining.Store(0)
	}()

	drain := newDrain(ctx, e.cfg.DrainTimeout)
	defer drain.end()
	beats, stopBeats := context.WithCancel(drain.work)
	defer stopBeats()
	parts := e.partitionsOf(gen, &genParts{drain: drain, beats: beats, leaders: newLeaders(e.cfg.Dialer, e.cfg.Brokers, topicsOf(gen))})
	var wg sync.WaitGroup
	e.startPartitions(parts, drain, &wg)
	c := &committer{gen: gen, parts: parts, committed: make(map[*partition]int64, len(parts)), e: e}

	ticker := time.NewTicker(e.cfg.CommitInterval)
	defer ticker.Stop()
	for running := true; running; {
		select {
		case <-ticker.C:
			e.alive.Store(time.Now().UnixNano())
			c.commit()
		case <-genCtx.Done():
			running = false
		case <-ctx.Done():
			running = false
		}
	}

	started := time.Now()
	e.draining.Store(started.UnixNano())
	drain.begin()
	wg.Wait()
	stopBeats()
	c.commit()
	for _, p := range parts {
		p.close()
	}
	e.m.assigned.Set(0)
	e.log.Info("generation drained", "generation", gen.ID, "took", time.Since(started).Round(time.Millisecond))
}

// startPartitions runs the source partitions, and hands the others (retry
// tiers, parked topics) to a watcher, asleep until they have something to
// read (sleep.go). Every session runs in wg, and so does the watcher.
func (e *Engine) startPartitions(parts []*partition, drain *drain, wg *sync.WaitGroup) {
	w := newWatcher(e, drain, func(p *partition) { wg.Go(p.run) })
	for _, p := range parts {
		if p.route.fleets() {
			w.add(p)
		} else {
			wg.Go(p.run)
		}
	}
	wg.Go(w.run)
}

// genParts is what a generation's partitions share: the drain, the context
// of their heartbeats, and the leaders their readers dial.
type genParts struct {
	drain   *drain
	beats   context.Context
	leaders *leaders
}

// topicsOf lists the topics of gen's assignments.
func topicsOf(gen *kafka.Generation) []string {
	topics := make([]string, 0, len(gen.Assignments))
	for t := range gen.Assignments {
		topics = append(topics, t)
	}
	return topics
}

// partitionsOf makes the partitions of gen's assignments and publishes them
// for /status.
func (e *Engine) partitionsOf(gen *kafka.Generation, g *genParts) []*partition {
	var parts []*partition
	for topic, assignments := range gen.Assignments {
		for _, a := range assignments {
			parts = append(parts, e.newPartition(topic, a, g))
		}
	}
	e.parts.Store(&parts)
	e.m.assigned.Set(float64(len(parts)))
	e.log.Info("generation started", "group", e.cfg.Group, "generation", gen.ID, "member", gen.MemberID, "partitions", len(parts))
	return parts
}

// committer commits a generation's watermarks.
type committer struct {
	e     *Engine
	gen   *kafka.Generation
	parts []*partition
	// committed is the last offset committed per partition.
	committed map[*partition]int64
}

// commit commits every partition's watermark that moved since the last
// commit, in one request.
func (c *committer) commit() {
	offsets := c.moved()
	if len(offsets) == 0 {
		return
	}
	if err := c.gen.CommitOffsets(offsets); err != nil {
		c.e.m.commits.WithLabelValues("error").Inc()
		c.e.log.Warn("commit offsets", "generation", c.gen.ID, "err", err)
		return
	}
	c.e.m.commits.WithLabelValues("ok").Inc()
	for _, p := range c.parts {
		if off, ok := offsets[p.topic][p.id]; ok {
			c.committed[p] = off
			p.committed.Store(off)
		}
	}
}

// moved returns the offsets to commit: topic, partition, offset.
func (c *committer) moved() map[string]map[int]int64 {
	offsets := map[string]map[int]int64{}
	for _, p := range c.parts {
		off := p.wm.commitOffset()
		if off < 0 || off == c.committed[p] {
			continue
		}
		if offsets[p.topic] == nil {
			offsets[p.topic] = map[int]int64{}
		}
		offsets[p.topic][p.id] = off
	}
	return offsets
}
