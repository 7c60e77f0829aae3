// Package journal is the helpers' logger. Helpers run under systemd, which
// connects stderr to the journal and sets $JOURNAL_STREAM; journald then
// turns a leading "<N>" into the message priority (SyslogLevelPrefix=, on by
// default). Outside systemd the prefix would be noise, so it is omitted.
// No timestamps: the journal adds them.
package journal

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// Priorities (syslog levels).
const (
	Alert   = 1
	Err     = 3
	Warning = 4
	Notice  = 5
	Info    = 6
	Debug   = 7
)

// Logger writes prioritized lines.
type Logger struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  bool
	verbose bool
}

// New returns a logger on stderr that uses priority prefixes when stderr is
// the journal.
func New(verbose bool) *Logger {
	return &Logger{w: os.Stderr, prefix: os.Getenv("JOURNAL_STREAM") != "", verbose: verbose}
}

// NewWriter returns a logger writing plain lines to w (tests).
func NewWriter(w io.Writer, verbose bool) *Logger { return &Logger{w: w, verbose: verbose} }

// Logf logs at priority pri. Debug lines are dropped unless verbose.
func (l *Logger) Logf(pri int, format string, args ...any) {
	if l == nil || (pri >= Debug && !l.verbose) {
		return
	}
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.prefix {
		fmt.Fprintf(l.w, "<%d>%s\n", pri, msg)
	} else {
		fmt.Fprintln(l.w, msg)
	}
}

// Errorf logs an error.
func (l *Logger) Errorf(format string, args ...any) { l.Logf(Err, format, args...) }

// Warnf logs a warning.
func (l *Logger) Warnf(format string, args ...any) { l.Logf(Warning, format, args...) }

// Infof logs an informational message.
func (l *Logger) Infof(format string, args ...any) { l.Logf(Info, format, args...) }

// Debugf logs a debug message (only with verbose).
func (l *Logger) Debugf(format string, args ...any) { l.Logf(Debug, format, args...) }
