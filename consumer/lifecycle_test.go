package consumer

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fleetworks/fleet/dedupe"
	"github.com/fleetworks/fleet/handlers"
)

// TestDecide covers every branch of the lifecycle: each row is one state and
// the action the rules call for.
func TestDecide(t *testing.T) {
	r := rules{maxAttempts: 5, inPlaceAttempts: 2, tierDelays: []time.Duration{time.Second, time.Minute}, maxInPlaceWait: 5 * time.Second}
	acquired := func(attempts int) dedupe.ClaimResult {
		return dedupe.ClaimResult{Outcome: dedupe.Acquired, Attempts: attempts}
	}
	failedWith := func(kind handlers.Kind) state {
		return state{phase: handled, res: acquired(1), err: errors.New("boom"), kind: kind, tries: 1}
	}
	verdictErr := errors.New("not a CloudEvent")
	tests := []struct {
		name string
		s    state
		want action
	}{
		// After the claim (or the intake's verdict).
		{"another group's retry message is only acknowledged",
			state{verdict: verdictOtherGroup}, action{step: stepFinish, outcome: OutcomeOtherGroup}},
		{"an intake verdict dead-letters without a claim",
			state{verdict: ReasonDecode, err: verdictErr}, action{step: stepDeadLetter, reason: ReasonDecode, cause: verdictErr}},
		{"a duplicate is skipped",
			state{res: dedupe.ClaimResult{Outcome: dedupe.Duplicate}}, action{step: stepFinish, outcome: OutcomeDuplicate}},
		{"a record the store cannot claim dead-letters",
			state{res: dedupe.ClaimResult{Outcome: dedupe.Invalid, Reason: "WRONGTYPE"}},
			action{step: stepDeadLetter, reason: ReasonInvalidRecord, cause: errors.New("WRONGTYPE")}},
		{"an id reused with another payload dead-letters",
			state{res: dedupe.ClaimResult{Outcome: dedupe.Conflict}}, action{step: stepDeadLetter, reason: ReasonConflict, cause: errConflict}},
		{"a claim someone else holds is waited for",
			state{res: dedupe.ClaimResult{Outcome: dedupe.Busy}}, action{step: stepWaitBusy}},
		{"a claim lost in the lane is claimed again",
			state{res: acquired(1), lost: true}, action{step: stepReclaim}},
		{"a budget spent before the run dead-letters with the attempts made",
			state{res: acquired(6)}, action{step: stepDeadLetter, reason: ReasonAttemptsExhausted, cause: errBudgetBefore, attempts: 5}},
		{"the last attempt of the budget runs",
			state{res: acquired(5)}, action{step: stepRun}},
		{"an acquired claim runs",
			state{res: acquired(1)}, action{step: stepRun}},
		{"an outcome the engine does not know never runs the handler",
			state{res: dedupe.ClaimResult{Outcome: dedupe.Outcome(99), Attempts: 1}},
			action{step: stepAbandon, cause: errUnknownOutcome}},
		{"nor does a zero answer",
			state{res: dedupe.ClaimResult{}}, action{step: stepAbandon, cause: errUnknownOutcome}},

		// After the handler.
		{"a handler that succeeded completes",
			state{phase: handled, res: acquired(1), tries: 1}, action{step: stepComplete}},
		{"a handler that succeeded under a lost lease still asks to complete (the store refuses)",
			state{phase: handled, res: acquired(1), lost: true, tries: 1}, action{step: stepComplete}},
		{"a failure under a lost lease records it and claims again",
			state{phase: handled, res: acquired(1), err: context.Canceled, lost: true, tries: 1}, action{step: stepLeaseLost}},
		{"a failure while draining abandons",
			state{phase: handled, res: acquired(1), err: context.Canceled, stopping: true, tries: 1}, action{step: stepAbandon}},
		{"a lost lease outranks the drain",
			state{phase: handled, res: acquired(1), err: context.Canceled, lost: true, stopping: true}, action{step: stepLeaseLost}},
		{"a permanent failure dead-letters",
			failedWith(handlers.KindPermanent), deadLettered(ReasonPermanent, 1)},
		{"an unknown type dead-letters",
			failedWith(handlers.KindUnknownType), deadLettered(ReasonUnknownType, 1)},
		{"a retryable failure retries in place",
			failedWith(handlers.KindRetryable), retried(stepRetryInPlace, 1)},
		{"effects a handler gave that cannot apply dead-letter",
			failedWith(handlers.KindInvalidEffect), deadLettered(ReasonInvalidEffect, 1)},
		{"a retry asked for later waits that long in place",
			state{phase: handled, res: acquired(1), err: errors.New("429"), kind: handlers.KindRetryable, retryAfter: 3 * time.Second, tries: 1},
			waited(retried(stepRetryInPlace, 1), 3*time.Second)},
		{"a retry asked for later than in place waits moves to the first tier whose delay covers it",
			state{phase: handled, res: acquired(1), err: errors.New("503"), kind: handlers.KindRetryable, retryAfter: 30 * time.Second, tries: 1},
			onTier(retried(stepRetryTier, 1), 2)},
		{"past every tier's delay, to the last tier",
			state{phase: handled, res: acquired(1), err: errors.New("503"), kind: handlers.KindRetryable, retryAfter: time.Hour, tries: 1},
			onTier(retried(stepRetryTier, 1), 2)},
		{"without a tier left, it waits in place as long as asked",
			state{phase: handled, res: acquired(1), err: errors.New("503"), kind: handlers.KindRetryable, retryAfter: time.Hour, tries: 1, tier: 2},
			waited(retried(stepRetryInPlace, 1), time.Hour)},
		{"the last failure of the budget dead-letters, whatever the tiers",
			state{phase: handled, res: acquired(5), err: errors.New("boom"), kind: handlers.KindRetryable, tries: 1},
			deadLettered(ReasonAttemptsExhausted, 5)},
		{"past the budget too",
			state{phase: handled, res: acquired(7), err: errors.New("boom"), kind: handlers.KindRetryable, tries: 1},
			deadLettered(ReasonAttemptsExhausted, 7)},
		{"in-place attempts spent moves to the next tier",
			state{phase: handled, res: acquired(2), err: errors.New("boom"), kind: handlers.KindRetryable, tries: 2},
			onTier(retried(stepRetryTier, 2), 1)},
		{"in-place attempts spent on a middle tier moves on",
			state{phase: handled, res: acquired(2), err: errors.New("boom"), kind: handlers.KindRetryable, tries: 2, tier: 1},
			onTier(retried(stepRetryTier, 2), 2)},
		{"in-place attempts spent on the last tier dead-letters",
			state{phase: handled, res: acquired(2), err: errors.New("boom"), kind: handlers.KindRetryable, tries: 2, tier: 2},
			deadLettered(ReasonAttemptsExhausted, 2)},
		{"on a tier beyond the configured ones too",
			state{phase: handled, res: acquired(2), err: errors.New("boom"), kind: handlers.KindRetryable, tries: 3, tier: 4},
			deadLettered(ReasonAttemptsExhausted, 2)},

		// After the completion.
		{"a completion accepted finishes",
			state{phase: completed, res: acquired(1)}, action{step: stepFinish, outcome: OutcomeProcessed}},
		{"a completion refused for a lost lease claims again",
			state{phase: completed, res: acquired(1), err: dedupe.ErrLeaseLost}, action{step: stepLeaseLost}},
		{"a wrapped lost lease too",
			state{phase: completed, res: acquired(1), err: fmt.Errorf("complete: %w", dedupe.ErrLeaseLost)}, action{step: stepLeaseLost}},
		{"a lease found lost while completing",
			state{phase: completed, res: acquired(1), err: context.Canceled, lost: true}, action{step: stepLeaseLost}},
		{"effects the store refuses dead-letter",
			state{phase: completed, res: acquired(3), err: dedupe.ErrInvalid},
			action{step: stepDeadLetter, reason: ReasonInvalidEffect, cause: dedupe.ErrInvalid, attempts: 3}},
		{"a completion cut short by the drain budget abandons",
			state{phase: completed, res: acquired(1), err: context.Canceled}, action{step: stepAbandon}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decide(tt.s, r)
			if tt.want.cause == errSame {
				tt.want.cause = tt.s.err
			}
			if !sameAction(got, tt.want) {
				t.Errorf("decide(%+v)\n got %+v\nwant %+v", tt.s, got, tt.want)
			}
		})
	}
}

// deadLettered is the action for a handler failure that dead-letters.
func deadLettered(reason string, attempts int) action {
	return action{step: stepDeadLetter, reason: reason, attempts: attempts, handlerFailed: true, cause: errSame}
}

// onTier is a with the retry tier it writes to.
func onTier(a action, n int) action {
	a.tier = n
	return a
}

// waited is a with the wait of a retry in place.
func waited(a action, d time.Duration) action {
	a.wait = d
	return a
}

// retried is the action for a handler failure retried in place or on a tier.
func retried(s step, attempts int) action {
	return action{step: s, attempts: attempts, handlerFailed: true, cause: errSame}
}

// errSame in a wanted action stands for the state's own error.
var errSame = errors.New("the state's error")

func sameAction(got, want action) bool {
	gotCause, wantCause := got.cause, want.cause
	got.cause, want.cause = nil, nil
	if got != want {
		return false
	}
	switch {
	case wantCause == nil:
		return gotCause == nil
	case gotCause == nil:
		return false
	}
	return gotCause.Error() == wantCause.Error() || errors.Is(gotCause, wantCause)
}
