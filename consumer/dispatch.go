package consumer

import (
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
	"github.com/segmentio/kafka-go"
)

// verdictOtherGroup marks a retry-topic message another consumer group
// wrote: not this group's to run, so it is only acknowledged.
const verdictOtherGroup = "other_group"

// dispatch decodes a batch, claims the decodable events in one round trip
// and hands every event to the lanes, in offset order: an event whose key
// has an earlier event in flight waits behind it (keyQueue).
func (p *partition) dispatch(batch []*delivery) {
	claims := make([]dedupe.Claim, 0, len(batch))
	claimed := make([]*delivery, 0, len(batch))
	seq := p.batches.Add(1)
	for _, d := range batch {
		d.seq = seq
		switch {
		case !p.admit(d):
		case p.keys.Hold(d):
			// A copy of an event in flight before it on its key: it claims
			// when its turn comes (keyQueue.Hold).
			d.attempt.res = dedupe.ClaimResult{Outcome: dedupe.Busy}
		default:
			claims = append(claims, d.attempt.claim)
			claimed = append(claimed, d)
		}
		p.traceStart(d)
	}
	p.received(batch)
	if len(claims) > 0 {
		start := p.claimStart()
		results, ok := p.claimBatch(claims)
		if !ok {
			// Draining before the store answered: nothing was claimed for
			// sure, and nothing is finished. Give the slots back.
			for _, d := range batch {
				p.abandon(d)
				p.keys.Unhold(d)
				recycle(d)
			}
			return
		}
		for i, d := range claimed {
			p.claimed(d, results[i])
			p.traceClaim(d, start)
		}
	}
	p.startLanes(p.keys.Enqueue(batch))
}

// received enters an admitted batch into the watermark and the metrics:
// gauges and counters once per batch (and type), not per event; the batch's
// last message tells the lag.
func (p *partition) received(batch []*delivery) {
	now := time.Now().UnixNano()
	for _, d := range batch {
		var ts int64
		if !d.msg.Time.IsZero() {
			ts = d.msg.Time.UnixNano()
		}
		p.wm.add(d.msg.Offset, now, ts)
	}
	last := &batch[len(batch)-1].msg
	p.hwm.Store(last.HighWaterMark)
	p.lag.Set(float64(max(last.HighWaterMark-last.Offset-1, 0)))
	p.e.m.inFlight.Add(float64(len(batch)))
	for i := 0; i < len(batch); {
		typ, n := batch[i].typeLabel, 0
		for ; i < len(batch) && batch[i].typeLabel == typ; i++ {
			n++
		}
		p.e.m.received.WithLabelValues(p.topic, typ).Add(float64(n))
	}
}

// admit decodes d and checks it against the limits and the router. It
// reports whether d is to be claimed; if not, d.verdict says what becomes of
// it.
func (p *partition) admit(d *delivery) bool {
	e := p.e
	d.typeLabel = "unknown"
	if p.route.fleets() && !p.ours(&d.msg) {
		d.verdict = verdictOtherGroup
		return false
	}
	if reason, err := checkLimits(&e.cfg, p.view(d)); err != nil {
		d.verdict, d.verdictErr = reason, err
		// The id and type, for the logs, when the headers carry them.
		d.ev.ID, d.ev.Type, d.ev.Key = clip(header(d.msg.Headers, HeaderID)), clip(header(d.msg.Headers, HeaderType)), clip(string(d.msg.Key))
		return false
	}
	ev, err := Decode(&d.msg)
	d.ev = ev
	tooLong, longErr := checkAttributes(&e.cfg, &ev)
	switch {
	case err != nil:
		d.verdict, d.verdictErr = ReasonDecode, err
		d.ev.ID, d.ev.Type, d.ev.Source = clip(ev.ID), clip(ev.Type), clip(ev.Source)
		return false
	case tooLong != "":
		d.verdict, d.verdictErr = tooLong, longErr
		d.ev.ID, d.ev.Type, d.ev.Source, d.ev.Subject = clip(ev.ID), clip(ev.Type), clip(ev.Source), clip(ev.Subject)
		return false
	}
	if _, ok := e.router.Lookup(ev.Type); !ok {
		d.verdict, d.verdictErr = ReasonUnknownType, handlers.ErrUnknownType
		return false
	}
	d.typeLabel = ev.Type
	d.attempt.claim = dedupe.NewClaim(e.cfg.Group, &d.ev)
	d.attempt.claim.Owner = e.owners.Next()
	d.attempt.claim.Gate = p.gateKey(d)
	return true
}

// ours reports whether a retry-topic message was written by this consumer
// group: retry topics are per source topic, and every group consuming that
// topic reads them.
func (p *partition) ours(m *kafka.Message) bool {
	// fleet always names the group; a message without it was not written
	// by fleet, and is no group's to run.
	return fleetHeader(m.Headers, HeaderConsumerGroup) == p.e.cfg.Group
}

// view is what the input limits look at of d's message. On a retry topic
// fleet's own headers are left out: the event passed the limits on its
// source topic, and what fleet added must not push it over them.
func (p *partition) view(d *delivery) *messageView {
	v := &messageView{size: d.size, key: len(d.msg.Key), headers: len(d.msg.Headers), value: d.msg.Value}
	if p.route.fleets() {
		for _, h := range d.msg.Headers {
			if isFleetHeader(h.Key) {
				v.headers--
				v.size -= int64(len(h.Key) + len(h.Value))
			}
		}
	}
	return v
}
