package cli

import (
	"fmt"
	"path/filepath"
)

// The plots are line charts in SVG, drawn by curvessvg.go. A plotting
// library (gonum.org/v1/plot) drew them first, but fleet is also a
// library: every binary built on it carried the plotting package and its
// fonts (8.5 MB), for a hidden bench command.

// xy is a point of a series.
type xy struct{ X, Y float64 }

// series is one line of a panel.
type series struct {
	name string
	xys  []xy
}

// plotCurves writes DIR/cardinality.svg, memory.svg, partitions.svg and
// latency.svg from the report.
func plotCurves(dir string, r *curvesReport) error {
	byDist := map[string]*series{}
	cpu := map[string]*series{}
	var dists []string
	for _, p := range r.Cardinality {
		if byDist[p.Distribution] == nil {
			dists = append(dists, p.Distribution)
			byDist[p.Distribution], cpu[p.Distribution] = &series{name: p.Distribution}, &series{name: p.Distribution}
		}
		byDist[p.Distribution].xys = append(byDist[p.Distribution].xys, xy{X: float64(p.Keys), Y: p.EventsPerSecond})
		cpu[p.Distribution].xys = append(cpu[p.Distribution].xys, xy{X: float64(p.Keys), Y: p.CPUMicros})
	}
	rate, perEvent := pick(byDist, dists), pick(cpu, dists)
	var unpacked, packed series
	unpacked.name, packed.name = "one hash per record", "--pack-done-records"
	for _, p := range r.Memory {
		s := &unpacked
		if p.Packed {
			s = &packed
		}
		s.xys = append(s.xys, xy{X: float64(p.Records), Y: float64(p.UsedMemory) / (1 << 20)})
	}
	rss, goroutines := series{name: "peak RSS"}, series{name: "peak goroutines"}
	for _, p := range r.Partitions {
		rss.xys = append(rss.xys, xy{X: float64(p.Partitions), Y: p.PeakRSSMiB})
		goroutines.xys = append(goroutines.xys, xy{X: float64(p.Partitions), Y: float64(p.PeakGoroutines)})
	}
	p50, p99 := series{name: "p50"}, series{name: "p99"}
	for _, p := range r.Latency {
		p50.xys = append(p50.xys, xy{X: p.RatePerSecond, Y: p.P50ms})
		p99.xys = append(p99.xys, xy{X: p.RatePerSecond, Y: p.P99ms})
	}
	figures := []struct {
		file   string
		panels []panel
	}{
		{"cardinality.svg", []panel{
			{title: "Throughput by key cardinality", x: "keys", y: "events/s", logX: true, lines: rate},
			{title: "Worker CPU per event", x: "keys", y: "µs/event", logX: true, lines: perEvent},
		}},
		{"memory.svg", []panel{{title: "Redis used_memory as the dedupe window fills", x: "done records", y: "MiB", lines: []series{unpacked, packed}}}},
		{"partitions.svg", []panel{
			{title: "Worker peak RSS by source partitions", x: "source partitions", y: "MiB", logX: true, lines: []series{rss}},
			{title: "Worker goroutines by source partitions", x: "source partitions", y: "goroutines", logX: true, lines: []series{goroutines}},
		}},
		{"latency.svg", []panel{{title: "Produce-to-done latency by offered load", x: "events/s offered", y: "ms", lines: []series{p50, p99}}}},
	}
	for _, f := range figures {
		if err := writeSVG(filepath.Join(dir, f.file), f.panels); err != nil {
			return fmt.Errorf("plot %s: %w", f.file, err)
		}
	}
	return nil
}

// pick is the series of m in the order of keys.
func pick(m map[string]*series, keys []string) []series {
	out := make([]series, 0, len(keys))
	for _, k := range keys {
		out = append(out, *m[k])
	}
	return out
}
