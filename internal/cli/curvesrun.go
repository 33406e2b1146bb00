package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/internal/demo"
)

// curvesRun measures the points of a curvesPlan, one after the other,
// each on a fresh benchEnv.
type curvesRun struct {
	plan     curvesPlan
	exe      string // the fleet binary, for bench-partitions' workers
	progress io.Writer
}

// curvesPartitions are the partitions of the topics of the throughput,
// memory and latency runs: fleet bench's default.
const curvesPartitions = 8

func (r curvesRun) measure(ctx context.Context) (*curvesReport, error) {
	report := &curvesReport{Plan: r.plan}
	for _, keys := range r.plan.Keys {
		for _, zipf := range []float64{0, r.plan.Zipf} {
			p, err := r.cardinality(ctx, keys, zipf)
			if err != nil {
				return nil, err
			}
			report.Cardinality = append(report.Cardinality, p)
		}
	}
	report.Throughput = report.Cardinality[0].EventsPerSecond
	for _, pack := range []bool{false, true} {
		points, err := r.memory(ctx, pack)
		if err != nil {
			return nil, err
		}
		report.Memory = append(report.Memory, points...)
	}
	for _, p := range r.plan.Partitions {
		fmt.Fprintf(r.progress, "partitions %d: %d events, one worker\n", p, r.plan.PartEvents)
		res, err := partitionRun{exe: r.exe, partitions: p, events: r.plan.PartEvents, idle: r.plan.Idle, timeout: 240 * time.Second}.measure(ctx)
		if err != nil {
			return nil, err
		}
		report.Partitions = append(report.Partitions, res)
	}
	for _, share := range r.plan.Shares {
		p, err := r.latency(ctx, share*report.Throughput)
		if err != nil {
			return nil, err
		}
		p.Share = share
		report.Latency = append(report.Latency, p)
	}
	return report, nil
}

// stream is a demo stream of the plan's seed.
func (r curvesRun) stream(events, keys int, dupShare, zipf float64) ([]kafka.Message, error) {
	s, err := demo.NewWith(demo.Options{Events: events, Accounts: keys, DupShare: dupShare, Zipf: zipf,
		Seed: uint64(time.Now().UnixNano())}) // #nosec G115 -- a seed
	if err != nil {
		return nil, configError{err}
	}
	return s.Valid, nil
}

// cardinality is one throughput run, with fleet bench's 10% duplicates.
func (r curvesRun) cardinality(ctx context.Context, keys int, zipf float64) (cardinalityPoint, error) {
	dist := "uniform"
	if zipf > 0 {
		dist = "zipf"
	}
	p := cardinalityPoint{Keys: keys, Distribution: dist}
	fmt.Fprintf(r.progress, "cardinality: %d keys, %s\n", keys, dist)
	msgs, err := r.stream(r.plan.Events, keys, 0.1, zipf)
	if err != nil {
		return p, err
	}
	res, err := r.run(ctx, msgs, keys, nil)
	if err != nil {
		return p, fmt.Errorf("cardinality %d %s: %w", keys, dist, err)
	}
	p.Messages, p.EventsPerSecond = res.Events, res.EventsPerSecond
	p.CPUMicros = res.CPUSeconds * 1e6 / float64(max(res.Events, 1))
	return p, nil
}

// memory fills the dedupe window of one Redis in the plan's steps, a
// worker per step on a topic of its own, and reads used_memory after each.
func (r curvesRun) memory(ctx context.Context, pack bool) ([]memoryPoint, error) {
	msgs, err := r.stream(r.plan.Events, 1000, 0, 0)
	if err != nil {
		return nil, err
	}
	topics := make([]string, r.plan.MemorySteps)
	for i := range topics {
		topics[i] = "memory-" + strconv.Itoa(i)
	}
	env, err := startBenchEnv(ctx, curvesPartitions, topics, len(msgs)+1000)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	empty, err := usedMemory(ctx, env.rdb)
	if err != nil {
		return nil, err
	}
	var points []memoryPoint
	step := len(msgs) / r.plan.MemorySteps
	for i := range r.plan.MemorySteps {
		records := (i + 1) * step
		topic := topics[i]
		fmt.Fprintf(r.progress, "memory (packed %v): %d records\n", pack, records)
		if err := produce(ctx, env.brokers, topic, msgs[i*step:records], io.Discard); err != nil {
			return nil, err
		}
		bench := &benchCmd{Pack: pack, rdb: env.rdb}
		if _, err := bench.worker(ctx, env.brokers, env.redisURL, benchWorker{mode: "fleet", topic: topic, group: topic, expect: step}, io.Discard); err != nil {
			return nil, fmt.Errorf("memory step %d: %w", i, err)
		}
		used, err := usedMemory(ctx, env.rdb)
		if err != nil {
			return nil, err
		}
		points = append(points, memoryPoint{Packed: pack, Records: records, UsedMemory: used - empty,
			BytesPerRecord: float64(used-empty) / float64(records)})
	}
	return points, nil
}

// latency is one paced run at rate, for the plan's latency time.
func (r curvesRun) latency(ctx context.Context, rate float64) (latencyPoint, error) {
	n := max(int(rate*r.plan.LatencyFor.Seconds()), 1)
	p := latencyPoint{RatePerSecond: rate}
	fmt.Fprintf(r.progress, "latency: %d events at %.0f/s\n", n, rate)
	msgs, err := r.stream(n, 1000, 0, 0)
	if err != nil {
		return p, err
	}
	res, err := r.run(ctx, msgs, 1000, func(brokers []string, topic string) error {
		return producePaced(ctx, brokers, topic, msgs, rate)
	})
	if err != nil {
		return p, fmt.Errorf("latency at %.0f/s: %w", rate, err)
	}
	p.Events, p.P50ms, p.P99ms = res.Events, res.P50ms, res.P99ms
	return p, nil
}

// run measures one fleet worker on msgs in a fresh benchEnv: loaded
// before it starts, or published by feed while it runs.
func (r curvesRun) run(ctx context.Context, msgs []kafka.Message, keys int,
	feed func(brokers []string, topic string) error) (benchResult, error) {
	const topic = "curves"
	env, err := startBenchEnv(ctx, curvesPartitions, []string{topic}, len(msgs)+keys)
	if err != nil {
		return benchResult{}, err
	}
	defer env.Close()
	var during func() error
	if feed == nil {
		if err := produce(ctx, env.brokers, topic, msgs, io.Discard); err != nil {
			return benchResult{}, err
		}
	} else {
		during = func() error { return feed(env.brokers, topic) }
	}
	bench := &benchCmd{rdb: env.rdb}
	return bench.worker(ctx, env.brokers, env.redisURL, benchWorker{mode: "fleet", topic: topic, group: topic, expect: len(msgs), feed: during}, r.progress)
}
