package consumer

import (
	"errors"
	"fmt"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// The lifecycle of a delivery is a loop: decide on what is known, carry the
// action out (process.go), learn its result, decide again. decide holds
// every rule of that loop and nothing else, so that the rules can be read,
// and tested, in one place.

// phase is how far the current attempt at a delivery has come.
type phase int

const (
	// claimed: the store answered the claim (or intake gave a verdict).
	claimed phase = iota
	// handled: the handler returned.
	handled
	// completed: the store answered the completion.
	completed
)

// state is what the lifecycle knows of a delivery when it decides.
type state struct {
	phase phase
	// verdict is intake's: another group's message, or a dead-letter reason
	// (cause is then its error).
	verdict string
	// res is the store's answer to the latest claim.
	res dedupe.ClaimResult
	// lost: the claim's lease is known lost.
	lost bool
	// err is the handler's error (handled) or the completion's (completed);
	// kind is the handler error's kind.
	err  error
	kind handlers.Kind
	// retryAfter is the delay the handler's error asks for
	// (handlers.RetryAfter).
	retryAfter time.Duration
	// stopping: the partition drains.
	stopping bool
	// tries counts the handler runs of this delivery; tier is the retry
	// tier the delivery was read from (0: its source topic).
	tries, tier int
	// marked: the claim may predate a gate made for the key since
	// (keyQueue.Marked); its answer is not trusted.
	marked bool
}

// rules are the settings the lifecycle decides by.
type rules struct {
	maxAttempts, inPlaceAttempts int
	// tierDelays are the delays of the retry tiers: tier n's at n-1.
	tierDelays []time.Duration
	// maxInPlaceWait is the longest wait between attempts in place: a
	// retry asked for later goes to a retry tier while there is one.
	maxInPlaceWait time.Duration
}

// step is what the lifecycle does next.
type step int

const (
	stepRun          step = iota // run the handler under the held claim
	stepComplete                 // complete the run: record done, effects applied
	stepFinish                   // finish the delivery with action.outcome
	stepDeadLetter               // write a dead letter, release, finish
	stepRetryTier                // write to the next retry tier, release, finish
	stepRetryInPlace             // release, wait the retry backoff, claim again
	stepWaitBusy                 // someone else holds the claim: wait, claim again
	stepReclaim                  // claim again, to learn what became of the event
	stepLeaseLost                // record the lost lease, then claim again
	stepAbandon                  // give up: release, leave the offset uncommitted
	stepPark                     // give the claim back, park behind the key's head
)

// action is a decision: a step and what it needs.
type action struct {
	step step
	// outcome is the finish's (stepFinish).
	outcome string
	// reason, cause and attempts go into the dead letter (stepDeadLetter);
	// cause also into the retry message (stepRetryTier).
	reason   string
	cause    error
	attempts int
	// wait is the least time to wait before a retry in place
	// (stepRetryInPlace): what the handler asked for.
	wait time.Duration
	// tier is the retry tier to write to (stepRetryTier).
	tier int
	// handlerFailed: the handler's failure is to be recorded (for /status,
	// the logs and the failure headers) before the step.
	handlerFailed bool
	// endHead: the event is its key's head, and its end is to be run
	// before the finish (stepFinish).
	endHead bool
}

var (
	errConflict     = errors.New("id reused with a different payload: the record of this source and id holds another payload's fingerprint (the first payload stands)")
	errBudgetBefore = errors.New("attempt budget spent before this run")
	// errUnknownOutcome: a claim outcome this engine does not know (a store
	// newer than it, or not fleet's).
	errUnknownOutcome = errors.New("unknown claim outcome")
)

// decide is the lifecycle: what to do with a delivery in state s.
func decide(s state, r rules) action {
	switch s.phase {
	case claimed:
		return afterClaim(s, r)
	case handled:
		return afterHandler(s, r)
	default:
		return afterCompletion(s)
	}
}

func afterClaim(s state, r rules) action {
	switch s.verdict {
	case "":
	case verdictOtherGroup:
		return action{step: stepFinish, outcome: OutcomeOtherGroup}
	default:
		return action{step: stepDeadLetter, reason: s.verdict, cause: s.err}
	}
	switch s.res.Outcome {
	case dedupe.Duplicate:
		return action{step: stepFinish, outcome: OutcomeDuplicate, endHead: s.res.Head}
	case dedupe.Parked:
		return action{step: stepPark}
	case dedupe.Invalid:
		return action{step: stepDeadLetter, reason: ReasonInvalidRecord, cause: errors.New(s.res.Reason)}
	case dedupe.Conflict:
		return action{step: stepDeadLetter, reason: ReasonConflict, cause: errConflict}
	case dedupe.Busy:
		return action{step: stepWaitBusy}
	case dedupe.Acquired:
	default: // a store answering what fleet does not know: no run without a claim
		return action{step: stepAbandon, cause: fmt.Errorf("%w: the store answered claim outcome %d", errUnknownOutcome, s.res.Outcome)}
	}
	switch {
	case s.marked && !s.res.Head:
		return action{step: stepPark}
	case s.lost: // lost while it waited in its lane (a pause, a stalled store)
		return action{step: stepReclaim}
	case s.res.Attempts > r.maxAttempts:
		return action{step: stepDeadLetter, reason: ReasonAttemptsExhausted, cause: errBudgetBefore, attempts: s.res.Attempts - 1}
	}
	return action{step: stepRun}
}

func afterHandler(s state, r rules) action {
	switch {
	case s.err == nil:
		return action{step: stepComplete}
	case s.lost:
		return action{step: stepLeaseLost}
	case s.stopping:
		return action{step: stepAbandon}
	}
	a := action{handlerFailed: true, cause: s.err, attempts: s.res.Attempts}
	inPlace := s.tries < r.inPlaceAttempts
	switch {
	case s.kind == handlers.KindPermanent:
		a.step, a.reason = stepDeadLetter, ReasonPermanent
	case s.kind == handlers.KindUnknownType:
		a.step, a.reason = stepDeadLetter, ReasonUnknownType
	case s.kind == handlers.KindInvalidEffect:
		a.step, a.reason = stepDeadLetter, ReasonInvalidEffect
	case s.res.Attempts >= r.maxAttempts:
		a.step, a.reason = stepDeadLetter, ReasonAttemptsExhausted
	case inPlace && s.retryAfter <= r.maxInPlaceWait:
		a.step, a.wait = stepRetryInPlace, s.retryAfter
	case s.tier < len(r.tierDelays):
		a.step, a.tier = stepRetryTier, nextTier(s.tier, s.retryAfter, r.tierDelays)
	case inPlace: // asked for later than in place waits, and no tier left: the whole wait
		a.step, a.wait = stepRetryInPlace, s.retryAfter
	default:
		a.step, a.reason = stepDeadLetter, ReasonAttemptsExhausted
	}
	return a
}

// nextTier is the retry tier after tier current that a retry asked for
// after the delay after goes to: the first whose delay covers it, else the
// last.
func nextTier(current int, after time.Duration, delays []time.Duration) int {
	for n := current + 1; n <= len(delays); n++ {
		if delays[n-1] >= after {
			return n
		}
	}
	return len(delays)
}

func afterCompletion(s state) action {
	switch {
	case s.err == nil:
		return action{step: stepFinish, outcome: OutcomeProcessed, endHead: s.res.Head}
	case s.lost, errors.Is(s.err, dedupe.ErrLeaseLost):
		return action{step: stepLeaseLost}
	case errors.Is(s.err, dedupe.ErrInvalid):
		return action{step: stepDeadLetter, reason: ReasonInvalidEffect, cause: s.err, attempts: s.res.Attempts}
	}
	return action{step: stepAbandon} // the drain's budget ran out while completing
}
