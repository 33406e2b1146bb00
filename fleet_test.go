package fleet

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fleetworks/fleet/handlers"
	"github.com/fleetworks/fleet/internal/cli"
)

// TestEvent: a demo's event is the CloudEvents binary mode fleet reads, and
// an empty attribute is left out (a demo's poison).
func TestEvent(t *testing.T) {
	m := Event("sku-1", handlers.Event{ID: "e1", Source: "shop", Type: "inventory.received", Subject: "s",
		Time: time.Date(2026, 11, 29, 12, 0, 0, 5, time.FixedZone("x", 3600)), DataContentType: "application/json",
		Data: []byte(`{"quantity":1}`), Extensions: map[string]string{"zeta": "z", "alpha": "a"}})
	var got []string
	for _, h := range m.Headers {
		got = append(got, h.Key+"="+string(h.Value))
	}
	want := "ce_specversion=1.0 ce_id=e1 ce_source=shop ce_type=inventory.received ce_subject=s ce_time=2026-11-29T11:00:00.000000005Z " +
		"content-type=application/json ce_alpha=a ce_zeta=z"
	if strings.Join(got, " ") != want || string(m.Key) != "sku-1" || string(m.Value) != `{"quantity":1}` {
		t.Fatalf("headers %q\nwant     %q", strings.Join(got, " "), want)
	}
	poison := Event("k", handlers.Event{Source: "shop", Type: "t"})
	for _, h := range poison.Headers {
		if h.Key == "ce_id" || h.Key == "ce_time" || h.Key == "content-type" {
			t.Errorf("an empty attribute was sent: %s", h.Key)
		}
	}
}

// TestOptions: each option lands in the app the command line runs, and a
// demo's stream and check pass through whole.
func TestOptions(t *testing.T) {
	register := func(*handlers.Router, handlers.View) error { return nil }
	checked := false
	a := app([]Option{
		Name("inventory"), Version("v1.2.3", "abc"),
		Domain("inventory", register), Domain("audit", register),
		DevDemo(Demo{Topic: "inventory", Example: DemoExample{Type: "inventory.received"},
			Stream: func(size DemoSize) (DemoRun, error) {
				if size.Events != 7 || size.Keys != 3 {
					return DemoRun{}, errors.New("size not passed")
				}
				return DemoRun{Source: "s", Unique: 1, Poison: []string{"decode"},
					Messages: []Message{{Key: []byte("k"), Value: []byte("v"), Headers: []Header{{Key: "ce_id", Value: []byte("1")}}}},
					Check: func(context.Context, handlers.View) (DemoCheck, error) {
						checked = true
						return DemoCheck{Summary: "ok", Problems: []string{"p"}}, nil
					}}, nil
			}}),
	})
	if a.Name != "inventory" || a.Version != "v1.2.3" || a.Revision != "abc" || len(a.Domains) != 2 || a.Domains[1].Name != "audit" {
		t.Fatalf("app %+v", a)
	}
	if a.Demo == nil || a.Demo.Topic != "inventory" || a.Demo.Example.Type != "inventory.received" {
		t.Fatalf("demo %+v", a.Demo)
	}
	run, err := a.Demo.Stream(cli.DemoSize{Events: 7, Keys: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Messages) != 1 || string(run.Messages[0].Headers[0].Value) != "1" || run.Source != "s" || run.Unique != 1 {
		t.Fatalf("run %+v", run)
	}
	c, err := run.Check(context.Background(), nil)
	if err != nil || !checked || c.Summary != "ok" || len(c.Problems) != 1 {
		t.Fatalf("check %+v, %v", c, err)
	}
	noCheck := app([]Option{DevDemo(Demo{Topic: "t", Stream: func(DemoSize) (DemoRun, error) { return DemoRun{}, nil }})})
	if _, err := noCheck.Demo.Stream(cli.DemoSize{}); err == nil || !strings.Contains(err.Error(), "no check") {
		t.Fatalf("a demo without a check: %v", err)
	}
}
