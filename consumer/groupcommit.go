package consumer

import (
	"context"
	"time"

	"github.com/fleetworks/fleet/dedupe"
)

// claimRequest is one partition's batch of claims waiting for the engine's
// group commit; done is closed when results or err are set, so a requester
// that stopped waiting never blocks the loop.
type claimRequest struct {
	claims  []dedupe.Claim
	results []dedupe.ClaimResult
	err     error
	done    chan struct{}
}

// completeLoop is the group commit of completions: it takes every completion
// that is waiting, completes them in one store round trip, and answers each.
// Store errors are retried (storeRetry: fail closed) until the requester
// gives up or the engine stops.
func (e *Engine) completeLoop(ctx context.Context) {
	batch := make([]*delivery, 0, e.cfg.BatchSize)
	reqs := make([]dedupe.Completion, 0, e.cfg.BatchSize)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case d := <-e.completions:
			batch = append(batch, d)
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case d := <-e.completions:
				batch = append(batch, d)
			default:
				break fill
			}
		}
		if !e.completeBatch(ctx, batch, reqs) {
			return
		}
	}
}

// completeBatch completes batch in one round trip, asked again until the
// store answers, and answers every delivery. A delivery whose partition's
// work was cancelled meanwhile is answered at once and left out. It reports
// false if ctx ends first.
func (e *Engine) completeBatch(ctx context.Context, batch []*delivery, reqs []dedupe.Completion) bool {
	_, err := retry(ctx, storeRetry, func() (struct{}, error) {
		batch, reqs = stillWanted(batch, reqs[:0])
		if len(batch) == 0 {
			return struct{}{}, nil
		}
		start := time.Now()
		errs, err := e.store.CompleteBatch(ctx, reqs)
		e.m.storeTime.WithLabelValues("complete").Observe(time.Since(start).Seconds())
		if err != nil {
			return struct{}{}, err
		}
		e.storeOK()
		for i, d := range batch {
			d.completed <- errs[i]
		}
		return struct{}{}, nil
	}, func(err error) { e.storeFailed("complete", err) })
	if err != nil {
		for _, d := range batch {
			d.completed <- err
		}
		return false
	}
	return true
}

// stillWanted keeps the deliveries of batch whose partition's work goes on,
// with their completions in reqs, and answers the others with the reason
// their work ended.
func stillWanted(batch []*delivery, reqs []dedupe.Completion) ([]*delivery, []dedupe.Completion) {
	live := batch[:0]
	for _, d := range batch {
		if err := d.p.drain.work.Err(); err != nil {
			d.completed <- err
			continue
		}
		live = append(live, d)
		a := &d.attempt
		// No gate probe: a run that raced a gate was fenced off by the
		// claim that found the gate (docs/ordering.md, "Completion").
		reqs = append(reqs, dedupe.Completion{Lease: a.lease, Effects: a.tx.Ops(), Result: a.tx.Result()})
	}
	return live, reqs
}

// claimLoop is the group commit of claims: it takes every partition's batch
// that is waiting, up to 4 batches' worth of claims, claims them all in one
// store round trip and answers each requester. It makes one attempt per
// round; requesters retry (and fail closed) themselves.
func (e *Engine) claimLoop(ctx context.Context) {
	limit := 4 * e.cfg.BatchSize
	var reqs []*claimRequest
	var all []dedupe.Claim
	for {
		reqs, all = reqs[:0], all[:0]
		select {
		case <-ctx.Done():
			return
		case r := <-e.claims:
			reqs = append(reqs, r)
			all = append(all, r.claims...)
		}
	fill:
		for len(all) < limit {
			select {
			case r := <-e.claims:
				reqs = append(reqs, r)
				all = append(all, r.claims...)
			default:
				break fill
			}
		}
		start := time.Now()
		results, err := e.store.ClaimBatch(ctx, all)
		e.m.storeTime.WithLabelValues("claim").Observe(time.Since(start).Seconds())
		for _, r := range reqs {
			if err != nil {
				r.err = err
			} else {
				r.results = results[:len(r.claims):len(r.claims)]
				results = results[len(r.claims):]
			}
			close(r.done)
		}
		clear(reqs)
	}
}

// claim sends claims through the engine's group commit and waits for the
// answer, or until ctx is done.
func (e *Engine) claim(ctx context.Context, claims []dedupe.Claim) ([]dedupe.ClaimResult, error) {
	r := &claimRequest{claims: claims, done: make(chan struct{})}
	select {
	case e.claims <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case <-r.done:
		return r.results, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
