package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/internal/demo"
)

// benchStructuredTopic holds the stream of `fleet bench --structured`: the
// binary run's stream with a share of its events in structured mode.
const benchStructuredTopic = "bench-structured"

// structuredShare is the share of the events that the run of --structured
// publishes in structured mode: --mix, or 1 without it. It refuses a --mix
// outside 0 to 1, and one without --structured.
func (c *benchCmd) structuredShare() (float64, error) {
	switch {
	case c.Mix == nil:
		return 1, nil
	case !c.Structured:
		return 0, errors.New("mix: only with --structured (it is the share of that run's events in structured mode)")
	case !(*c.Mix >= 0 && *c.Mix <= 1):
		return 0, fmt.Errorf("mix %v: a share between 0 and 1", *c.Mix)
	}
	return *c.Mix, nil
}

// share is structuredShare of flags that validate accepted.
func (c *benchCmd) share() float64 {
	s, _ := c.structuredShare()
	return s
}

// loadStructured loads msgs into benchStructuredTopic with a share of the
// events in structured mode.
func (c *benchCmd) loadStructured(ctx context.Context, brokers []string, msgs []kafka.Message, progress io.Writer) error {
	mixed, err := demo.Mixed(msgs, c.share())
	if err != nil {
		return err
	}
	fmt.Fprintf(progress, "loading %d messages, %.0f%% of the events in structured mode, into %s\n", len(mixed), c.share()*100, benchStructuredTopic)
	return produce(ctx, brokers, benchStructuredTopic, mixed, progress)
}

// benchStructured runs fleet on the structured stream, as the binary run
// ran, which it follows, and names the run after the share of structured
// events.
func (c *benchCmd) benchStructured(ctx context.Context, brokers []string, redisURL, run string, binary benchResult,
	progress io.Writer, extra ...string) (benchResult, error) {
	fmt.Fprintln(progress, "running fleet on the stream in structured mode")
	r, err := c.worker(ctx, brokers, redisURL, benchWorker{mode: "fleet", topic: benchStructuredTopic, group: "structured-" + run, expect: binary.Events, args: extra}, progress)
	if err != nil {
		return benchResult{}, fmt.Errorf("fleet in structured mode: %w", err)
	}
	r.Name = structuredRunName(binary.Name, c.share())
	return r, nil
}

// structuredRunName is the name of the structured run: the binary run's,
// with the share of events in structured mode.
func structuredRunName(binary string, share float64) string {
	if share == 1 {
		return binary + " structured"
	}
	return fmt.Sprintf("%s %.0f%% structured", binary, share*100)
}

// compareStructured sets r's ratios of the structured run s to the binary
// run b, whose events were in structured mode for a share of them.
func (r *benchReport) compareStructured(share float64, b, s benchResult) {
	r.StructuredShare = share
	if b.EventsPerSecond > 0 {
		r.StructuredVsBinary = s.EventsPerSecond / b.EventsPerSecond
	}
	if b.CPUSeconds > 0 && b.Events > 0 && s.Events > 0 {
		r.StructuredCPUVsBinary = (s.CPUSeconds / float64(s.Events)) / (b.CPUSeconds / float64(b.Events))
	}
}
