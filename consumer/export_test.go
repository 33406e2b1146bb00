package consumer

// SlotsHeld is the number of the worker's slots (Config.WorkerMaxInFlight)
// held now.
func (e *Engine) SlotsHeld() int { return len(e.slots) }
