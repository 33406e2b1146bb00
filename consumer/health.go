package consumer

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Ready reports why the engine should not receive traffic, or nil: it must be
// a member of a group generation and its store must answer.
func (e *Engine) Ready() error {
	if msg := e.storeErr.Load(); msg != nil {
		return fmt.Errorf("idempotency store unavailable: %s", *msg)
	}
	if !e.joined.Load() {
		if msg := e.kafkaErr.Load(); msg != nil {
			return fmt.Errorf("no broker of %s answers as it should: %s", strings.Join(e.cfg.Brokers, ","), *msg)
		}
		return fmt.Errorf("joining consumer group %s (not yet a member of a generation)", e.cfg.Group)
	}
	return nil
}

// kafkaFailed records why the cluster could not be read or joined, for
// readiness; kafkaOK forgets it.
func (e *Engine) kafkaFailed(err error) {
	msg := err.Error()
	e.kafkaErr.Store(&msg)
}

func (e *Engine) kafkaOK() { e.kafkaErr.Store(nil) }

// Healthy reports why the engine's loops look wedged, or nil: inside a
// generation, the loop that commits offsets must go round every commit
// interval; a drain must end within its budget and the grace for hung
// handlers. Waiting for Kafka or Redis is not wedged: readiness reports it.
func (e *Engine) Healthy() error {
	now := time.Now()
	slack := 10 * time.Second
	if d := e.draining.Load(); d != 0 {
		if took := now.Sub(time.Unix(0, d)); took > e.cfg.DrainTimeout+hungGrace+slack {
			return fmt.Errorf("drain running for %v, past its budget of %v", took.Round(time.Second), e.cfg.DrainTimeout)
		}
		return nil
	}
	if e.joined.Load() {
		if since := now.Sub(time.Unix(0, e.alive.Load())); since > 3*e.cfg.CommitInterval+slack {
			return fmt.Errorf("generation loop has not gone round for %v", since.Round(time.Second))
		}
	}
	return nil
}

// storeOK and storeFailed track the store's reachability for readiness.
func (e *Engine) storeOK() {
	if e.storeErr.Load() != nil {
		e.storeErr.Store(nil)
		e.log.Info("idempotency store reachable again")
	}
	e.m.storeUp.Set(1)
}

func (e *Engine) storeFailed(op string, err error) {
	msg := err.Error()
	if e.storeErr.Swap(&msg) == nil {
		e.log.Error("idempotency store unavailable: no handler runs until it answers", "operation", op, "err", err)
		e.errors.add(ErrorEntry{Time: time.Now().UTC(), What: "store unavailable (" + op + ")", Error: msg})
	}
	e.m.storeErrors.WithLabelValues(op).Inc()
	e.m.storeUp.Set(0)
}

// probeStore pings the store every second so that readiness follows the
// store even when no events flow.
func (e *Engine) probeStore(ctx context.Context, p Pinger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := p.Ping(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			e.storeFailed("ping", err)
		default:
			e.storeOK()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
