package consumer

import (
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/segmentio/kafka-go"
)

// dispatch decodes a batch, claims the decodable events in one round trip
// and hands every event to the lanes, in offset order: an event whose key
// has an earlier event in flight waits behind it.
func (p *partition) dispatch(batch []*work) {
	e := p.e
	claims := make([]dedupe.Claim, 0, len(batch))
	claimed := make([]*work, 0, len(batch))
	now := time.Now().UnixNano()
	for _, w := range batch {
		var ts int64
		if !w.msg.Time.IsZero() {
			ts = w.msg.Time.UnixNano()
		}
		p.wm.add(w.msg.Offset, now, ts)
		w.typeLabel = "unknown"
		if p.route.tier > 0 && !p.ours(&w.msg) {
			w.verdict = verdictOtherGroup
			continue
		}
		if reason, err := checkLimits(&e.cfg, p.view(w)); err != nil {
			w.verdict, w.verdictErr = reason, err
			// The id and type, for the logs, when the headers carry them.
			w.ev.ID, w.ev.Type, w.ev.Key = clip(header(w.msg.Headers, HeaderID)), clip(header(w.msg.Headers, HeaderType)), clip(string(w.msg.Key))
			continue
		}
		ev, err := Decode(&w.msg)
		w.ev = ev
		tooLong, longErr := checkAttributes(&e.cfg, &ev)
		switch {
		case err != nil:
			w.verdict, w.verdictErr = ReasonDecode, err
			w.ev.ID, w.ev.Type, w.ev.Source = clip(ev.ID), clip(ev.Type), clip(ev.Source)
		case tooLong != "":
			w.verdict, w.verdictErr = tooLong, longErr
			w.ev.ID, w.ev.Type, w.ev.Source, w.ev.Subject = clip(ev.ID), clip(ev.Type), clip(ev.Source), clip(ev.Subject)
		default:
			if _, ok := e.router.Lookup(ev.Type); !ok {
				w.verdict, w.verdictErr = ReasonUnknownType, handlers.ErrUnknownType
				break
			}
			w.typeLabel = ev.Type
			w.claim = dedupe.NewClaim(e.cfg.Group, &w.ev)
			w.claim.Owner = e.owners.Next()
			claims = append(claims, w.claim)
			claimed = append(claimed, w)
		}
	}
	// Gauges and counters once per batch, not per event: the batch's last
	// message tells the lag.
	last := &batch[len(batch)-1].msg
	p.hwm.Store(last.HighWaterMark)
	p.lag.Set(float64(max(last.HighWaterMark-last.Offset-1, 0)))
	e.m.inFlight.Add(float64(len(batch)))
	for i := 0; i < len(batch); {
		typ, n := batch[i].typeLabel, 0
		for ; i < len(batch) && batch[i].typeLabel == typ; i++ {
			n++
		}
		e.m.received.WithLabelValues(p.topic, typ).Add(float64(n))
	}
	if len(claims) > 0 {
		results, ok := p.claimBatch(claims)
		if !ok {
			// Draining before the store answered: nothing was claimed for
			// sure, and nothing is finished. Give the slots back.
			for _, w := range batch {
				p.abandon(w)
				recycle(w)
			}
			return
		}
		for i, w := range claimed {
			p.claimed(w, results[i])
		}
	}
	ready := batch[:0]
	p.keysMu.Lock()
	for _, w := range batch {
		k := orderKey(w)
		if k == "" {
			ready = append(ready, w)
			continue
		}
		if last, ok := p.keys[k]; ok {
			last.next = w
		} else {
			ready = append(ready, w)
		}
		p.keys[k] = w
	}
	p.keysMu.Unlock()
	// Enough lanes for what is ready, up to the cap.
	need := len(ready) + len(p.ready) - (p.spawned - int(p.busy.Load()))
	for ; need > 0 && p.spawned < e.cfg.Lanes; need-- {
		p.spawned++
		p.lanes.Go(p.lane)
	}
	// Never blocks: ready holds MaxInFlight, and every event holds a slot.
	for _, w := range ready {
		p.ready <- w
	}
}

// ours reports whether a retry-topic message was written by this consumer
// group: retry topics are per source topic, and every group consuming that
// topic reads them.
func (p *partition) ours(m *kafka.Message) bool {
	// fleet always names the group; a message without it was not written
	// by fleet, and is no group's to run.
	return fleetHeader(m.Headers, HeaderConsumerGroup) == p.e.cfg.Group
}

// view is what the input limits look at of w's message. On a retry topic
// fleet's own headers are left out: the event passed the limits on its
// source topic, and what fleet added must not push it over them.
func (p *partition) view(w *work) *messageView {
	v := &messageView{size: w.size, key: len(w.msg.Key), headers: len(w.msg.Headers), value: w.msg.Value}
	if p.route.tier > 0 {
		for _, h := range w.msg.Headers {
			if isFleetHeader(h.Key) {
				v.headers--
				v.size -= int64(len(h.Key) + len(h.Value))
			}
		}
	}
	return v
}

// claimBatch claims until the store answers, failing closed: while it does
// not, no handler runs and no offset moves. Every resend carries the same
// owner tokens, so that a claim whose answer was lost (a timeout) is
// recognised as the same claim rather than orphaned. It reports false if the
// partition drains before the store answers.
func (p *partition) claimBatch(claims []dedupe.Claim) ([]dedupe.ClaimResult, bool) {
	e := p.e
	for attempt := 0; ; attempt++ {
		results, err := e.claim(p.work, claims)
		if err == nil {
			p.claimsAnswered(results)
			return results, true
		}
		if p.work.Err() != nil {
			return nil, false
		}
		e.storeFailed("claim", err)
		wait := backoff(attempt, 50*time.Millisecond, 2*time.Second)
		if p.stopping() {
			// Draining, with the outcome unknown: the claims may hold
			// records. Keep asking, within the drain budget, to learn
			// which, so that the lanes give them back instead of leaving
			// them to expire.
			if !sleep(p.work, wait) {
				return nil, false
			}
			continue
		}
		select {
		case <-p.stop:
		case <-time.After(wait):
		}
	}
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

// reclaim claims w again, until the store answers. It reports false when the
// partition drains first.
func (p *partition) reclaim(w *work) bool {
	// A new claim attempt, a new owner token; claimBatch resends this one
	// with the same token until the store answers.
	w.claim.Owner = p.e.owners.Next()
	results, ok := p.claimBatch([]dedupe.Claim{w.claim})
	if !ok {
		return false
	}
	p.claimed(w, results[0])
	return true
}

// claimed takes the store's answer to w's claim: an acquired claim is held
// (its lease extended) from now on, and no handler has run under it yet.
func (p *partition) claimed(w *work, res dedupe.ClaimResult) {
	w.res = res
	if res.Outcome != dedupe.Acquired {
		return
	}
	w.lease, w.ran = res.Lease, false
	w.lost.Store(false)
	p.leases.hold(w)
}
