package consumer

import (
	"math/rand/v2"
	"testing"
)

func TestWatermark(t *testing.T) {
	tests := []struct {
		name   string
		start  int64
		add    []int64
		finish []int64
		want   int64
	}{
		{"nothing fetched", 7, nil, nil, 7},
		{"in flight holds the mark", 0, []int64{0, 1, 2}, nil, 0},
		{"in order", 0, []int64{0, 1, 2}, []int64{0, 1, 2}, 3},
		{"gap held by the first", 0, []int64{0, 1, 2}, []int64{1, 2}, 0},
		{"out of order completes", 0, []int64{0, 1, 2}, []int64{2, 1, 0}, 3},
		{"stops at the first unfinished", 10, []int64{10, 11, 12, 13}, []int64{10, 12, 13}, 11},
		{"offset gaps (compaction)", 0, []int64{5, 9, 20}, []int64{5, 9}, 20},
		{"all done across gaps", 0, []int64{5, 9, 20}, []int64{20, 9, 5}, 21},
		{"unknown offset ignored", 0, []int64{1}, []int64{99}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWatermark(tt.start)
			for _, o := range tt.add {
				w.add(o, 0, 0)
			}
			for _, o := range tt.finish {
				w.finish(o)
			}
			if got := w.commitOffset(); got != tt.want {
				t.Fatalf("commit offset = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestWatermarkRandom finishes offsets in random order and checks the mark
// against a direct computation after every step.
func TestWatermarkRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	w := newWatermark(0)
	const n = 5000
	done := make([]bool, n)
	var order []int64
	next := int64(0)
	for o := int64(0); o < n; o++ {
		w.add(o, 0, 0)
		order = append(order, o)
		if r.IntN(3) == 0 && len(order) > 0 {
			i := r.IntN(len(order))
			f := order[i]
			order = append(order[:i], order[i+1:]...)
			done[f] = true
			got := w.finish(f)
			for next < o+1 && done[next] {
				next++
			}
			if got != next {
				t.Fatalf("after finishing %d: mark %d, want %d", f, got, next)
			}
		}
	}
	for _, f := range order {
		w.finish(f)
	}
	if got := w.commitOffset(); got != n {
		t.Fatalf("final mark %d, want %d", got, n)
	}
	if w.inFlight() != 0 {
		t.Fatalf("in flight %d after all finished", w.inFlight())
	}
}

func BenchmarkWatermark(b *testing.B) {
	w := newWatermark(0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		o := int64(i)
		w.add(o, 0, 0)
		if i%4 == 3 {
			for j := o - 3; j <= o; j++ {
				w.finish(j)
			}
		}
	}
}

// TestWatermarkOldest reports the oldest unfinished offset's times.
func TestWatermarkOldest(t *testing.T) {
	w := newWatermark(10)
	if _, _, _, ok := w.oldest(); ok {
		t.Fatal("oldest of an empty watermark")
	}
	w.add(10, 100, 1000)
	w.add(11, 200, 2000)
	w.add(12, 300, 3000)
	w.finish(11)
	if added, ts, n, ok := w.oldest(); !ok || added != 100 || ts != 1000 || n != 3 {
		t.Fatalf("oldest = %d, %d, %d, %v; want 10's times, 3 in flight", added, ts, n, ok)
	}
	w.finish(10)
	if added, ts, n, ok := w.oldest(); !ok || added != 300 || ts != 3000 || n != 1 {
		t.Fatalf("oldest after 10 and 11 = %d, %d, %d, %v; want 12's", added, ts, n, ok)
	}
	w.finish(12)
	if _, _, _, ok := w.oldest(); ok {
		t.Fatal("oldest with nothing in flight")
	}
}

// TestWatermarkStartAt moves the start of a partition that starts at the
// first or last offset, and only until it has fetched something.
func TestWatermarkStartAt(t *testing.T) {
	w := newWatermark(-2)
	w.startAt(40)
	if got := w.commitOffset(); got != 40 {
		t.Fatalf("commit offset = %d, want the start found, 40", got)
	}
	w.add(41, 0, 0)
	w.finish(41)
	w.startAt(3)
	if got := w.commitOffset(); got != 42 {
		t.Errorf("commit offset = %d after a message, want 42: a start found late must not move it", got)
	}
	w = newWatermark(17)
	w.startAt(3)
	if got := w.commitOffset(); got != 17 {
		t.Errorf("a committed start moved to %d", got)
	}
}
