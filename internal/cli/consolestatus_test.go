package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestConsoleStatusNoRedirect: a member's /status is asked where the
// broker says the member is, which anyone who joins the group chooses; a
// /status that redirects does not send the console to another address
// (an internal service, a cloud's metadata endpoint), it is a problem.
func TestConsoleStatusNoRedirect(t *testing.T) {
	var reached atomic.Int32
	inside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached.Add(1)
		_, _ = w.Write([]byte(`{"member":"m-1"}`))
	}))
	t.Cleanup(inside.Close)
	hostile := httptest.NewServer(http.RedirectHandler(inside.URL+"/latest/meta-data/", http.StatusFound))
	t.Cleanup(hostile.Close)
	target, err := parseRedis(redisStandalone, "redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := newConsoleBackend(consoleConfig{Brokers: []string{"127.0.0.1:1"}, Redis: target, Group: "g", StatusURLs: []string{hostile.URL + "/status"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	a := b.askStatus(context.Background(), hostile.URL+"/status")
	if reached.Load() != 0 || a.err == nil || !strings.Contains(a.err.Error(), "answered 302") {
		t.Fatalf("a /status that redirects: the address it names was asked %d times; %v", reached.Load(), a.err)
	}
}
