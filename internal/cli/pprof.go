package cli

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof" // #nosec G108 -- its handlers are served on a mux of their own, on --pprof-addr only (pprofMux), never on DefaultServeMux's addresses
	"time"
)

// pprofMux serves the runtime's profiles (net/http/pprof) under
// /debug/pprof/, on --pprof-addr alone: never beside /metrics, whose port
// the scrapers and the Service reach.
func pprofMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// newPprofServer serves the profiles: a CPU profile or a trace is written
// for as long as it is asked for (?seconds=, 30 by default), so answers
// may take up to 5 minutes.
func newPprofServer() *http.Server {
	return &http.Server{Handler: pprofMux(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second,
		WriteTimeout: 5 * time.Minute, IdleTimeout: 30 * time.Second}
}

// checkPprofAddr refuses a --pprof-addr that is not host:port, or that is
// the address of /metrics or /status.
func checkPprofAddr(pprofAddr string, others ...string) error {
	if pprofAddr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(pprofAddr); err != nil {
		return fmt.Errorf("pprof addr %q: want host:port (the default, empty, serves no profiles): %w", pprofAddr, err)
	}
	for _, o := range others {
		if o != "" && o == pprofAddr {
			return fmt.Errorf("pprof addr %q: the profiles get an address of their own, not the one of /metrics or /status", pprofAddr)
		}
	}
	return nil
}
