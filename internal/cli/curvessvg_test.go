package cli

import (
	"slices"
	"testing"
)

func TestLinearScale(t *testing.T) {
	tests := []struct {
		hi        float64
		wantHi    float64
		wantTicks []float64
	}{
		{37, 40, []float64{0, 10, 20, 30, 40}},
		{28_953, 30_000, []float64{0, 5000, 10_000, 15_000, 20_000, 25_000, 30_000}},
		{0.9, 1, []float64{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}},
		{234, 250, []float64{0, 50, 100, 150, 200, 250}},
	}
	for _, tt := range tests {
		s := linearScale(0, tt.hi)
		if s.hi != tt.wantHi || !slices.Equal(s.ticks, tt.wantTicks) {
			t.Errorf("linearScale(0, %v) = hi %v ticks %v, want %v %v", tt.hi, s.hi, s.ticks, tt.wantHi, tt.wantTicks)
		}
		if s.at(0) != 0 || s.at(s.hi) != 1 {
			t.Errorf("linearScale(0, %v) maps 0 to %v and %v to %v", tt.hi, s.at(0), s.hi, s.at(s.hi))
		}
	}
}

func TestLogXScale(t *testing.T) {
	p := panel{logX: true, lines: []series{{xys: []xy{{X: 8, Y: 1}, {X: 1024, Y: 2}}}}}
	s := p.xScale()
	if s.lo != 1 || s.hi != 10_000 || !slices.Equal(s.ticks, []float64{1, 10, 100, 1000, 10_000}) {
		t.Fatalf("log scale of 8 … 1024: %+v", s)
	}
	if s.at(1) != 0 || s.at(10_000) != 1 || s.at(100) != 0.5 {
		t.Fatalf("log scale positions: %v %v %v", s.at(1), s.at(10_000), s.at(100))
	}
}

func TestTickLabel(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 5000: "5000", 25_000: "25k", 1_000_000: "1M", 2_500_000: "2.5M", 0.5: "0.5"} {
		if got := tickLabel(v); got != want {
			t.Errorf("tickLabel(%v) = %q, want %q", v, got, want)
		}
	}
}
