package cli

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPprofOnItsOwnAddress: fleet run --pprof-addr serves the runtime's
// profiles there, and not beside /metrics.
func TestPprofOnItsOwnAddress(t *testing.T) {
	c := newCluster(t, 1)
	metrics, profiles := freeAddr(t), freeAddr(t)
	c.startWorker("p", "--http-addr", metrics, "--pprof-addr", profiles)
	eventually(t, 30*time.Second, "the profiles served", func() bool {
		code, body := get(profiles, "/debug/pprof/")
		return code == http.StatusOK && strings.Contains(body, "goroutine")
	})
	if code, body := get(profiles, "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Fatalf("goroutine profile: %d %.200s", code, body)
	}
	eventually(t, 30*time.Second, "/metrics served", func() bool { code, _ := get(metrics, "/metrics"); return code == http.StatusOK })
	if code, _ := get(metrics, "/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ beside /metrics: %d, want 404", code)
	}
}

func TestCheckPprofAddr(t *testing.T) {
	for _, tt := range []struct {
		pprof, http, status string
		ok                  bool
	}{
		{"", ":8080", "", true},
		{"127.0.0.1:6060", ":8080", "", true},
		{"127.0.0.1:6060", ":8080", "127.0.0.1:8081", true},
		{":8080", ":8080", "", false},
		{"127.0.0.1:8081", ":8080", "127.0.0.1:8081", false},
		{"6060", ":8080", "", false},
	} {
		if err := checkPprofAddr(tt.pprof, tt.http, tt.status); (err == nil) != tt.ok {
			t.Errorf("checkPprofAddr(%q, %q, %q) = %v", tt.pprof, tt.http, tt.status, err)
		}
	}
}
