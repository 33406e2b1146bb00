package consumer

import "github.com/fleetworks/fleet/dedupe"

// claimBatch claims until the store answers, failing closed: while it does
// not, no handler runs and no offset moves. Every resend carries the same
// owner tokens, so that a claim whose answer was lost (a timeout) is
// recognised as the same claim rather than orphaned. It keeps asking while
// the partition drains, within the drain budget: the claims may hold
// records, and the lanes give back the ones they learn of instead of leaving
// them to expire. It reports false if the budget runs out first.
func (p *partition) claimBatch(claims []dedupe.Claim) ([]dedupe.ClaimResult, bool) {
	ctx := p.drain.work
	results, err := retry(ctx, storeRetry, func() ([]dedupe.ClaimResult, error) {
		return p.e.claim(ctx, claims)
	}, func(err error) { p.e.storeFailed("claim", err) })
	if err != nil {
		return nil, false
	}
	p.claimsAnswered(results)
	return results, true
}

// claimsAnswered notes an answer of the store to a batch of claims.
func (p *partition) claimsAnswered(results []dedupe.ClaimResult) {
	p.e.storeOK()
	for _, r := range results {
		switch {
		case r.Outcome == dedupe.Busy:
			p.e.m.busy.Inc()
		case r.TakenOver:
			p.e.m.takeovers.Inc()
		}
	}
}

// reclaim claims d again, until the store answers. It reports false when the
// drain budget runs out first.
func (p *partition) reclaim(d *delivery) bool {
	// A new claim attempt, a new owner token; claimBatch resends this one
	// with the same token until the store answers.
	d.attempt.claim.Owner = p.e.owners.Next()
	start := p.claimStart()
	results, ok := p.claimBatch([]dedupe.Claim{d.attempt.claim})
	if !ok {
		return false
	}
	p.claimed(d, results[0])
	p.traceClaim(d, start)
	return true
}

// claimed takes the store's answer to d's claim: an acquired claim is held
// (its lease extended) from now on, and no handler has run under it yet.
func (p *partition) claimed(d *delivery, res dedupe.ClaimResult) {
	d.attempt.res = res
	if res.Outcome != dedupe.Acquired {
		return
	}
	d.attempt.lease, d.attempt.ran = res.Lease, false
	d.attempt.lost.Store(false)
	p.leases.hold(d)
}
