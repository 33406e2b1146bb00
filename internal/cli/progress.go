package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/term"

	"github.com/fleetworks/fleet/consumer"
)

// progress shows a run's progress: one line rewritten in place on a
// terminal, a plain line every few seconds otherwise.
type progress struct {
	out      io.Writer
	total    int
	tty      bool
	every    time.Duration
	lastN    int
	lastTime time.Time
	shown    bool
}

func newProgress(out io.Writer, total int) *progress {
	p := &progress{out: out, total: total, every: 2 * time.Second, lastTime: time.Now()}
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty, p.every = true, 200*time.Millisecond
	}
	return p
}

// show prints events/s, what finished how, and the lag left.
func (p *progress) show(reg prometheus.Gatherer, committed, end map[int]int64) {
	n := finished(reg, "")
	now := time.Now()
	rate := float64(n-p.lastN) / now.Sub(p.lastTime).Seconds()
	p.lastN, p.lastTime = n, now
	var lag int64
	for part, e := range end {
		lag += max(e-committed[part], 0)
	}
	line := fmt.Sprintf("  %d/%d finished, %.0f events/s: %d processed, %d duplicates skipped, %d dead-lettered; lag %d",
		n, p.total, rate, finished(reg, consumer.OutcomeProcessed), finished(reg, consumer.OutcomeDuplicate),
		finished(reg, consumer.OutcomeDeadLettered)+finished(reg, consumer.OutcomeConflict), lag)
	if p.tty {
		fmt.Fprintf(p.out, "\r\033[K%s", line)
		p.shown = true
		return
	}
	fmt.Fprintln(p.out, line)
}

// done ends the in-place line.
func (p *progress) done() {
	if p.tty && p.shown {
		fmt.Fprintln(p.out)
	}
}
