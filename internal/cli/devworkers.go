package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
)

// devWorkers are the workers `dev` runs in its process: members of one
// consumer group, with one registry and one /metrics whose series carry
// worker="1", "2", …
type devWorkers struct {
	out  io.Writer
	reg  *prometheus.Registry
	stop context.CancelFunc
	// errc receives each worker's result; running counts those not
	// received yet.
	errc    chan error
	running int
	ready   chan devServed
	// bound is how long stopping may take: the drain, and leaving the
	// group.
	bound    time.Duration
	statuses []func() consumer.Status
}

// devServed is a worker that started: its number, the address it serves
// ("" but for the first) and its engine's status.
type devServed struct {
	worker int
	addr   string
	status func() consumer.Status
}

// startDevWorkers starts n workers wired as w says. They are not bound by
// --timeout (the wait for the stream is): with --keep-running they outlive
// it.
func startDevWorkers(interrupted context.Context, n int, w wiring, log *slog.Logger, out io.Writer) *devWorkers {
	runCtx, stop := context.WithCancel(interrupted)
	d := &devWorkers{out: out, reg: prometheus.NewRegistry(), stop: stop, errc: make(chan error, n), running: n,
		ready: make(chan devServed, n), bound: w.consumer.DrainTimeout + 10*time.Second}
	peers := &statusPeers{}
	for i := range n {
		wi := w
		wi.shared, wi.worker, wi.noHTTP, wi.peers = d.reg, strconv.Itoa(i+1), i > 0, peers
		wi.started = func(_ *prometheus.Registry, addr string, status func() consumer.Status) {
			d.ready <- devServed{i, addr, status}
		}
		go func() { d.errc <- serve(runCtx, log, wi) }()
	}
	return d
}

// stopAll stops every worker and returns the first error among them. A
// drain is bounded (the engine's drain timeout, then its hung handlers are
// left behind); past a second it says what it waits for, and past the
// bound it gives up rather than hang.
func (d *devWorkers) stopAll() error {
	d.stop()
	var first error
	slow := time.NewTimer(time.Second)
	defer slow.Stop()
	bound := time.NewTimer(d.bound)
	defer bound.Stop()
	for d.running > 0 {
		select {
		case err := <-d.errc:
			d.running--
			if err != nil && first == nil {
				first = err
			}
		case <-slow.C:
			fmt.Fprintf(d.out, "stopping: waiting for %d worker(s) to finish the events in flight, commit and leave the group (at most %v)\n",
				d.running, d.bound)
		case <-bound.C:
			return fmt.Errorf("%d worker(s) did not stop within %v", d.running, d.bound)
		}
	}
	return first
}

// failed stops the others after a worker returned err before it should
// have, and says when.
func (d *devWorkers) failed(err error, when string) error {
	d.running--
	_ = d.stopAll()
	if err == nil {
		err = errors.New("it returned without an error")
	}
	return fmt.Errorf("a worker stopped %s: %w", when, err)
}

// gaveUp stops the workers once ctx ended: an interruption, or the
// timeout, which what says.
func (d *devWorkers) gaveUp(interrupted context.Context, what string) error {
	_ = d.stopAll()
	if interrupted.Err() != nil {
		return errors.New("interrupted")
	}
	return errors.New(what)
}

// waitStarted waits until every worker runs (their Redis answered), saying
// every second that it waits, and returns the address the first serves.
func (d *devWorkers) waitStarted(ctx, interrupted context.Context, redisAddr string, timeout time.Duration) (string, error) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	served := ""
	for len(d.statuses) < cap(d.ready) {
		select {
		case s := <-d.ready:
			d.statuses = append(d.statuses, s.status)
			if s.worker == 0 {
				served = s.addr
			}
		case <-tick.C:
			fmt.Fprintf(d.out, "  waiting for Redis at %s\n", redisAddr)
		case <-ctx.Done():
			return "", d.gaveUp(interrupted, fmt.Sprintf("redis at %s did not answer within %v (--timeout)", redisAddr, timeout))
		case err := <-d.errc:
			d.running--
			_ = d.stopAll()
			switch {
			case err != nil:
			case interrupted.Err() != nil:
				err = errors.New("interrupted")
			default: // cancelled by the timeout while waiting for Redis
				err = fmt.Errorf("redis at %s did not answer within %v", redisAddr, timeout)
			}
			return "", err
		}
	}
	fmt.Fprintf(d.out, "processing with %d workers; http://%s/metrics, /healthz, /readyz, /status\n", len(d.statuses), served)
	return served, nil
}

// waitOneGeneration waits until every worker is a member of one
// generation. The stream goes out only then: a worker joining later would
// take partitions over mid-stream, and the events finished before it but
// not yet committed would be delivered again (skipped as duplicates,
// applied once, but counted twice).
func (d *devWorkers) waitOneGeneration(ctx, interrupted context.Context, timeout time.Duration) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !oneGeneration(d.statuses) {
		select {
		case err := <-d.errc:
			return d.failed(err, "before the group formed")
		case <-ctx.Done():
			return d.gaveUp(interrupted, fmt.Sprintf("the %d workers did not join one consumer group generation within %v (see the log with --log-level=warn)",
				len(d.statuses), timeout))
		case <-tick.C:
		}
	}
	return nil
}

// runStream publishes the demo stream and waits until it is done, which
// means observed: the group's committed offset of every partition has
// reached the partition's end. It returns the time that took.
func (d *devWorkers) runStream(ctx, interrupted context.Context, stream *DemoRun, brokers []string, c *devCmd) (time.Duration, error) {
	started := time.Now()
	if err := publish(ctx, brokers, c.Topic, stream.Messages); err != nil {
		_ = d.stopAll()
		return 0, err
	}
	fmt.Fprintf(d.out, "published %d messages: %d unique events, %d duplicates, %d poison\n",
		len(stream.Messages), stream.Unique, stream.Duplicates, len(stream.Poison))
	// One transport for the offset queries, closed at the end.
	transport := &kafka.Transport{}
	defer transport.CloseIdleConnections()
	offsets := &groupOffsets{client: &kafka.Client{Addr: kafka.TCP(brokers...), Transport: transport},
		group: devGroup, topic: c.Topic, partitions: c.Partitions}
	end, err := offsets.end(ctx)
	if err != nil {
		_ = d.stopAll()
		return 0, err
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastReport := time.Now()
	progress := newProgress(d.out, len(stream.Messages))
	for {
		committed, err := offsets.committed(ctx)
		if err == nil && reached(committed, end) {
			break
		}
		select {
		case err := <-d.errc:
			return 0, d.failed(err, "before the stream was finished")
		case <-ctx.Done():
			return 0, d.gaveUp(interrupted, fmt.Sprintf("stream not finished after %v: %d of %d messages finished, committed offsets %v of %v (see the log with --log-level=warn)",
				c.Timeout, finished(d.reg, ""), len(stream.Messages), committed, end))
		case <-tick.C:
		}
		if time.Since(lastReport) >= progress.every {
			progress.show(d.reg, committed, end)
			lastReport = time.Now()
		}
	}
	progress.done()
	return time.Since(started), nil
}

// keepRunning waits for an interruption, then stops the workers; a worker
// that stops before it is an error.
func (d *devWorkers) keepRunning(interrupted context.Context) error {
	select {
	case <-interrupted.Done():
	case err := <-d.errc:
		d.running--
		_ = d.stopAll()
		return fmt.Errorf("a worker stopped: %w", err)
	}
	if err := d.stopAll(); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}
