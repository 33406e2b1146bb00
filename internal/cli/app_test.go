package cli

import (
	"io"
	"strings"
	"testing"

	"github.com/fleetworks/fleet/internal/httphandler"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/handlers/ledger"
	"github.com/fleetworks/fleet/handlers/orders"
)

// fleetApp is the fleet command's domains, for the tests that run commands
// in this process; the tests that run the binary get its demo too.
var fleetApp = App{Domains: []Domain{{Name: "ledger", Register: ledger.Register}, {Name: "orders", Register: orders.Register}}}

func TestAppCheck(t *testing.T) {
	reg := func(*handlers.Router, handlers.View) error { return nil }
	tests := []struct {
		name string
		app  App
		want string
	}{
		{"fleet's", fleetApp, ""},
		{"none", App{}, ""},
		{"unnamed", App{Domains: []Domain{{Register: reg}}}, `domain ""`},
		{"upper case", App{Domains: []Domain{{Name: "Inventory", Register: reg}}}, "lower-case"},
		{"separator", App{Domains: []Domain{{Name: "a:b", Register: reg}}}, "lower-case"},
		{"twice", App{Domains: []Domain{{Name: "a", Register: reg}, {Name: "a", Register: reg}}}, "registered twice"},
		{"no function", App{Domains: []Domain{{Name: "a"}}}, "no register function"},
		{"one type twice", App{Domains: []Domain{{Name: "ledger", Register: ledger.Register}, {Name: "copy", Register: ledger.Register}}}, "domain copy"},
		{"demo without a topic", App{Demo: &Demo{Stream: func(DemoSize) (*DemoRun, error) { return nil, nil }}}, "needs a topic"},
		{"demo without a stream", App{Demo: &Demo{Topic: "t"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.app.check()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("check: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("check: %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

// TestAppRouterNamesDomain: two domains routing one type fail at start, and
// the error names the domain that came second.
func TestAppRouterNamesDomain(t *testing.T) {
	app := App{Domains: []Domain{{Name: "ledger", Register: ledger.Register}, {Name: "copy", Register: ledger.Register}}}
	_, err := app.router(nil)
	if err == nil || !strings.Contains(err.Error(), "domain copy") || !strings.Contains(err.Error(), "already has a handler") {
		t.Fatalf("router: %v", err)
	}
}

// TestExample: dev suggests the demo's event, a Go domain's type, or a type
// an HTTP route takes.
func TestExample(t *testing.T) {
	route := func(p string) []httphandler.Endpoint {
		e, err := httphandler.ParseEndpoint(p + "=http://127.0.0.1:1/")
		if err != nil {
			t.Fatal(err)
		}
		return []httphandler.Endpoint{e}
	}
	demo := &Demo{Topic: "t", Example: DemoExample{Type: "inventory.received", Key: "sku-1", Data: `{"sku":"sku-1"}`}}
	for _, tt := range []struct {
		app    App
		routes []httphandler.Endpoint
		want   string
	}{
		{App{Demo: demo}, route("x.*"), "inventory.received"},
		{fleetApp, route("x.*"), "order.cancelled"},
		{App{}, route("stock.*"), "stock.example"},
		{App{}, route("stock.counted"), "stock.counted"},
		{App{}, route("*"), "example"},
		{App{}, nil, "your.event"},
	} {
		if got := tt.app.example(nil, tt.routes).Type; got != tt.want {
			t.Errorf("example of %+v with %v: %q, want %q", tt.app, tt.routes, got, tt.want)
		}
	}
}

// TestAppRefusedExitsTwo: a binary whose options cannot run says why in
// one line and exits 2, whatever the command.
func TestAppRefusedExitsTwo(t *testing.T) {
	app := App{Domains: []Domain{{Name: "a"}}}
	err := Run(app, []string{"version"}, io.Discard)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), `domain "a" has no register function`) {
		t.Fatalf("err = %v, exit %d", err, exitCode(err))
	}
}
