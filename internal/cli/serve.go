package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/extra/redisprometheus/v9"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/fleetworks/fleet/consumer"
	"github.com/fleetworks/fleet/dedupe"
)

// wiring is what one fleet process is made of.
type wiring struct {
	app *App
	// httpHandlers route event types to HTTP endpoints, beside the app's
	// Go domains.
	httpHandlers httpHandlers
	consumer     consumer.Config
	store        dedupe.Config
	rdb          redis.UniversalClient
	// httpAddr serves /metrics, /healthz and /readyz; statusAddr /status:
	// "" with them, statusOff nowhere, or an address of its own.
	httpAddr, statusAddr string
	// pprofAddr serves the runtime's profiles ("": nowhere).
	pprofAddr string
	// skipPolicyCheck skips reading Redis's maxmemory-policy: the embedded
	// Redis of fleet dev has no CONFIG command and evicts nothing.
	skipPolicyCheck bool
	// started, when set, is called once the engine runs, with the registry,
	// the address actually served ("" without HTTP) and the engine's status.
	started func(reg *prometheus.Registry, addr string, status func() consumer.Status)
	// For several workers in one process (fleet dev): shared is the
	// registry they all register into, worker labels this one's metrics,
	// and noHTTP leaves the HTTP endpoints to the worker that serves them.
	shared *prometheus.Registry
	worker string
	noHTTP bool
	// peers gathers the workers of the process for the /status of the one
	// that serves HTTP.
	peers *statusPeers
}

// serve wires the fleet and runs it until ctx is cancelled: the HTTP
// endpoints, the script loading (waiting for Redis), and the engine. It
// returns once the engine has drained and the HTTP server has shut down: nil
// after a cancellation, the first error otherwise.
func serve(ctx context.Context, log *slog.Logger, w wiring) error {
	reg, workerReg := w.registries()
	engine, store, closeDLQ, err := w.engine(log, workerReg)
	if err != nil {
		return err
	}
	defer closeDLQ()
	if !w.noHTTP {
		registerProcessMetrics(reg, w.rdb, w.app)
	}
	ln, statusLn, err := w.listen()
	if err != nil {
		return err
	}
	pprofLn, err := w.listenPprof()
	if err != nil {
		if ln != nil {
			_ = ln.Close()
		}
		if statusLn != nil {
			_ = statusLn.Close()
		}
		return err
	}
	probe := &readiness{rdb: w.rdb, engine: engine}
	workerReg.MustRegister(readyGauge(probe.ready))
	if w.noHTTP && w.peers != nil {
		w.peers.add(w.worker, probe.status)
	}
	status := w.statusHandler(probe.status)
	g, gctx := errgroup.WithContext(ctx)
	served := ""
	if ln != nil {
		served = ln.Addr().String()
		serveOn(gctx, g, ln, endpoints(reg, engine, probe, status, w.statusAddr == ""))
	}
	if statusLn != nil {
		only := http.NewServeMux()
		only.Handle("/status", status)
		serveOn(gctx, g, statusLn, only)
	}
	if pprofLn != nil {
		log.Info("serving profiles", "addr", "http://"+pprofLn.Addr().String()+"/debug/pprof/")
		serveServer(gctx, g, pprofLn, newPprofServer())
	}
	g.Go(func() error {
		if err := loadScripts(gctx, log, store, probe.loadFailed); err != nil {
			return err
		}
		if gctx.Err() != nil {
			return nil
		}
		probe.loaded.Store(true)
		if !w.skipPolicyCheck {
			checkPolicy(gctx, log, store)
			checkReplicas(gctx, log, store, w.store.MinReplicas)
		}
		cfg := w.consumer
		log.Info("fleet running", "version", w.app.version(), "group", cfg.Group, "topics", cfg.Topics, "brokers", cfg.Brokers,
			"http", served, "status", w.statusAt(served, statusLn))
		if w.started != nil {
			w.started(reg, served, probe.status)
		}
		return engine.Run(gctx)
	})
	return g.Wait()
}

// registries are the registry /metrics serves (the process's, shared by
// its workers) and the one this worker's series go to (labelled with the
// worker in fleet dev).
func (w wiring) registries() (*prometheus.Registry, prometheus.Registerer) {
	reg := w.shared
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	var workerReg prometheus.Registerer = reg
	if w.worker != "" {
		workerReg = prometheus.WrapRegistererWith(prometheus.Labels{"worker": w.worker}, reg)
	}
	return reg, workerReg
}

