package cli

import (
	"context"
	"testing"
	"time"
)

// TestWorkerOf1024Partitions is `fleet bench-partitions --partitions
// 8,1024` as a test (docs/operations.md, "Memory per partition"): one fleet
// run process assigned 1,024 source partitions with their retry tiers and
// parked topic (5,120 partitions) drains 20,000 events spread over them
// within a few times the drain of 8 partitions, its peak RSS stays under
// the chart's 256 MiB limit, and once idle it holds at most three
// goroutines per source partition (a session, its fetcher, and a heartbeat
// that ends a third of a lease after the last claim) and none for the
// partitions of the tiers.
func TestWorkerOf1024Partitions(t *testing.T) {
	if testing.Short() {
		t.Skip("two workers drain 20,000 events each: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	measure := func(partitions int) partitionResult {
		t.Helper()
		r, err := partitionRun{exe: binary, partitions: partitions, events: 20000, idle: 2 * time.Second, timeout: time.Minute}.measure(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Drained {
			t.Fatalf("%d partitions: %d events not drained within a minute", partitions, r.Events)
		}
		t.Logf("%d partitions (%d assigned): drained in %.1fs, peak RSS %.0f MiB, %d goroutines at the peak, %d idle",
			partitions, r.Assigned, r.DrainSeconds, r.PeakRSSMiB, r.PeakGoroutines, r.IdleGoroutines)
		return r
	}
	small, big := measure(8), measure(1024)
	if big.Assigned != 5*1024 {
		t.Errorf("%d partitions assigned, want 5,120: the source's, its three tiers' and its parked topic's", big.Assigned)
	}
	if most := 5*small.DrainSeconds + 10; big.DrainSeconds > most {
		t.Errorf("1,024 partitions drained in %.1fs, 8 in %.1fs: more than %.1fs", big.DrainSeconds, small.DrainSeconds, most)
	}
	if big.PeakRSSMiB >= 256 {
		t.Errorf("peak RSS %.0f MiB with 1,024 partitions, not under 256 MiB", big.PeakRSSMiB)
	}
	if most := 3*1024 + 100; big.IdleGoroutines > most {
		t.Errorf("%d goroutines idle with 1,024 partitions, more than %d", big.IdleGoroutines, most)
	}
}
