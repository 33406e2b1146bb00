package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
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
	var st consumer.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("%s: not a fleet status: %w", c.url(), err)
	}
	return printStatus(stdout, st)
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
