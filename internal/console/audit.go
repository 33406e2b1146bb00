package console

import (
	"context"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// auditLog writes every action to w (a JSON object per line) and to the
// sink, when there is one. An entry the sink refuses is still on w, and
// the refusal is written there too. Safe for concurrent use.
type auditLog struct {
	mu   sync.Mutex
	w    io.Writer
	sink AuditSink
}

func (a *auditLog) write(ctx context.Context, e AuditEntry) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	a.line(e)
	if a.sink == nil {
		return
	}
	if err := a.sink.Append(context.WithoutCancel(ctx), e); err != nil {
		a.line(AuditEntry{Time: time.Now().UTC(), Who: "console", Action: "audit", Target: e.Action,
			Outcome: "error", Detail: "the audit stream refused the entry above: " + err.Error()})
	}
}

func (a *auditLog) line(e AuditEntry) {
	b, err := json.Marshal(struct {
		Audit bool `json:"audit"`
		AuditEntry
	}{true, e})
	if err != nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, _ = a.w.Write(append(b, '\n'))
}
