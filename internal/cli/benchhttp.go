package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/handlers/ledger"
)

// The topics of the HTTP handler phases of `fleet bench --http-handler`.
const (
	benchHTTPTopic        = "bench-http"
	benchHTTPLatencyTopic = "bench-http-latency"
)

// benchHTTP runs the ledger over HTTP: the same stream through fleet with
// every event POSTed to a local endpoint that answers the ledger's effects,
// then the latency at rate (or at half the HTTP throughput when that is
// lower). It returns both runs.
func (c *benchCmd) benchHTTP(ctx context.Context, brokers []string, redisURL, run string, msgs []kafka.Message, rate float64, n int,
	progress io.Writer) ([]benchResult, error) {
	url, stop, err := startLedgerEndpoint()
	if err != nil {
		return nil, err
	}
	defer stop()
	extra := []string{"--http-handler", url}
	fmt.Fprintf(progress, "loading %d messages into %s\n", len(msgs), benchHTTPTopic)
	if err := produce(ctx, brokers, benchHTTPTopic, msgs, progress); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "running fleet with the ledger over HTTP (%s)\n", url)
	f, err := c.worker(ctx, brokers, redisURL, benchWorker{mode: "fleet", topic: benchHTTPTopic, group: "http-" + run, expect: len(msgs), args: extra}, progress)
	if err != nil {
		return nil, fmt.Errorf("fleet over HTTP: %w", err)
	}
	f.Name = "fleet over HTTP"
	if len(c.Brokers) == 0 {
		if err := deleteTopics(ctx, brokers, []string{benchHTTPTopic}); err != nil {
			fmt.Fprintf(progress, "delete bench topics: %v (going on)\n", err)
		}
	}
	if half := f.EventsPerSecond / 2; half < rate {
		rate, n = half, min(n, int(half*float64(n)/rate))
	}
	fmt.Fprintf(progress, "latency over HTTP: %d events at %.0f/s\n", n, rate)
	lat, err := c.worker(ctx, brokers, redisURL, benchWorker{mode: "fleet", topic: benchHTTPLatencyTopic, group: "http-latency-" + run, expect: n,
		feed: func() error { return producePaced(ctx, brokers, benchHTTPLatencyTopic, msgs[:n], rate) }, args: extra}, progress)
	if err != nil {
		return nil, fmt.Errorf("latency over HTTP: %w", err)
	}
	lat.Name, lat.RatePerSecond = "fleet over HTTP at half load", rate
	return []benchResult{f, lat}, nil
}

// startLedgerEndpoint serves the ledger over HTTP on a free loopback port:
// a payment in, its balance's INCRBY out, in the effects format. It
// returns the endpoint's URL and a function that stops it.
func startLedgerEndpoint() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("ledger endpoint: %w", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(ledgerOverHTTP), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Printf("ledger endpoint: %v\n", err)
		}
	}()
	return "http://" + ln.Addr().String() + "/events", func() { _ = srv.Close() }, nil
}

// ledgerOverHTTP is the ledger's handler as an HTTP endpoint would be: the
// same decoding and delta, the effect in the response.
func ledgerOverHTTP(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p, err := ledger.Decode(data)
	if err == nil && p.Account != r.Header.Get("Fleet-Key") {
		err = fmt.Errorf("payment for %s keyed %q", p.Account, r.Header.Get("Fleet-Key"))
	}
	var delta int64
	if err == nil {
		delta, err = ledger.Delta(r.Header.Get("Ce-Type"), p)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
		return
	}
	type effect struct {
		Op    string `json:"op"`
		Key   string `json:"key"`
		Delta int64  `json:"delta"`
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string][]effect{"effects": {{Op: "INCRBY", Key: ledger.BalanceKey(p.Account), Delta: delta}}})
}
