package consumer

// A partition's lanes run its deliveries, one at a time each, keys in
// parallel. Lanes start as deliveries need them, up to Config.Lanes, and
// end as soon as they find none ready, so that a partition without work
// (an idle source partition, a retry tier) holds no goroutine for them.
//
// laneMu orders the hand-over against a lane's end: startLanes counts the
// lanes and hands deliveries over under it, and a lane ends only under it,
// once it finds nothing ready. A delivery handed over therefore always has a
// lane that will take it: one that had not yet looked, or a new one.

// startLanes starts enough lanes for ready deliveries, up to the cap, and
// hands them over. It never blocks: p.ready holds MaxInFlight, and every
// delivery holds a slot.
func (p *partition) startLanes(ready []*delivery) {
	p.laneMu.Lock()
	defer p.laneMu.Unlock()
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
// offset order. It ends when nothing is ready. Once p.ready is closed and
// drained, every delivery was run or abandoned.
func (p *partition) lane() {
	completed := make(chan error, 1)
	for {
		d, ok := p.nextReady()
		if !ok {
			return
		}
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

// nextReady takes a ready delivery; it reports false when p.ready is closed
// and drained, or when nothing is ready, and the lane is then counted out.
func (p *partition) nextReady() (*delivery, bool) {
	for {
		select {
		case d, ok := <-p.ready:
			if !ok {
				p.laneEnds()
			}
			return d, ok
		default:
		}
		p.laneMu.Lock()
		if len(p.ready) == 0 {
			p.spawned--
			p.laneMu.Unlock()
			return nil, false
		}
		p.laneMu.Unlock()
	}
}

// laneEnds counts out a lane that found p.ready closed.
func (p *partition) laneEnds() {
	p.laneMu.Lock()
	p.spawned--
	p.laneMu.Unlock()
}
