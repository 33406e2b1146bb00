package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// requestTimeout bounds what one page asks the backend.
const requestTimeout = 30 * time.Second

func (s *Server) overview(w http.ResponseWriter, r *http.Request, c Caller) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	o, err := s.cfg.Backend.Overview(ctx)
	if err != nil {
		s.fail(w, r, c, http.StatusBadGateway, "The overview could not be read: "+err.Error())
		return
	}
	s.render(w, http.StatusOK, "overview", c, "Overview", o)
}

// deadLettersView is the list page.
type deadLettersView struct {
	Query    url.Values
	Letters  []DeadLetter
	Total    int
	Page     int
	Pages    int
	PrevURL  string
	NextURL  string
	Reasons  []string
	Problem  string
	Filtered bool
}

// reasons are the dead-letter reasons a filter may pick (docs/events.md).
var reasons = []string{"decode", "unknown_type", "permanent", "conflict", "attempts_exhausted", "invalid_effect",
	"invalid_record", "retry_too_large", "parked_overflow", "parked_too_large", "too_large", "too_many_headers", "too_deep", "too_long"}

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request, c Caller) {
	q := r.URL.Query()
	v := deadLettersView{Query: filterQuery(q), Reasons: reasons, Page: 1}
	v.Filtered = len(v.Query) > 0
	f, err := parseFilter(q, s.cfg.Now())
	if err != nil {
		v.Problem = err.Error()
		s.render(w, http.StatusBadRequest, "deadletters", c, "Dead letters", v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	v.Letters, v.Total, err = s.cfg.Backend.DeadLetters(ctx, f)
	if err != nil {
		s.fail(w, r, c, http.StatusBadGateway, "The dead letters could not be read: "+err.Error())
		return
	}
	v.Page = f.Skip/pageSize + 1
	v.Pages = max(1, (v.Total+pageSize-1)/pageSize)
	pageURL := func(n int) string {
		pq := filterQuery(q)
		pq.Set("page", strconv.Itoa(n))
		return "/deadletters?" + pq.Encode()
	}
	if v.Page > 1 {
		v.PrevURL = pageURL(v.Page - 1)
	}
	if v.Page < v.Pages {
		v.NextURL = pageURL(v.Page + 1)
	}
	s.render(w, http.StatusOK, "deadletters", c, "Dead letters", v)
}

func (s *Server) deadLetter(w http.ResponseWriter, r *http.Request, c Caller) {
	ref, err := parseRef(r.PathValue("topic"), r.PathValue("partition"), r.PathValue("offset"))
	if err != nil {
		s.fail(w, r, c, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	d, err := s.cfg.Backend.DeadLetter(ctx, ref)
	switch {
	case errors.Is(err, ErrNotFound):
		s.fail(w, r, c, http.StatusNotFound, fmt.Sprintf("No dead letter at %s/%d@%d.", ref.Topic, ref.Partition, ref.Offset))
		return
	case err != nil:
		s.fail(w, r, c, http.StatusBadGateway, "The dead letter could not be read: "+err.Error())
		return
	}
	s.render(w, http.StatusOK, "deadletter", c, "Dead letter", d)
}

// selectionOf reads a replay's selection from a form: a dead letter's
// place (topic, partition, offset), or a filter (a duration ago counted
// from now).
func (s *Server) selectionOf(r *http.Request, now time.Time) (Selection, url.Values, error) {
	form := url.Values{}
	if t := r.PostFormValue("topic"); t != "" {
		ref, err := parseRef(t, r.PostFormValue("partition"), r.PostFormValue("offset"))
		if err != nil {
			return Selection{}, nil, err
		}
		form.Set("topic", t)
		form.Set("partition", strconv.Itoa(ref.Partition))
		form.Set("offset", strconv.FormatInt(ref.Offset, 10))
		return Selection{Ref: &ref}, form, nil
	}
	f, err := parseFilter(r.PostForm, now)
	if err != nil {
		return Selection{}, nil, err
	}
	f.Skip, f.Limit = 0, 0
	return Selection{Filter: f}, filterValues(f), nil
}

// replayPlanView is the dry run, with the form that confirms it.
type replayPlanView struct {
	Report ReplayReport
	Form   url.Values
}

func (s *Server) replayPlan(w http.ResponseWriter, r *http.Request, c Caller) (string, string, string) {
	now := s.cfg.Now().Truncate(time.Second)
	sel, form, err := s.selectionOf(r, now)
	if err != nil {
		s.fail(w, r, c, http.StatusBadRequest, err.Error())
		return "", "refused", err.Error()
	}
	if sel.Ref == nil && (sel.Filter.Until.IsZero() || sel.Filter.Until.After(now)) {
		// The confirmation replays what this dry run considers, not the
		// dead letters written while the operator reads it: its filter
		// ends now, and a duration ago is the time it stands for.
		sel.Filter.Until = now
		form = filterValues(sel.Filter)
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	rep, err := s.cfg.Backend.Replay(ctx, sel, true, nil)
	if err != nil {
		s.fail(w, r, c, http.StatusBadGateway, "The dry run failed: "+err.Error())
		return describe(sel), "error", err.Error()
	}
	s.render(w, http.StatusOK, "replayplan", c, "Replay: dry run", replayPlanView{Report: rep, Form: form})
	return describe(sel), "ok", rep.Summary
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request, c Caller) (string, string, string) {
	sel, _, err := s.selectionOf(r, s.cfg.Now())
	if err != nil {
		s.fail(w, r, c, http.StatusBadRequest, err.Error())
		return "", "refused", err.Error()
	}
	if r.PostFormValue("confirm") != "yes" {
		s.fail(w, r, c, http.StatusBadRequest, "A replay needs its confirmation: start from the dry run.")
		return describe(sel), "refused", "not confirmed"
	}
	target := describe(sel)
	j, running := s.jobs.start(c.Name, "Replay of "+target, func(ctx context.Context, j *job) {
		rep, err := s.cfg.Backend.Replay(ctx, sel, false, j.progress)
		j.finish(rep, err)
		outcome, detail := "ok", rep.Summary
		if err != nil {
			outcome, detail = "error", err.Error()
		}
		s.audit.write(ctx, AuditEntry{Who: c.Name, Role: string(c.Role), Action: "replay finished", Target: target, Outcome: outcome, Detail: detail})
	})
	if running != nil {
		// Two replays of the same dead letters would both republish
		// what neither has yet seen done.
		s.fail(w, r, c, http.StatusConflict, "A replay is running, started by "+running.Who+": /jobs/"+running.ID+
			". Start another once it is over.")
		return target, "refused", "job " + running.ID + " is running"
	}
	http.Redirect(w, r, "/jobs/"+j.ID, http.StatusSeeOther)
	return target, "started", "job " + j.ID
}

// describe names a selection for the audit log and the job's title.
func describe(sel Selection) string {
	if sel.Ref != nil {
		return fmt.Sprintf("%s/%d@%d", sel.Ref.Topic, sel.Ref.Partition, sel.Ref.Offset)
	}
	q := filterValues(sel.Filter)
	if len(q) == 0 {
		return "every dead letter"
	}
	return "dead letters where " + q.Encode()
}

func (s *Server) job(w http.ResponseWriter, r *http.Request, c Caller) {
	j, ok := s.jobs.get(r.PathValue("id"))
	if !ok {
		s.fail(w, r, c, http.StatusNotFound, "No such replay (the console keeps its last 100, until it restarts).")
		return
	}
	s.render(w, http.StatusOK, "job", c, "Replay", j.view())
}
