package sources

import (
	"time"

	"github.com/go-logr/logr"
)

// firstReadPoll is how soon a preset is reconciled again while one of its
// sources has not been read yet.
const firstReadPoll = time.Second

// unread says whether a snapshot has neither values nor an error yet.
func unread(snaps map[string]Snapshot) bool {
	for _, s := range snaps {
		if !s.Has && s.Err == nil {
			return true
		}
	}
	return false
}

// slowReconcile is how long a reconcile may take before it is logged.
const slowReconcile = time.Second

// stepTimer times the steps of one reconcile.
type stepTimer struct {
	start, last time.Time
	steps       []any
}

// done records how long the step that just ended took.
func (s *stepTimer) done(step string) {
	now := time.Now()
	if s.last.IsZero() {
		s.last = s.start
	}
	s.steps = append(s.steps, step, now.Sub(s.last).Round(time.Millisecond).String())
	s.last = now
}

// logIfSlow logs the steps of a reconcile that took longer than
// slowReconcile.
func (s *stepTimer) logIfSlow(log logr.Logger) {
	if took := time.Since(s.start); took > slowReconcile {
		log.Info("slow reconcile", append([]any{"took", took.Round(time.Millisecond).String()}, s.steps...)...)
	}
}
