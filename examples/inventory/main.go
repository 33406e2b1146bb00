// Command inventory is a team's worker built on fleet: every command of the
// fleet binary (run, dev, publish, status, keys, dlq, version, bench), with
// the inventory domain registered.
package main

import (
	"github.com/fleetworks/fleet"

	"example.com/inventory/inventory"
)

// Set at build time: -ldflags "-X main.version=v1.2.3 -X main.revision=abc123".
var (
	version  = "(devel)"
	revision = "unknown"
)

func main() {
	fleet.Main(
		fleet.Name("inventory"),
		fleet.Version(version, revision),
		fleet.Domain("inventory", inventory.Register),
		// dev runs on the topic inventory and suggests this event.
		fleet.DevDemo(fleet.Demo{Topic: "inventory", Example: fleet.DemoExample{
			Type: inventory.TypeReceived, Key: "sku-1", Data: `{"sku":"sku-1","quantity":5}`,
			Look: "HGETALL 'inventory:{sku-1}'"}}),
	)
}
