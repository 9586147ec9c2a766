package xds

import (
	"log/slog"
	"sync"
	"time"
)

// warnLimiter rate-limits warnings per subject (a proxy, a refused
// identity): the first warning of an interval is logged, the others are
// counted and summarized in one line when the interval ends. A proxy that
// misbehaves in a loop costs a line a minute, not a line per request.
// It has its own lock: it is called with the server's lock held and from
// timers.
type warnLimiter struct {
	log      *slog.Logger
	interval time.Duration

	mu       sync.Mutex
	subjects map[string]*warnState
}

type warnState struct {
	start      time.Time
	suppressed int
	last       string
	timer      *time.Timer
}

// maxWarnSubjects bounds the limiter's memory: past it, subjects whose
// interval is over are forgotten.
const maxWarnSubjects = 4096

func newWarnLimiter(log *slog.Logger, interval time.Duration) *warnLimiter {
	return &warnLimiter{log: log, interval: interval, subjects: map[string]*warnState{}}
}

// warn logs msg about subject unless a warning about it was already
// logged in the current interval.
func (l *warnLimiter) warn(subject, msg string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	st := l.subjects[subject]
	if st == nil || now.Sub(st.start) >= l.interval {
		if st != nil {
			l.flushLocked(subject, st)
		} else if len(l.subjects) >= maxWarnSubjects {
			l.pruneLocked(now)
		}
		l.subjects[subject] = &warnState{start: now}
		l.log.Warn(msg, args...)
		return
	}
	st.suppressed++
	st.last = msg
	if st.timer == nil {
		st.timer = time.AfterFunc(st.start.Add(l.interval).Sub(now), func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.subjects[subject] == st {
				l.flushLocked(subject, st)
			}
		})
	}
}

// flushLocked logs the summary of st's suppressed warnings.
func (l *warnLimiter) flushLocked(subject string, st *warnState) {
	if st.timer != nil {
		st.timer.Stop()
		st.timer = nil
	}
	if st.suppressed == 0 {
		return
	}
	l.log.Warn("more warnings suppressed", "about", subject, "count", st.suppressed, "within", l.interval, "last", st.last)
	st.suppressed = 0
}

func (l *warnLimiter) pruneLocked(now time.Time) {
	for k, st := range l.subjects {
		if now.Sub(st.start) >= l.interval {
			l.flushLocked(k, st)
			delete(l.subjects, k)
		}
	}
}
