package console

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"sync"
	"time"
)

// job is a replay that runs after the page that started it was answered;
// its page shows its progress.
type job struct {
	ID      string
	Who     string
	Started time.Time
	Title   string

	mu     sync.Mutex
	done   int
	total  int
	over   bool
	report ReplayReport
	err    error
}

// jobView is what a job's page shows, read under its lock.
type jobView struct {
	ID, Who, Title string
	Started        time.Time
	Done, Total    int
	Over           bool
	Report         ReplayReport
	Err            string
}

func (j *job) view() jobView {
	j.mu.Lock()
	defer j.mu.Unlock()
	v := jobView{ID: j.ID, Who: j.Who, Title: j.Title, Started: j.Started, Done: j.done, Total: j.total, Over: j.over, Report: j.report}
	if j.err != nil {
		v.Err = j.err.Error()
	}
	return v
}

func (j *job) progress(done, total int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.done, j.total = done, total
}

func (j *job) finish(r ReplayReport, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.over, j.report, j.err = true, r, err
	if err == nil {
		j.done = len(r.Verdicts)
		j.total = j.done
	}
}

// jobs are the replays started since the console started (the last 100
// are kept). close cancels the ones running and waits for them.
type jobs struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	now    func() time.Time

	mu    sync.Mutex
	byID  map[string]*job
	order []string
	// running is the job that runs, nil when none does: one at a time.
	running *job
}

func newJobs(now func() time.Time) *jobs {
	ctx, cancel := context.WithCancel(context.Background())
	return &jobs{ctx: ctx, cancel: cancel, now: now, byID: map[string]*job{}}
}

// start runs fn as a new job and returns it; when a job runs already, it
// starts none and returns that one as running.
func (js *jobs) start(who, title string, fn func(ctx context.Context, j *job)) (started, running *job) {
	var b [12]byte
	// crypto/rand does not fail on any supported platform.
	_, _ = rand.Read(b[:])
	j := &job{ID: base64.RawURLEncoding.EncodeToString(b[:]), Who: who, Title: title, Started: js.now()}
	js.mu.Lock()
	if js.running != nil {
		defer js.mu.Unlock()
		return nil, js.running
	}
	js.running = j
	js.byID[j.ID] = j
	js.order = append(js.order, j.ID)
	if len(js.order) > 100 {
		delete(js.byID, js.order[0])
		js.order = js.order[1:]
	}
	js.mu.Unlock()
	js.wg.Add(1)
	go func() {
		defer js.wg.Done()
		defer func() {
			js.mu.Lock()
			js.running = nil
			js.mu.Unlock()
		}()
		fn(js.ctx, j)
	}()
	return j, nil
}

func (js *jobs) get(id string) (*job, bool) {
	js.mu.Lock()
	defer js.mu.Unlock()
	j, ok := js.byID[id]
	return j, ok
}

func (js *jobs) close() {
	js.cancel()
	js.wg.Wait()
}
