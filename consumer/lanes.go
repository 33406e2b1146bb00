package consumer

// A partition's lanes run its deliveries, one at a time each, keys in
// parallel. Lanes start as deliveries need them, up to Config.Lanes, so that
// an idle partition (a retry tier, say) holds no goroutines.

// startLanes starts enough lanes for ready deliveries, up to the cap, and
// hands them over. It never blocks: p.ready holds MaxInFlight, and every
// delivery holds a slot.
func (p *partition) startLanes(ready []*delivery) {
	idle := p.spawned - int(p.busy.Load())
	for need := len(ready) + len(p.ready) - idle; need > 0 && p.spawned < p.e.cfg.Lanes; need-- {
		p.spawned++
		p.lanes.Go(p.lane)
	}
	for _, d := range ready {
		p.ready <- d
	}
}

// lane runs deliveries from p.ready, one at a time; when one is done it runs
// the next of the same key, if one waits, so that one key's events run in
// offset order. Once p.ready is closed and drained, every delivery was run
// or abandoned.
func (p *partition) lane() {
	completed := make(chan error, 1)
	for d := range p.ready {
		p.busy.Add(1)
		for d != nil {
			d.completed = completed
			if p.drain.started() {
				p.abandon(d)
			} else {
				p.process(d)
			}
			next := p.keys.Next(d)
			recycle(d)
			d = next
		}
		p.busy.Add(-1)
	}
}
