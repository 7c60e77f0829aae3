// Package kmsg is the generator's logger. Generators run before journald and
// may not talk to other processes, so the kernel log (/dev/kmsg) is the only
// way to get messages into the boot log; each line carries a syslog priority
// and the "vpn-confinement-generator[PID]: " tag journald uses as identifier.
// Messages stay terse: the kernel rate-limits userspace writes to /dev/kmsg.
package kmsg

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// Priorities.
const (
	Err     = 3
	Warning = 4
	Info    = 6
	Debug   = 7
)

// Logger writes to /dev/kmsg or, as a fallback, to stderr.
type Logger struct {
	mu      sync.Mutex
	w       io.Writer
	kmsg    bool
	tag     string
	verbose bool
}

// Open returns a kmsg logger, or a stderr logger when useKmsg is false or
// /dev/kmsg cannot be opened for writing.
func Open(tag string, useKmsg, verbose bool) *Logger {
	l := &Logger{w: os.Stderr, tag: fmt.Sprintf("%s[%d]: ", tag, os.Getpid()), verbose: verbose}
	if useKmsg {
		if f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
			l.w, l.kmsg = f, true
		}
	}
	return l
}

// Logf logs one message at priority pri; debug only when verbose.
func (l *Logger) Logf(pri int, format string, args ...any) {
	if pri >= Debug && !l.verbose {
		return
	}
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kmsg {
		// One write per record: /dev/kmsg takes each write as one message.
		fmt.Fprintf(l.w, "<%d>%s%s\n", pri, l.tag, msg)
		return
	}
	prefix := ""
	switch pri {
	case Err:
		prefix = "error: "
	}
	fmt.Fprintf(l.w, "%s%s\n", prefix, msg)
}