// engine builds the router (the app's domains and the HTTP handlers), the
// store, the dead-letter writer (closed by the function returned) and the
// engine.
func (w wiring) engine(log *slog.Logger, reg prometheus.Registerer) (*consumer.Engine, *dedupe.Redis, func(), error) {
	router, err := w.app.router(w.rdb)
	if err != nil {
		return nil, nil, nil, configError{err}
	}
	if _, err := w.httpHandlers.register(router, reg); err != nil {
		return nil, nil, nil, configError{err}
	}
	store, err := dedupe.NewRedis(w.rdb, w.store)
	if err != nil {
		return nil, nil, nil, configError{err}
	}
	dlq := consumer.NewPublisher(w.consumer.Brokers, w.consumer.Dialer)
	engine, err := consumer.New(w.consumer, store, router, dlq, log, consumer.NewMetrics(reg))
	if err != nil {
		_ = dlq.Close()
		return nil, nil, nil, configError{err}
	}
	return engine, store, func() { _ = dlq.Close() }, nil
}

// listen opens the HTTP listener and, when /status has an address of its
// own, its listener; none for a worker that leaves HTTP to another.
func (w wiring) listen() (ln, statusLn net.Listener, err error) {
	if w.noHTTP {
		return nil, nil, nil
	}
	if ln, err = net.Listen("tcp", w.httpAddr); err != nil {
		return nil, nil, fmt.Errorf("listen on %s (set --http-addr or FLEET_HTTP_ADDR): %w", w.httpAddr, err)
	}
	if w.statusAddr != "" && w.statusAddr != statusOff {
		if statusLn, err = net.Listen("tcp", w.statusAddr); err != nil {
			_ = ln.Close()
			return nil, nil, fmt.Errorf("listen on %s (set --status-addr or FLEET_STATUS_ADDR): %w", w.statusAddr, err)
		}
	}
	return ln, statusLn, nil
}

// listenPprof opens the profiles' listener, when they have an address.
func (w wiring) listenPprof() (net.Listener, error) {
	if w.noHTTP || w.pprofAddr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", w.pprofAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (set --pprof-addr or FLEET_PPROF_ADDR): %w", w.pprofAddr, err)
	}
	return ln, nil
}

// statusAt is where /status is served, for the log.
func (w wiring) statusAt(served string, statusLn net.Listener) string {
	switch {
	case statusLn != nil:
		return statusLn.Addr().String()
	case w.statusAddr == statusOff:
		return statusOff
	}
	return served
}

// statusHandler serves /status: this worker's engine, and the other
// workers of the process.
func (w wiring) statusHandler(engineStatus func() consumer.Status) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		st := processStatus{Status: engineStatus(), Worker: w.worker, Workers: w.peers.all()}
		rw.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(rw)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
}

// readiness is what /readyz answers: the scripts loaded into Redis (or why
// not yet), then the engine's own readiness.
type readiness struct {
	rdb     redis.UniversalClient
	engine  *consumer.Engine
	loaded  atomic.Bool
	loadErr atomic.Pointer[string]
}

func (r *readiness) loadFailed(err error) {
	msg := err.Error()
	r.loadErr.Store(&msg)
}

func (r *readiness) ready() error {
	if !r.loaded.Load() {
		if msg := r.loadErr.Load(); msg != nil {
			return fmt.Errorf("redis at %s: %s", redisAddr(r.rdb), *msg)
		}
		return fmt.Errorf("loading the idempotency store's scripts into Redis at %s", redisAddr(r.rdb))
	}
	return r.engine.Ready()
}

// status is the engine's status, with why it is not ready.
func (r *readiness) status() consumer.Status {
	st := r.engine.Status()
	if err := r.ready(); err != nil {
		st.NotReady = err.Error()
	}
	return st
}

