package consumer

// orderKey is what orders w among the partition's events: its message key,
// or for events without one their id, so that redeliveries of one event
// never run at once. Events with neither (undecodable) are not ordered.
func orderKey(w *work) string {
	if w.ev.Key != "" {
		return w.ev.Key
	}
	return w.ev.ID
}

// after is called when w is finished or abandoned, before it is recycled:
// it returns the next event of w's key, which the caller runs next, or nil.
func (p *partition) after(w *work) *work {
	key := orderKey(w)
	if key == "" {
		return nil
	}
	p.keysMu.Lock()
	defer p.keysMu.Unlock()
	next := w.next
	if next == nil {
		// w is the last of its key.
		delete(p.keys, key)
	}
	return next
}

// lane runs events from ready, one at a time; when an event is finished it
// runs the next event of the same key, if one waits, so that one key's
// events run in offset order. Once ready is closed and drained, every
// event was run or abandoned.
func (p *partition) lane() {
	completed := make(chan error, 1)
	for w := range p.ready {
		p.busy.Add(1)
		for w != nil {
			w.completed = completed
			if p.stopping() {
				p.abandon(w)
			} else {
				p.process(w)
			}
			next := p.after(w)
			recycle(w)
			w = next
		}
		p.busy.Add(-1)
	}
}
