package cli

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// App is one binary built on fleet: its name, its build, its domains and
// the demo `dev` publishes. The zero App is fleet without domains.
type App struct {
	// Name is the binary's name in help and error messages; "fleet" when
	// empty.
	Name string
	// Version and Revision are the build's, as `version` and
	// fleet_build_info report them; "(devel)" and "unknown" when empty.
	Version, Revision string
	// Domains register the binary's handlers, in order.
	Domains []Domain
	// Demo, when set, is what `dev` publishes and checks.
	Demo *Demo
}

// Domain is a named set of handlers. Register registers them on r; view
// reads the projections they maintain.
type Domain struct {
	Name     string
	Register func(r *handlers.Router, view handlers.View) error
}

// Demo is a domain's demo for `dev`: a stream of events with duplicates
// and poison messages, and a check of what the domains made of it.
type Demo struct {
	// Topic is the default --topic of `dev`.
	Topic string
	// Stream returns one run's messages; size says how many. Without one,
	// dev runs the domains on Topic and suggests Example.
	Stream func(size DemoSize) (*DemoRun, error)
	// Example is the event a running `dev` suggests to publish by hand.
	Example DemoExample
}

// DemoSize is what `dev`'s flags ask of a demo stream.
type DemoSize struct {
	// Events is the number of unique events, Keys the number of message
	// keys (aggregates) they spread over, Duplicates the share of events
	// published twice.
	Events, Keys int
	Duplicates   float64
	// Seed differs between runs: two runs on one Redis must not share an
	// event id or an aggregate.
	Seed uint64
}

// DemoRun is one demo stream and what a correct run makes of it.
type DemoRun struct {
	// Source is the events' ce_source, printed for the user.
	Source string
	// Messages are published in order to the demo topic.
	Messages []kafka.Message
	// Unique and Duplicates count the messages that are events: each
	// unique event is processed once, each duplicate skipped.
	Unique, Duplicates int
	// Poison holds the dead-letter kind (fleet-error-kind) of every other
	// message.
	Poison []string
	// Check reads the projections once every message is finished and
	// returns a line for the user and what does not match.
	Check func(ctx context.Context, view handlers.View) (DemoCheck, error)
}

// DemoCheck is what a demo's check found.
type DemoCheck struct {
	// Summary is one line for the user ("all 50 balances match").
	Summary string
	// Problems are what does not match, one line each; none when the run
	// is correct.
	Problems []string
}

// domainName is what a domain may be called: it names the domain in
// errors and logs.
var domainName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// check refuses an App that cannot run: unnamed or doubly named domains,
// domains without a register function or routing one type twice, a demo
// without a topic.
func (a *App) check() error {
	seen := map[string]bool{}
	for _, d := range a.Domains {
		switch {
		case !domainName.MatchString(d.Name):
			return fmt.Errorf("domain %q: a name is lower-case letters, digits, '-' and '_', starting with a letter", d.Name)
		case seen[d.Name]:
			return fmt.Errorf("domain %q is registered twice", d.Name)
		case d.Register == nil:
			return fmt.Errorf("domain %q has no register function", d.Name)
		}
		seen[d.Name] = true
	}
	if a.Demo != nil && a.Demo.Topic == "" {
		return errors.New("the dev demo needs a topic")
	}
	// Registering with no Redis yet: a domain keeps its view, and reads
	// through it only when it handles an event.
	if _, err := a.router(nil); err != nil {
		return err
	}
	return nil
}

// router registers every domain on a new router; their views read rdb.
func (a *App) router(rdb redis.UniversalClient) (*handlers.Router, error) {
	r := handlers.NewRouter()
	view := dedupe.NewRedisView(rdb)
	for _, d := range a.Domains {
		if err := d.Register(r, view); err != nil {
			return nil, fmt.Errorf("domain %s: %w", d.Name, err)
		}
	}
	return r, nil
}

func (a *App) name() string { return or(a.Name, "fleet") }

func (a *App) version() string { return or(a.Version, "(devel)") }

func (a *App) revision() string { return or(a.Revision, "unknown") }

func (a *App) description() string {
	if a.name() == "fleet" {
		return "An idempotent, message-driven worker fleet: Kafka in, domain handlers, Redis-backed idempotency."
	}
	return a.name() + ": domain handlers on fleet, an idempotent, message-driven worker fleet."
}

// devTopic is the default topic of `dev`: the demo's, or "events".
func (a *App) devTopic() string {
	if a.Demo != nil {
		return a.Demo.Topic
	}
	return "events"
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}
