package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"
)

// benchPartitionsCmd is `fleet bench-partitions`: what the partitions
// assigned to one worker cost it. For each partition count, a fresh
// embedded broker gets a source topic with that many partitions and the
// events spread evenly over them, and one `fleet run` process (with the
// default retry tiers and parked topic, so five partitions per source
// partition) drains it into a private redis-server. It reports the drain
// time, the peak RSS, and the goroutines and heap at the peak and once
// idle. docs/operations.md quotes it.
type benchPartitionsCmd struct {
	Partitions []int         `sep:"," default:"8,64,256,1024" help:"Partition counts of the source topic, one run each."`
	Events     int           `default:"20000" help:"Events spread evenly over the partitions."`
	Idle       time.Duration `default:"5s" help:"How long the worker stays idle after the drain before the idle figures are read."`
	Timeout    time.Duration `default:"240s" help:"Longest drain before a run is given up."`
	JSON       bool          `name:"json" help:"Print the results as JSON."`
	// Worker holds more flags of fleet run, one per flag.
	Worker []string `name:"worker-flag" help:"Another flag of fleet run (repeat it), such as --worker-flag=--concurrency=8."`
	Logs   string   `name:"worker-logs" help:"Write each worker's output to this file, suffixed with its partition count."`
}

func (c *benchPartitionsCmd) Run(stdout io.Writer) error {
	for _, p := range c.Partitions {
		if p < 1 || p > 4096 {
			return configError{fmt.Errorf("partitions %d: between 1 and 4096", p)}
		}
	}
	if c.Events < 1 || c.Idle < 0 || c.Timeout <= 0 {
		return configError{fmt.Errorf("events %d, idle %v, timeout %v: at least one event, an idle time not negative, a positive timeout",
			c.Events, c.Idle, c.Timeout)}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var results []partitionResult
	for _, p := range c.Partitions {
		fmt.Fprintf(os.Stderr, "%d partitions: loading %d events, draining them with one worker\n", p, c.Events)
		r, err := partitionRun{exe: exe, partitions: p, events: c.Events, idle: c.Idle, timeout: c.Timeout, extra: c.Worker,
			logs: c.Logs}.measure(ctx)
		if err != nil {
			return err
		}
		results = append(results, r)
		if !r.Drained {
			fmt.Fprintf(os.Stderr, "%d partitions: not drained within %v\n", p, c.Timeout)
		}
	}
	if c.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	return printPartitionResults(stdout, results)
}

func printPartitionResults(w io.Writer, results []partitionResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "partitions\tassigned\tevents\tready s\tdrained\tdrain s\tpeak RSS MiB\tpeak goroutines\tpeak heap MiB\tidle goroutines\tidle heap MiB\tidle RSS MiB\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.1f\t%v\t%.1f\t%.0f\t%d\t%.0f\t%d\t%.0f\t%.0f\t\n", r.Partitions, r.Assigned, r.Events, r.ReadySeconds,
			r.Drained, r.DrainSeconds, r.PeakRSSMiB, r.PeakGoroutines, r.PeakHeapMiB, r.IdleGoroutines, r.IdleHeapMiB, r.IdleRSSMiB)
	}
	return tw.Flush()
}
