package cli

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestBenchCurvesQuick: fleet bench-curves --quick writes every curve
// into curves.json with figures that hold together, and four SVG plots.
func TestBenchCurvesQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a dozen worker processes")
	}
	dir := t.TempDir()
	cmd := exec.Command(binary, "bench-curves", "--quick", "--out", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	tables, err := cmd.Output()
	if err != nil {
		t.Fatalf("fleet bench-curves: %v\n%s", err, stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(dir, "curves.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r curvesReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("curves.json: %v", err)
	}
	checkCardinality(t, &r)
	checkMemory(t, &r)
	checkPartitions(t, &r)
	checkLatency(t, &r)
	for _, heading := range []string{"### Key cardinality", "### Redis memory", "### Worker memory", "### Latency by load"} {
		if !bytes.Contains(tables, []byte(heading)) {
			t.Errorf("tables lack %q:\n%s", heading, tables)
		}
	}
	for _, name := range []string{"cardinality.svg", "memory.svg", "partitions.svg", "latency.svg"} {
		if err := parseSVG(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func checkCardinality(t *testing.T, r *curvesReport) {
	t.Helper()
	if len(r.Cardinality) != 2*len(r.Plan.Keys) {
		t.Fatalf("cardinality: %d points, want uniform and zipf for each of %v", len(r.Cardinality), r.Plan.Keys)
	}
	for i, p := range r.Cardinality {
		dist := [2]string{"uniform", "zipf"}[i%2]
		if p.Keys != r.Plan.Keys[i/2] || p.Distribution != dist || p.Messages < r.Plan.Events || p.EventsPerSecond <= 0 || p.CPUMicros <= 0 {
			t.Errorf("cardinality point %d: %+v, want %d keys %s, at least %d messages, positive rate and CPU", i, p, r.Plan.Keys[i/2], dist, r.Plan.Events)
		}
	}
	if r.Throughput != r.Cardinality[0].EventsPerSecond {
		t.Errorf("throughput %v, want the uniform run over the fewest keys: %v", r.Throughput, r.Cardinality[0].EventsPerSecond)
	}
}

// checkMemory: used_memory grows with the records, and packed records
// take less of it.
func checkMemory(t *testing.T, r *curvesReport) {
	t.Helper()
	last := map[bool]memoryPoint{}
	n := map[bool]int{}
	for _, p := range r.Memory {
		if prev, ok := last[p.Packed]; ok && (p.Records <= prev.Records || p.UsedMemory <= prev.UsedMemory) {
			t.Errorf("memory (packed %v): %d records use %d bytes after %d records used %d", p.Packed, p.Records, p.UsedMemory, prev.Records, prev.UsedMemory)
		}
		if p.UsedMemory <= 0 || p.BytesPerRecord <= 0 {
			t.Errorf("memory point %+v: want positive memory", p)
		}
		last[p.Packed] = p
		n[p.Packed]++
	}
	if n[false] != r.Plan.MemorySteps || n[true] != r.Plan.MemorySteps {
		t.Fatalf("memory: %d unpacked and %d packed points, want %d each", n[false], n[true], r.Plan.MemorySteps)
	}
	if last[true].BytesPerRecord >= last[false].BytesPerRecord {
		t.Errorf("packed records take %.0f bytes each, unpacked %.0f: want fewer", last[true].BytesPerRecord, last[false].BytesPerRecord)
	}
}

// checkPartitions: every run drained, and more partitions cost more
// memory and goroutines.
func checkPartitions(t *testing.T, r *curvesReport) {
	t.Helper()
	if len(r.Partitions) != len(r.Plan.Partitions) {
		t.Fatalf("partitions: %d points, want %d", len(r.Partitions), len(r.Plan.Partitions))
	}
	for i, p := range r.Partitions {
		if !p.Drained || p.Partitions != r.Plan.Partitions[i] || p.PeakRSSMiB <= 0 || p.IdleGoroutines <= 0 {
			t.Errorf("partitions point %d: %+v", i, p)
		}
		if i == 0 {
			continue
		}
		prev := r.Partitions[i-1]
		if p.PeakRSSMiB <= prev.PeakRSSMiB || p.IdleGoroutines <= prev.IdleGoroutines {
			t.Errorf("%d partitions: %.0f MiB, %d goroutines idle; %d partitions: %.0f MiB, %d: want growth",
				prev.Partitions, prev.PeakRSSMiB, prev.IdleGoroutines, p.Partitions, p.PeakRSSMiB, p.IdleGoroutines)
		}
	}
}

// checkLatency: one run at each share of the throughput, with its
// quantiles in order.
func checkLatency(t *testing.T, r *curvesReport) {
	t.Helper()
	if len(r.Latency) != len(r.Plan.Shares) {
		t.Fatalf("latency: %d points, want %d", len(r.Latency), len(r.Plan.Shares))
	}
	for i, p := range r.Latency {
		if p.Share != r.Plan.Shares[i] || p.RatePerSecond != p.Share*r.Throughput || p.Events <= 0 || p.P50ms <= 0 || p.P99ms < p.P50ms {
			t.Errorf("latency point %d: %+v at throughput %v", i, p, r.Throughput)
		}
	}
}

// parseSVG reads an SVG file to its end as XML, and wants an <svg> root
// with more in it.
func parseSVG(path string) error {
	f, err := os.Open(path) // #nosec G304 -- a file of the test's own directory
	if err != nil {
		return err
	}
	defer f.Close()
	d := xml.NewDecoder(f)
	var root string
	elements := 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
			}
			elements++
		}
	}
	if root != "svg" || elements < 10 {
		return errors.New("not an SVG drawing: root " + root)
	}
	return nil
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1024: "1,024", 1000000: "1,000,000", -12345: "-12,345"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
