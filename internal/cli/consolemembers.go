package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/internal/console"
)

// members describes the group: its members, by member id, with the
// partitions each is assigned.
func (b *consoleBackend) members(ctx context.Context) ([]console.Member, error) {
	resp, err := b.client.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{b.cfg.Group}})
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", b.cfg.Group, err)
	}
	var out []console.Member
	for _, g := range resp.Groups {
		if g.Error != nil {
			return nil, fmt.Errorf("describe group %s: %w", b.cfg.Group, g.Error)
		}
		for _, m := range g.Members {
			cm := console.Member{ID: m.MemberID, ClientID: m.ClientID, Host: memberHost(m.ClientHost)}
			for _, t := range m.MemberAssignments.Topics {
				for _, p := range slices.Sorted(slices.Values(t.Partitions)) {
					cm.Assigned = append(cm.Assigned, t.Topic+"/"+strconv.Itoa(p))
				}
			}
			slices.Sort(cm.Assigned)
			out = append(out, cm)
		}
	}
	slices.SortFunc(out, func(a, b console.Member) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// memberHost is the host a member connects from, as the broker reports
// it: "/10.0.0.7" (Kafka) or "10.0.0.7:51234" (host and port).
func memberHost(clientHost string) string {
	h := strings.TrimPrefix(clientHost, "/")
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.Trim(h, "[]")
}

// statusURL is the /status of a process on host at port.
func statusURL(host string, port int) string {
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/status"
}

// memberStatuses asks each member's /status (the configured URLs, or each
// member's host at the status port), at once and each within the status
// timeout, and fills in the members it finds; it returns what could not be
// read, one sentence each.
func (b *consoleBackend) memberStatuses(ctx context.Context, members []console.Member) []string {
	urls := b.cfg.StatusURLs
	if len(urls) == 0 {
		for i := range members {
			members[i].StatusURL = statusURL(members[i].Host, b.cfg.StatusPort)
			if !slices.Contains(urls, members[i].StatusURL) {
				urls = append(urls, members[i].StatusURL)
			}
		}
	}
	answers := make([]statusAnswer, len(urls))
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() { answers[i] = b.askStatus(ctx, u) })
	}
	wg.Wait()
	found := map[string]statusAnswer{}
	var problems []string
	for _, a := range answers {
		if a.err != nil {
			problems = append(problems, a.err.Error())
			continue
		}
		for id := range a.workers {
			found[id] = a
		}
	}
	for i := range members {
		m := &members[i]
		a, ok := found[m.ID]
		if !ok {
			if len(b.cfg.StatusURLs) > 0 || answered(answers, m.StatusURL) {
				problems = append(problems, fmt.Sprintf("no /status asked names member %s (%s)", m.ID, m.Host))
			}
			continue
		}
		m.StatusURL = a.url
		st := a.workers[m.ID]
		m.Status = &st
	}
	return problems
}

// answered reports whether the /status at u answered.
func answered(answers []statusAnswer, u string) bool {
	for _, a := range answers {
		if a.url == u {
			return a.err == nil
		}
	}
	return false
}

// statusAnswer is one process's /status: its workers' summaries by member
// id, or why it could not be read.
type statusAnswer struct {
	url     string
	workers map[string]console.MemberStatus
	err     error
}

// askStatus reads the /status at u.
func (b *consoleBackend) askStatus(ctx context.Context, u string) statusAnswer {
	shown := redactURL(u)
	a := statusAnswer{url: u}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.StatusTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		a.err = fmt.Errorf("/status at %s: %v", shown, err)
		return a
	}
	resp, err := b.http.Do(req)
	if err != nil {
		a.err = fmt.Errorf("/status at %s did not answer: %v", shown, errors.Unwrap(err))
		return a
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		a.err = fmt.Errorf("/status at %s answered %s", shown, resp.Status)
		return a
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		a.err = fmt.Errorf("/status at %s: %v", shown, err)
		return a
	}
	var st processStatus
	if err := json.Unmarshal(body, &st); err != nil {
		a.err = fmt.Errorf("/status at %s: not a fleet status: %v", shown, err)
		return a
	}
	a.workers = map[string]console.MemberStatus{}
	if st.Member != "" {
		a.workers[st.Member] = statusSummary(st.Worker, st.Status)
	}
	for _, w := range st.Workers {
		if w.Member != "" {
			a.workers[w.Member] = statusSummary(w.Worker, w.Status)
		}
	}
	return a
}

// statusSummary is what the console shows of a worker's status.
func statusSummary(worker string, st consumer.Status) console.MemberStatus {
	s := console.MemberStatus{Worker: worker, Joined: st.Joined, NotReady: st.NotReady, InFlight: st.InFlight}
	for _, e := range st.LastErrors {
		s.LastErrors = append(s.LastErrors, errorLine(e))
	}
	return s
}

// errorLine is one of a worker's last errors in a line: when, what, where,
// which event, and the error.
func errorLine(e consumer.ErrorEntry) string {
	where := e.Topic
	if e.Partition != nil {
		where += fmt.Sprintf("/%d", *e.Partition)
	}
	if e.Offset != nil {
		where += fmt.Sprintf("@%d", *e.Offset)
	}
	line := e.Time.UTC().Format(time.RFC3339) + " " + e.What
	for _, part := range []string{where, e.Type, e.ID} {
		if part != "" {
			line += " " + part
		}
	}
	if e.Attempt > 0 {
		line += fmt.Sprintf(" (attempt %d)", e.Attempt)
	}
	return line + ": " + e.Error
}
