package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/fleetworks/fleet/consumer"
)

// statusCmd is `fleet status`: what a running fleet process is doing, from
// its /status endpoint.
type statusCmd struct {
	Addr string `env:"FLEET_HTTP_ADDR" default:"127.0.0.1:8080" help:"The process's HTTP address (its --http-addr), host:port or a URL."`
	JSON bool   `name:"json" help:"Print the raw JSON of /status."`
}

func (c *statusCmd) url() string {
	a := strings.TrimSuffix(c.Addr, "/")
	if strings.HasPrefix(a, "http://") || strings.HasPrefix(a, "https://") {
		return a + "/status"
	}
	if strings.HasPrefix(a, ":") {
		a = "127.0.0.1" + a
	}
	return "http://" + a + "/status"
}

func (c *statusCmd) Run(stdout io.Writer) error {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(c.url())
	if err != nil {
		return fmt.Errorf("ask %s: %w", c.url(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", c.url(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", c.url(), resp.Status)
	}
	if c.JSON {
		_, err := stdout.Write(body)
		return err
	}
	var st processStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("%s: not a fleet status: %w", c.url(), err)
	}
	if len(st.Workers) > 0 {
		fmt.Fprintf(stdout, "this process runs %d workers of group %s\n\nworker %s:\n", len(st.Workers)+1, printable(st.Group), dash(st.Worker))
	}
	if err := printStatus(stdout, st.Status); err != nil {
		return err
	}
	for _, w := range st.Workers {
		fmt.Fprintf(stdout, "\nworker %s:\n", dash(w.Worker))
		if err := printStatus(stdout, w.Status); err != nil {
			return err
		}
	}
	return nil
}

// processStatus is /status: the engine serving it, and the other workers
// of the same process (fleet dev runs several), each with its own
// assignments.
type processStatus struct {
	consumer.Status
	// Worker labels the worker among several ("1", "2", … as its metrics'
	// worker label); empty when the process runs one.
	Worker  string         `json:"worker,omitempty"`
	Workers []workerStatus `json:"workers,omitempty"`
}

// workerStatus is another worker of the process.
type workerStatus struct {
	consumer.Status
	Worker string `json:"worker"`
}

// statusPeers are the workers of one process that serve no HTTP of their
// own: the one that does shows them in its /status. It is safe for
// concurrent use.
type statusPeers struct {
	mu    sync.Mutex
	peers map[string]func() consumer.Status
}

func (p *statusPeers) add(worker string, status func() consumer.Status) {
	p.mu.Lock()
	if p.peers == nil {
		p.peers = map[string]func() consumer.Status{}
	}
	p.peers[worker] = status
	p.mu.Unlock()
}

// all returns the peers' status, by worker label.
func (p *statusPeers) all() []workerStatus {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]workerStatus, 0, len(p.peers))
	for _, w := range slices.SortedFunc(maps.Keys(p.peers), func(a, b string) int { return cmp.Compare(len(a), len(b))*2 + cmp.Compare(a, b) }) {
		out = append(out, workerStatus{Status: p.peers[w](), Worker: w})
	}
	return out
}

func printStatus(w io.Writer, st consumer.Status) error {
	ready := "yes"
	if st.NotReady != "" {
		ready = "no: " + st.NotReady
	}
	fmt.Fprintf(w, "group %s, generation %d, member %s\nready: %s\nin flight: %d events\n\n", st.Group, st.Generation, dash(st.Member), ready, st.InFlight)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tNEXT\tHIGH-WATER\tLAG\tIN-FLIGHT\tOLDEST\tTIME-LAG")
	for _, p := range st.Partitions {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", p.Topic, p.Partition, offset(p.Committed), offset(p.Next),
			offset(p.HighWaterMark), p.Lag, p.InFlight, seconds(p.OldestInFlightSeconds), seconds(p.TimeLagSeconds))
	}
	if len(st.Partitions) == 0 {
		fmt.Fprintln(tw, "(no partitions assigned)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := printGates(w, st.Gates); err != nil {
		return err
	}
	if len(st.LastErrors) == 0 {
		_, err := fmt.Fprintln(w, "\nno errors")
		return err
	}
	fmt.Fprintln(w, "\nlast errors, newest first:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tWHAT\tWHERE\tID\tTYPE\tATTEMPT\tERROR")
	for _, e := range st.LastErrors {
		where := e.Topic
		if e.Partition != nil {
			where += fmt.Sprintf("/%d", *e.Partition)
		}
		if e.Offset != nil {
			where += fmt.Sprintf("@%d", *e.Offset)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", e.Time.Format(time.RFC3339), dash(e.What), dash(where), dash(e.ID), dash(e.Type),
			e.Attempt, truncateText(e.Error, 80))
	}
	return tw.Flush()
}

// printGates prints the group's gated keys (ordered retries), held first.
func printGates(w io.Writer, g *consumer.GateStatus) error {
	if g == nil {
		return nil
	}
	fmt.Fprintf(w, "\ngated keys: %d (held: %d; oldest gate %s, oldest held %s)\n", g.Gated, g.Held,
		seconds(g.OldestGateSeconds), seconds(g.OldestHeldSeconds))
	if len(g.Keys) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tTOPIC\tPARTITION\tSTATE\tPARKED\tAGE\tHEAD")
	for _, k := range g.Keys {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", printable(k.Key), printable(k.Topic), k.Partition, k.State, k.Parked,
			seconds(k.AgeSeconds), k.Head)
	}
	return tw.Flush()
}

func offset(o int64) string {
	if o < 0 {
		return "-"
	}
	return fmt.Sprint(o)
}

func seconds(s float64) string {
	if s == 0 {
		return "-"
	}
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}
