package cli

import (
	"fmt"
	"html"
	"math"
	"os"
	"strconv"
	"strings"
)

// panel is one plot of a figure.
type panel struct {
	title, x, y string
	logX        bool
	lines       []series
}

// The geometry of a panel, in SVG user units (pixels).
const (
	panelWidth, panelHeight = 640, 340
	plotLeft, plotRight     = 70, 20
	plotTop, plotBottom     = 40, 50
)

// curveColours are the series' colours, in order.
var curveColours = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}

// writeSVG draws the panels one above the other into an SVG file.
func writeSVG(path string, panels []panel) error {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		panelWidth, panelHeight*len(panels), panelWidth, panelHeight*len(panels))
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	for i, p := range panels {
		fmt.Fprintf(&b, `<g transform="translate(0,%d)">`+"\n", i*panelHeight)
		p.draw(&b)
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// draw writes the panel: title, axes with ticks and grid, one polyline
// with markers per series, and the legend.
func (p panel) draw(b *strings.Builder) {
	xs, ys := p.xScale(), p.yScale()
	w, h := float64(panelWidth-plotLeft-plotRight), float64(panelHeight-plotTop-plotBottom)
	fmt.Fprintf(b, `<text x="%d" y="22" font-size="14" text-anchor="middle">%s</text>`+"\n", panelWidth/2, html.EscapeString(p.title))
	for _, t := range ys.ticks {
		y := plotTop + h*(1-ys.at(t))
		fmt.Fprintf(b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
			plotLeft, y, panelWidth-plotRight, y, plotLeft-6, y+4, tickLabel(t))
	}
	for _, t := range xs.ticks {
		x := plotLeft + w*xs.at(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
			x, plotTop, x, panelHeight-plotBottom, x, panelHeight-plotBottom+16, tickLabel(t))
	}
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="black"/>`+"\n", plotLeft, plotTop, w, h)
	fmt.Fprintf(b, `<text x="%.0f" y="%d" text-anchor="middle">%s</text>`+"\n", plotLeft+w/2, panelHeight-12, html.EscapeString(p.x))
	fmt.Fprintf(b, `<text transform="translate(16,%.0f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", plotTop+h/2, html.EscapeString(p.y))
	for i, s := range p.lines {
		colour := curveColours[i%len(curveColours)]
		points := make([]string, 0, len(s.xys))
		for _, pt := range s.xys {
			x, y := plotLeft+w*xs.at(pt.X), plotTop+h*(1-ys.at(pt.Y))
			points = append(points, fmt.Sprintf("%.1f,%.1f", x, y))
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x, y, colour)
		}
		fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(points, " "), colour)
		ly := plotTop + 16 + 16*i
		fmt.Fprintf(b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/><text x="%d" y="%d">%s</text>`+"\n",
			plotLeft+10, ly-4, plotLeft+30, ly-4, colour, plotLeft+36, ly, html.EscapeString(s.name))
	}
}

// scale maps values onto [0, 1] of an axis, with the ticks to draw.
type scale struct {
	lo, hi float64
	log    bool
	ticks  []float64
}

func (s scale) at(v float64) float64 {
	if s.log {
		v, lo, hi := math.Log10(math.Max(v, s.lo)), math.Log10(s.lo), math.Log10(s.hi)
		return (v - lo) / (hi - lo)
	}
	return (v - s.lo) / (s.hi - s.lo)
}

// xScale spans the points' x: by decades on a log axis, else from 0.
func (p panel) xScale() scale {
	lo, hi := p.extent(func(pt xy) float64 { return pt.X })
	if !p.logX {
		return linearScale(0, hi)
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	s := scale{lo: lo, hi: hi, log: true}
	for t := lo; t <= hi*1.0001; t *= 10 {
		s.ticks = append(s.ticks, t)
	}
	return s
}

// yScale spans the points' y from 0.
func (p panel) yScale() scale {
	_, hi := p.extent(func(pt xy) float64 { return pt.Y })
	return linearScale(0, hi)
}

// extent is the least positive and the greatest value of v over the points
// (1 and 1 when there are none).
func (p panel) extent(v func(xy) float64) (lo, hi float64) {
	lo, hi = math.Inf(1), 0
	for _, s := range p.lines {
		for _, pt := range s.xys {
			if x := v(pt); x > 0 {
				lo, hi = math.Min(lo, x), math.Max(hi, x)
			}
		}
	}
	if hi == 0 {
		return 1, 1
	}
	return lo, hi
}

// linearScale spans lo to a round number at or above hi, with about five
// ticks of a round step.
func linearScale(lo, hi float64) scale {
	step := math.Pow(10, math.Floor(math.Log10((hi-lo)/5)))
	for _, m := range []float64{1, 2, 5, 10} {
		if (hi-lo)/(step*m) <= 6 {
			step *= m
			break
		}
	}
	s := scale{lo: lo, hi: lo + step*math.Ceil((hi-lo)/step)}
	if s.hi <= s.lo {
		s.hi = s.lo + step
	}
	for t := lo; t <= s.hi+step/1e6; t += step {
		s.ticks = append(s.ticks, t)
	}
	return s
}

// tickLabel writes a tick's value shortly: 2500, 25k, 2.5M, 0.5.
func tickLabel(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case a >= 1e4:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}