// endpoints are /metrics, /healthz, /readyz and, when withStatus, /status.
func endpoints(reg *prometheus.Registry, engine *consumer.Engine, probe *readiness, status http.Handler, withStatus bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true, Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := engine.Healthy(); err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if withStatus {
		mux.Handle("/status", status)
	}
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := probe.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// statusOff is the --status-addr that serves /status nowhere.
const statusOff = "off"

// serveOn serves h on ln in g until ctx ends, then shuts the server down
// within 5 s.
func serveOn(ctx context.Context, g *errgroup.Group, ln net.Listener, h http.Handler) {
	serveServer(ctx, g, ln, newHTTPServer(h))
}

// serveServer serves srv on ln until ctx ends, then shuts it down.
func serveServer(ctx context.Context, g *errgroup.Group, ln net.Listener, srv *http.Server) {
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
}

// newHTTPServer serves fleet's endpoints with bounds on every connection: a
// request must arrive within 5 s, its answer be written within 10 s (a slow
// reader of /status cannot hold a buffer for longer), and an idle keep-alive
// connection is closed after 30 s, well within a scrape interval's reuse.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// registerProcessMetrics registers what is not the engine's: Go and process
// collectors, fleet_build_info, and go-redis's connection pool (hits,
// misses, timeouts, open and idle connections, as fleet_redis_pool_*).
func registerProcessMetrics(reg prometheus.Registerer, rdb redis.UniversalClient, app *App) {
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleet_build_info",
		Help: "Build information of the running fleet binary; always 1.",
	}, []string{"version", "revision", "goversion"})
	buildInfo.WithLabelValues(app.version(), app.revision(), runtime.Version()).Set(1)
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		redisprometheus.NewCollector("fleet", "redis", rdb),
	)
}

// readyGauge is fleet_ready: 1 when ready reports nil.
func readyGauge(ready func() error) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fleet_ready",
		Help: "1 when /readyz answers 200: scripts loaded, store answering, member of a consumer group generation.",
	}, func() float64 {
		if ready() != nil {
			return 0
		}
		return 1
	})
}

// checkPolicy logs an error when Redis may evict idempotency records.
func checkPolicy(ctx context.Context, log *slog.Logger, store *dedupe.Redis) {
	policy, err := store.CheckMaxmemoryPolicy(ctx)
	switch {
	case err != nil:
		log.Warn("cannot read Redis maxmemory-policy; it must be noeviction", "err", err)
	case policy != "noeviction":
		log.Error("Redis maxmemory-policy is not noeviction: evicted idempotency records let duplicates run again",
			"maxmemory-policy", policy)
	}
}

// redisAddr names the Redis a client talks to, for messages: its address,
// the first node of a cluster, or the Sentinels' master.
func redisAddr(c redis.UniversalClient) string {
	switch c := c.(type) {
	case *redis.Client:
		return c.Options().Addr
	case *redis.ClusterClient:
		if addrs := c.Options().Addrs; len(addrs) > 0 {
			return addrs[0] + " (cluster)"
		}
	}
	return "(unknown)"
}

// checkReplicas warns when completions could be lost to a failover (the
// master has replicas, and none is waited for), and when fleet waits for
// more replicas than the master has (it then commits nothing).
func checkReplicas(ctx context.Context, log *slog.Logger, store *dedupe.Redis, want int) {
	n, err := store.Replicas(ctx)
	switch {
	case err != nil:
		log.Warn("cannot read how many replicas Redis has", "err", err)
	case n > 0 && want == 0:
		log.Warn("Redis has replicas but fleet does not wait for them: a failover may lose completions whose offsets were committed; set --redis-min-replicas (FLEET_REDIS_MIN_REPLICAS)",
			"replicas", n)
	case n < want:
		log.Error("Redis has fewer replicas than --redis-min-replicas: no completion can be confirmed, so no offset moves until they connect",
			"replicas", n, "min_replicas", want)
	}
}

// loadScripts loads the store's scripts, waiting with backoff while Redis is
// unreachable; /readyz says not ready meanwhile. Authentication and
// permission errors end the process: waiting cannot fix them. It returns nil
// when ctx is cancelled.
func loadScripts(ctx context.Context, log *slog.Logger, store *dedupe.Redis, failed func(error)) error {
	delay := 100 * time.Millisecond
	for {
		err := store.Load(ctx)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		failed(err)
		if denied(err) {
			return fmt.Errorf("redis denied access: %w", err)
		}
		log.Warn("idempotency store unreachable; waiting", "err", err, "retry_in", delay.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// denied reports whether err is Redis refusing our credentials or rights.
// The message is checked too: an error wrapped without %w on the way loses
// its type.
func denied(err error) bool {
	if redis.IsAuthError(err) || redis.IsPermissionError(err) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"NOAUTH", "WRONGPASS", "NOPERM", "invalid password", "invalid username-password"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
