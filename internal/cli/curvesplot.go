package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The plots are drawn with gonum.org/v1/plot, which writes SVG without
// embedding fonts (a viewer uses its own sans-serif), so that the files
// stay small enough to commit and review.

// series is one line of a panel.
type series struct {
	name string
	xys  plotter.XYs
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
		byDist[p.Distribution].xys = append(byDist[p.Distribution].xys, plotter.XY{X: float64(p.Keys), Y: p.EventsPerSecond})
		cpu[p.Distribution].xys = append(cpu[p.Distribution].xys, plotter.XY{X: float64(p.Keys), Y: p.CPUMicros})
	}
	rate, perEvent := pick(byDist, dists), pick(cpu, dists)
	var unpacked, packed series
	unpacked.name, packed.name = "one hash per record", "--pack-done-records"
	for _, p := range r.Memory {
		s := &unpacked
		if p.Packed {
			s = &packed
		}
		s.xys = append(s.xys, plotter.XY{X: float64(p.Records), Y: float64(p.UsedMemory) / (1 << 20)})
	}
	rss, goroutines := series{name: "peak RSS"}, series{name: "peak goroutines"}
	for _, p := range r.Partitions {
		rss.xys = append(rss.xys, plotter.XY{X: float64(p.Partitions), Y: p.PeakRSSMiB})
		goroutines.xys = append(goroutines.xys, plotter.XY{X: float64(p.Partitions), Y: float64(p.PeakGoroutines)})
	}
	p50, p99 := series{name: "p50"}, series{name: "p99"}
	for _, p := range r.Latency {
		p50.xys = append(p50.xys, plotter.XY{X: p.RatePerSecond, Y: p.P50ms})
		p99.xys = append(p99.xys, plotter.XY{X: p.RatePerSecond, Y: p.P99ms})
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

// panel is one plot of a figure.
type panel struct {
	title, x, y string
	logX        bool
	lines       []series
}

func (p panel) plot() (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text, pl.X.Label.Text, pl.Y.Label.Text = p.title, p.x, p.y
	pl.Y.Min = 0
	if p.logX {
		pl.X.Scale, pl.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{}
	}
	pl.Add(plotter.NewGrid())
	var args []any
	for _, s := range p.lines {
		args = append(args, s.name, s.xys)
	}
	if err := plotutil.AddLinePoints(pl, args...); err != nil {
		return nil, err
	}
	pl.Legend.Top = true
	return pl, nil
}

// writeSVG draws the panels one above the other into an SVG file.
func writeSVG(path string, panels []panel) error {
	plots := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		pl, err := p.plot()
		if err != nil {
			return err
		}
		plots[i] = []*plot.Plot{pl}
	}
	const width, height = 16 * vg.Centimeter, 9 * vg.Centimeter
	c := vgsvg.New(width, height*vg.Length(len(panels)))
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Millimeter, PadBottom: vg.Millimeter, PadY: 4 * vg.Millimeter}
	for i, canvases := range plot.Align(plots, tiles, dc) {
		plots[i][0].Draw(canvases[0])
	}
	f, err := os.Create(path) // #nosec G304 -- a file in the operator's own --out directory
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
