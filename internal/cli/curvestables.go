package cli

import (
	"fmt"
	"io"
)

// print writes the curves as markdown tables, as docs/performance.md
// quotes them.
func (r *curvesReport) print(w io.Writer) error {
	fmt.Fprintf(w, "### Key cardinality (%d unique events, 10%% duplicates, %d partitions)\n\n", r.Plan.Events, curvesPartitions)
	fmt.Fprintln(w, "| keys | distribution | events/s | worker CPU µs/event |")
	fmt.Fprintln(w, "| ---: | :--- | ---: | ---: |")
	for _, p := range r.Cardinality {
		fmt.Fprintf(w, "| %s | %s | %s | %.1f |\n", thousands(p.Keys), p.Distribution, thousands(int(p.EventsPerSecond)), p.CPUMicros)
	}
	fmt.Fprintln(w, "\n### Redis memory as the dedupe window fills")
	fmt.Fprintln(w, "\n| records | packed | used_memory MiB | bytes/record |")
	fmt.Fprintln(w, "| ---: | :--- | ---: | ---: |")
	for _, p := range r.Memory {
		fmt.Fprintf(w, "| %s | %v | %.1f | %.0f |\n", thousands(p.Records), p.Packed, float64(p.UsedMemory)/(1<<20), p.BytesPerRecord)
	}
	fmt.Fprintf(w, "\n### Worker memory and goroutines by partitions (%d events)\n\n", r.Plan.PartEvents)
	fmt.Fprintln(w, "| partitions | assigned | drain s | peak RSS MiB | peak goroutines | idle goroutines |")
	fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, p := range r.Partitions {
		fmt.Fprintf(w, "| %s | %s | %.1f | %.0f | %s | %s |\n", thousands(p.Partitions), thousands(p.Assigned), p.DrainSeconds,
			p.PeakRSSMiB, thousands(p.PeakGoroutines), thousands(p.IdleGoroutines))
	}
	fmt.Fprintf(w, "\n### Latency by load (throughput %s events/s)\n\n", thousands(int(r.Throughput)))
	fmt.Fprintln(w, "| share | events/s offered | events | p50 ms | p99 ms |")
	fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | ---: |")
	for _, p := range r.Latency {
		fmt.Fprintf(w, "| %.0f %% | %s | %s | %.2f | %.2f |\n", p.Share*100, thousands(int(p.RatePerSecond)), thousands(p.Events), p.P50ms, p.P99ms)
	}
	return nil
}

// thousands writes n with commas: 1,024.
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
