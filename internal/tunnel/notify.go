package tunnel

import (
	"strings"
	"sync"
)

// asyncNotifier sends sd_notify messages from one goroutine, so the
// supervisor never blocks on its notify socket: a unix datagram sender
// blocks once the receiver has max_dgram_qlen (10 by default) messages
// queued, which a busy PID 1 or a test harness that reads only READY=1
// reaches within seconds of STATUS= updates. Messages other than STATUS=
// (READY=1, STOPPING=1) are sent in order; of the STATUS= lines only the
// latest pending one is sent.
type asyncNotifier struct {
	send   func(string)
	mu     sync.Mutex
	queue  []string
	status string
	wake   chan struct{}
}

func newAsyncNotifier(send func(string)) *asyncNotifier {
	n := &asyncNotifier{send: send, wake: make(chan struct{}, 1)}
	go n.loop()
	return n
}

// Notify queues msg and returns at once.
func (n *asyncNotifier) Notify(msg string) {
	n.mu.Lock()
	if strings.HasPrefix(msg, "STATUS=") {
		n.status = msg
	} else {
		n.queue = append(n.queue, msg)
	}
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *asyncNotifier) loop() {
	for range n.wake {
		for {
			n.mu.Lock()
			var msg string
			switch {
			case len(n.queue) > 0:
				msg, n.queue = n.queue[0], n.queue[1:]
			case n.status != "":
				msg, n.status = n.status, ""
			}
			n.mu.Unlock()
			if msg == "" {
				break
			}
			n.send(msg)
		}
	}
}
