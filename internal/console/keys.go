package console

import (
	"context"
	"errors"
	"net/http"
	"net/url"
)

// keysView is the keys page: a lookup and its answer, and the held keys.
type keysView struct {
	Ref      RecordRef
	Looked   bool
	Record   *Record
	Problems []string
	HeldKeys []HeldKey
	Notice   string
}

// recordRefOf reads a record's name from a query or form; the group
// defaults to the console's.
func (s *Server) recordRefOf(v url.Values) RecordRef {
	ref := RecordRef{Group: v.Get("group"), Key: v.Get("key"), Source: v.Get("source"), ID: v.Get("id")}
	if ref.Group == "" {
		ref.Group = s.cfg.Backend.Group()
	}
	return ref
}

func (s *Server) keys(w http.ResponseWriter, r *http.Request, c Caller) {
	q := r.URL.Query()
	v := keysView{Ref: s.recordRefOf(q)}
	if n := q.Get("notice"); s.csrf.signed(c, n, q.Get("sig")) {
		v.Notice = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	if q.Get("source") != "" || q.Get("id") != "" {
		v.Looked = true
		switch rec, err := s.cfg.Backend.Record(ctx, v.Ref); {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			v.Problems = append(v.Problems, "The record could not be read: "+err.Error())
		default:
			v.Record = &rec
		}
	}
	held, err := s.cfg.Backend.HeldKeys(ctx)
	if err != nil {
		v.Problems = append(v.Problems, "The held keys could not be read: "+err.Error())
	}
	v.HeldKeys = held
	s.render(w, http.StatusOK, "keys", c, "Keys", v)
}

// confirmView asks for a confirmation before an action.
type confirmView struct {
	Action, Question, Submit string
	Form                     url.Values
	Back                     string
}

func (s *Server) forgetConfirm(w http.ResponseWriter, r *http.Request, c Caller) {
	ref := s.recordRefOf(r.URL.Query())
	if ref.Source == "" || ref.ID == "" {
		s.fail(w, r, c, http.StatusBadRequest, "Forget needs the event's source and id.")
		return
	}
	s.render(w, http.StatusOK, "confirm", c, "Forget a record", confirmView{Action: "/keys/forget",
		Question: "Forget the idempotency record of event " + ref.ID + " from " + ref.Source + " (key " + ref.Key + ", group " + ref.Group +
			")? The event runs again the next time it is delivered.",
		Submit: "Forget the record", Form: refForm(ref), Back: "/keys?" + refForm(ref).Encode()})
}

func refForm(ref RecordRef) url.Values {
	return url.Values{"group": {ref.Group}, "key": {ref.Key}, "source": {ref.Source}, "id": {ref.ID}}
}

func (s *Server) forget(w http.ResponseWriter, r *http.Request, c Caller) (string, string, string) {
	ref := s.recordRefOf(r.PostForm)
	target := "record of " + ref.Source + "/" + ref.ID + " (key " + ref.Key + ", group " + ref.Group + ")"
	if ref.Source == "" || ref.ID == "" {
		s.fail(w, r, c, http.StatusBadRequest, "Forget needs the event's source and id.")
		return target, "refused", "no source or id"
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	found, err := s.cfg.Backend.Forget(ctx, ref)
	if err != nil {
		s.fail(w, r, c, http.StatusBadGateway, "Forget failed: "+err.Error())
		return target, "error", err.Error()
	}
	notice, outcome := "Forgotten: the event runs again the next time it is delivered.", "ok"
	if !found {
		notice, outcome = "There was no record to forget.", "no record"
	}
	http.Redirect(w, r, "/keys?"+s.withNotice(refForm(ref), c, notice).Encode(), http.StatusSeeOther)
	return target, outcome, ""
}

func (s *Server) unblockConfirm(w http.ResponseWriter, r *http.Request, c Caller) {
	key := r.URL.Query().Get("key")
	if key == "" {
		s.fail(w, r, c, http.StatusBadRequest, "Unblock needs a key.")
		return
	}
	s.render(w, http.StatusOK, "confirm", c, "Unblock a key", confirmView{Action: "/keys/unblock",
		Question: "Unblock key " + key + "? Its head event stops holding the events behind it: the next one runs.",
		Submit:   "Unblock the key", Form: url.Values{"key": {key}}, Back: "/keys"})
}

func (s *Server) unblock(w http.ResponseWriter, r *http.Request, c Caller) (string, string, string) {
	key := r.PostFormValue("key")
	if key == "" {
		s.fail(w, r, c, http.StatusBadRequest, "Unblock needs a key.")
		return "", "refused", "no key"
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	said, err := s.cfg.Backend.Unblock(ctx, key)
	if err != nil {
		s.fail(w, r, c, http.StatusBadGateway, "Unblock failed: "+err.Error())
		return "key " + key, "error", err.Error()
	}
	http.Redirect(w, r, "/keys?"+s.withNotice(url.Values{}, c, said).Encode(), http.StatusSeeOther)
	return "key " + key, "ok", said
}

// withNotice adds to q the notice the keys page shows c after an action,
// signed for c: the page shows no notice that the console did not write.
func (s *Server) withNotice(q url.Values, c Caller, notice string) url.Values {
	q.Set("notice", notice)
	q.Set("sig", s.csrf.sign(c, notice))
	return q
}
