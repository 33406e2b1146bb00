// Package fleet builds a worker binary with a team's own domains: every
// command of the fleet binary (run, dev, bench, publish, status, keys, dlq,
// version), with the same flags, FLEET_* variables, metrics, health
// endpoints and exit codes, and the team's handlers registered.
//
//	package main
//
//	import (
//		"github.com/fleetworks/fleet"
//
//		"example.com/inventory/inventory"
//	)
//
//	func main() {
//		fleet.Main(fleet.Name("inventory"), fleet.Domain("inventory", inventory.Register))
//	}
//
// A domain's register function routes event types to handlers on a
// [handlers.Router] and gets the [handlers.View] its handlers read
// projections through: fleet's Redis in `run`, the embedded one in `dev`.
// The fleet command itself is this with the ledger and orders domains and
// the ledger's demo stream (cmd/fleet).
package fleet

import (
	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/cli"
)

// Main runs the command named by the process's arguments and ends the
// process: exit code 0 for success, 2 for bad configuration or usage, 1
// otherwise. Options that cannot run (a domain registered twice, an unnamed
// one) end it with 2 before any command runs.
func Main(opts ...Option) {
	cli.Main(app(opts))
}

// Option configures the binary Main runs.
type Option interface {
	apply(*cli.App)
}

type optionFunc func(*cli.App)

func (f optionFunc) apply(a *cli.App) { f(a) }

func app(opts []Option) cli.App {
	var a cli.App
	for _, o := range opts {
		o.apply(&a)
	}
	return a
}

// RegisterFunc registers a domain's handlers on r. view reads the
// projections the handlers maintain (a state machine checks the current
// state before a transition); it reads the Redis that fleet writes the
// handlers' effects to. It is called more than once (fleet checks every
// domain before any command runs, and each worker registers them), so it
// registers and does nothing else; view is not to be read before an event
// is handled.
type RegisterFunc func(r *handlers.Router, view handlers.View) error

// Domain adds a domain: name (lower-case letters, digits, '-' and '_')
// names it in errors; register routes its event types. Domains register
// in the order given; two domains may not route one event type.
func Domain(name string, register RegisterFunc) Option {
	return optionFunc(func(a *cli.App) {
		a.Domains = append(a.Domains, cli.Domain{Name: name, Register: register})
	})
}

// Name is the binary's name in help and error messages ("fleet" when not
// given).
func Name(name string) Option {
	return optionFunc(func(a *cli.App) { a.Name = name })
}

// Version stamps the build that `version` and fleet_build_info report
// ("(devel)" and "unknown" when not given). Set them at build time in
// package main, as cmd/fleet does:
//
//	go build -ldflags "-X main.version=v1.2.3 -X main.revision=$(git rev-parse HEAD)"
func Version(version, revision string) Option {
	return optionFunc(func(a *cli.App) { a.Version, a.Revision = version, revision })
}
