// Command fleet is the fleet binary: the ledger and orders domains, and the
// ledger's demo stream for `fleet dev`, on the entry point every team's
// binary uses (package github.com/fleetworks/fleet).
package main

import (
	"github.com/fleetworks/fleet"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/handlers/orders"
	"github.com/fleetworks/fleet/internal/ledgerdemo"
)

// Set at build time: -ldflags "-X main.version=v1.2.3 -X main.revision=abc123";
// an unstamped build is "(devel)", as Go names one.
var (
	version  = "(devel)"
	revision = "unknown"
)

func main() {
	fleet.Main(
		fleet.Version(version, revision),
		fleet.Domain("ledger", ledger.Register),
		fleet.Domain("orders", orders.Register),
		fleet.DevDemo(ledgerdemo.Demo()),
	)
}
