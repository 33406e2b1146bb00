package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetworks/fleet/internal/httphandler"
)

// DemoExample is one event the user may publish by hand to a running `dev`,
// and where to see what it did.
type DemoExample struct {
	Type, Key, Data string
	// Look is a redis-cli command (after -u URL) that shows what the
	// event changed, such as GET 'ledger:{acct-you}:balance'; "" prints
	// none.
	Look string
}

// devHelp is where a running `dev` is.
type devHelp struct {
	broker, redisURL, httpAddr, topic string
	workers                           int
	// console is the operator console, when it runs.
	console *devConsole
}

// demoRun generates the demo stream that c asks for; nil without a demo.
func (a *App) demoRun(c *devCmd) (*DemoRun, error) {
	if a.Demo == nil || a.Demo.Stream == nil {
		return nil, nil
	}
	run, err := a.Demo.Stream(DemoSize{Events: c.Events, Keys: c.Accounts, Duplicates: c.Duplicates, Seed: uint64(time.Now().UnixNano())}) // #nosec G115 -- a seed
	if err != nil {
		return nil, err
	}
	if run == nil || run.Check == nil {
		return nil, fmt.Errorf("the demo stream gave no messages or no check")
	}
	return run, nil
}

// example is the event keepRunningHelp suggests: the demo's; else one of
// the first type a Go domain registers, or of the first HTTP route (its
// pattern's prefix), with an empty JSON object as its data.
func (a *App) example(rdb redis.UniversalClient, routes []httphandler.Endpoint) DemoExample {
	if a.Demo != nil && a.Demo.Example.Type != "" {
		return a.Demo.Example
	}
	ex := DemoExample{Type: "your.event", Key: "key-1", Data: "{}"}
	if r, err := a.router(rdb); err == nil && len(r.Types()) > 0 {
		ex.Type = r.Types()[0]
	} else if len(routes) > 0 {
		ex.Type = exampleType(routes[0].Pattern)
	}
	return ex
}

// exampleType is a type a route's pattern matches: the pattern itself, or
// its prefix with "example" for the "*".
func exampleType(pattern string) string {
	prefix, wild := strings.CutSuffix(pattern, "*")
	if !wild {
		return pattern
	}
	return prefix + "example"
}

// keepRunningHelp says what runs and how to use it.
func keepRunningHelp(out io.Writer, app *App, h devHelp, ex DemoExample) {
	bin, redisURL := app.name(), redactURL(h.redisURL)
	fmt.Fprintf(out, `
still running (Ctrl-C stops):
  broker   %[1]s   topic %[4]s (dead letters: %[4]s.dlq)
  redis    %[2]s
  worker   http://%[3]s/metrics   consumer group %[5]s (%[6]d workers in this process)

publish an event, then watch it processed:
  %[7]s publish --brokers %[1]s --topic %[4]s --type %[8]s --source you \
    --key %[9]s --id you-1 --data '%[10]s'
  kcat -P -b %[1]s -t %[4]s -k %[9]s -H ce_specversion=1.0 -H ce_id=you-2 \
    -H ce_source=you -H ce_type=%[8]s -H content-type=application/json \
    <<< '%[10]s'
  curl -s http://%[3]s/metrics | grep fleet_consumer_events_finished_total
`, h.broker, redisURL, h.httpAddr, h.topic, devGroup, h.workers, bin, ex.Type, ex.Key, ex.Data)
	if ex.Look != "" {
		fmt.Fprintf(out, "  redis-cli -u %s %s\n", redisURL, ex.Look)
	}
	fmt.Fprintf(out, `  %[1]s keys get --redis %[2]s --group %[3]s --source you --id you-1 --key %[4]s
  %[1]s status --addr %[5]s
  %[1]s dlq list --brokers %[6]s --topic %[7]s
`, bin, redisURL, devGroup, ex.Key, h.httpAddr, h.broker, h.topic)
	if h.console != nil {
		fmt.Fprintf(out, "\nthe operator console, in a browser:\n  %s   (log in with the token %s)\n", h.console.url, h.console.token)
	}
	if bin != "fleet" {
		fmt.Fprintf(out, "(%s is this binary: with go run, write go run . instead; --log-level warn shows every failure and dead letter)\n", bin)
	}
}
