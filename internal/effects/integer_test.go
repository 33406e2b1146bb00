package effects

import (
	"math"
	"testing"
)

// TestParseInt checks Redis's integer syntax, where strconv is looser.
func TestParseInt(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"7", 7, true},
		{"-7", -7, true},
		{"9223372036854775807", math.MaxInt64, true},
		{"-9223372036854775808", math.MinInt64, true},
		{"9223372036854775808", 0, false},
		{"-9223372036854775809", 0, false},
		{"99999999999999999999", 0, false},
		{"+5", 0, false},
		{"007", 0, false},
		{"00", 0, false},
		{"-0", 0, false},
		{"-007", 0, false},
		{" 5", 0, false},
		{"5 ", 0, false},
		{"\t1", 0, false},
		{"1\n", 0, false},
		{"", 0, false},
		{"-", 0, false},
		{"+", 0, false},
		{"1.5", 0, false},
		{"1e3", 0, false},
		{"0x10", 0, false},
		{"1_000", 0, false},
		{"٣", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseInt(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseInt(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestAddInt(t *testing.T) {
	tests := []struct {
		a, b, want int64
		ok         bool
	}{
		{1, 2, 3, true},
		{math.MaxInt64 - 1, 1, math.MaxInt64, true},
		{math.MaxInt64, 1, 0, false},
		{math.MinInt64 + 1, -1, math.MinInt64, true},
		{math.MinInt64, -1, 0, false},
		{math.MinInt64, math.MaxInt64, -1, true},
		{0, math.MinInt64, math.MinInt64, true},
		{-1, math.MinInt64, 0, false},
	}
	for _, tt := range tests {
		got, ok := addInt(tt.a, tt.b)
		if got != tt.want || ok != tt.ok {
			t.Errorf("addInt(%d, %d) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
		}
	}
}
