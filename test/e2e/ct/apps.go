package ct

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The provider-side web server of the app tests: a BitTorrent tracker
// (/announce) and a file server, in the provider namespace, on the
// server's tunnel address and on the address the provider's DNS gives for
// every name (so tracker.test, or any host name, reaches it through the
// tunnel). It logs one JSON line per request with the client address it
// saw: a confined app's requests must come from its tunnel address.
const (
	TrackerPort = 6969
	// TrackerDNSAddr is what the provider's resolver answers for every A
	// query (vpnc-testpeer -answer).
	TrackerDNSAddr = "10.123.0.77"
	trackerLog     = "/run/vpnc-test/tracker.log"
	trackerScript  = "/run/vpnc-test/tracker.py"
	// FileBin is served at /file.bin; FileBinSize is its length.
	FileBinSize = 200000
)

// trackerPy answers /announce with a valid bencoded reply (no peers), /file.bin
// with FileBinSize bytes, everything else with a short text naming the
// path (a reverse proxy test can see where it landed).
const trackerPy = `import http.server, json, sys, threading
LOG = open(sys.argv[1], 'a', buffering=1)
BLOB = bytes(i % 251 for i in range(int(sys.argv[2])))
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'
    def log_message(self, *a):
        pass
    def reply(self, body, ctype='text/plain'):
        self.send_response(200)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)
    def do_HEAD(self):
        self.do_GET()
    def do_GET(self):
        LOG.write(json.dumps({'client': self.client_address[0], 'server': self.server.server_address[0],
                              'host': self.headers.get('Host'), 'ua': self.headers.get('User-Agent'),
                              'path': self.path}) + '\n')
        if self.path.startswith('/announce'):
            return self.reply(b'd8:completei0e10:incompletei0e8:intervali1800e5:peers0:e')
        if self.path.startswith('/file.bin'):
            return self.reply(BLOB, 'application/octet-stream')
        self.reply(('provider says hello: %s\n' % self.path).encode())
for addr in sys.argv[3:]:
    srv = http.server.ThreadingHTTPServer((addr, 6969), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
open(sys.argv[1] + '.ready', 'w').close()
threading.Event().wait()
`

// StartTracker starts the provider's tracker/web server (see trackerPy).
func (w *World) StartTracker() error {
	if err := w.c.WriteFile(trackerScript, []byte(trackerPy), 0o644); err != nil {
		return err
	}
	script := fmt.Sprintf(`set -e
ip -n vpnsrv addr add %[1]s/32 dev lo
systemd-run --quiet --unit=vpnsrv-tracker ip netns exec vpnsrv /usr/bin/python3 %[2]s %[3]s %[4]d %[5]s %[1]s
for i in $(seq 200); do [ -e %[3]s.ready ] && break; sleep 0.05; done
[ -e %[3]s.ready ]
`, TrackerDNSAddr, trackerScript, trackerLog, FileBinSize, SrvTunnel)
	if r := w.c.Sh(script); r.Code != 0 {
		return fmt.Errorf("start the tracker: %s\n%s", r, w.c.Run("journalctl", "--no-pager", "-u", "vpnsrv-tracker").Stdout)
	}
	return nil
}

// Hit is one request the tracker saw.
type Hit struct {
	Client, Server, Host, UA, Path string
}

// TrackerHits returns every request the tracker logged.
func (w *World) TrackerHits() []Hit {
	b, _ := w.c.ReadFile(trackerLog)
	var out []Hit
	for _, l := range strings.Split(string(b), "\n") {
		var h Hit
		if json.Unmarshal([]byte(l), &h) == nil && h.Client != "" {
			out = append(out, h)
		}
	}
	return out
}

// WaitHit waits until the tracker logged a request for which match is
// true, and returns it.
func (w *World) WaitHit(d time.Duration, match func(Hit) bool) (Hit, bool) {
	deadline := time.Now().Add(d)
	for {
		for _, h := range w.TrackerHits() {
			if match(h) {
				return h, true
			}
		}
		if time.Now().After(deadline) {
			return Hit{}, false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TrackerURL is the announce URL on the server's tunnel address.
func TrackerURL() string { return fmt.Sprintf("http://%s:%d/announce", SrvTunnel, TrackerPort) }

// WgQuick returns peer p's configuration as a provider ships it (a
// wg-quick file with DNS =).
func (w *World) WgQuick(p Peer) string {
	return fmt.Sprintf("[Interface]\nPrivateKey = %s\nAddress = %s/32\nDNS = %s\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 0.0.0.0/0\nEndpoint = %s:%d\nPersistentKeepalive = 25\n",
		p.Private, p.Address, SrvTunnel, w.ServerPub, SrvUplink, WGPort)
}

// Torrent is a single-file v1 torrent.
type Torrent struct {
	Data     []byte // the .torrent file
	InfoHash string // hex, lower case
}

// MakeTorrent builds a torrent of a file called name with content data,
// announcing to announce.
func MakeTorrent(name string, data []byte, announce string) Torrent {
	const pieceLen = 16384
	var pieces []byte
	for i := 0; i < len(data); i += pieceLen {
		s := sha1.Sum(data[i:min(i+pieceLen, len(data))])
		pieces = append(pieces, s[:]...)
	}
	info := bencode(map[string]any{"name": name, "length": len(data), "piece length": pieceLen, "pieces": pieces})
	h := sha1.Sum(info)
	var b bytes.Buffer
	b.WriteString("d8:announce")
	b.Write(bencode(announce))
	b.WriteString("4:info")
	b.Write(info)
	b.WriteString("e")
	return Torrent{Data: b.Bytes(), InfoHash: hex.EncodeToString(h[:])}
}

func bencode(v any) []byte {
	switch x := v.(type) {
	case int:
		return []byte("i" + strconv.Itoa(x) + "e")
	case string:
		return []byte(strconv.Itoa(len(x)) + ":" + x)
	case []byte:
		return append([]byte(strconv.Itoa(len(x))+":"), x...)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := []byte("d")
		for _, k := range keys {
			out = append(out, bencode(k)...)
			out = append(out, bencode(x[k])...)
		}
		return append(out, 'e')
	}
	panic(fmt.Sprintf("bencode %T", v))
}

// InNetns runs argv inside network namespace ns of the container (only
// the network namespace: the file system is the container's).
func (c *Container) InNetns(ns string, argv ...string) Result {
	return c.Run(append([]string{"nsenter", "--net=/run/netns/" + ns}, argv...)...)
}

// Listening reports whether a socket listens on port (proto "tcp" or
// "udp") inside namespace ns, as ss shows it there.
func (c *Container) Listening(ns, proto string, port int) bool {
	flag := "-Htln"
	if proto == "udp" {
		flag = "-Huln"
	}
	r := c.InNetns(ns, "ss", flag, fmt.Sprintf("sport = :%d", port))
	return r.Code == 0 && strings.TrimSpace(r.Stdout) != ""
}

// WaitListening waits until Listening is true.
func (c *Container) WaitListening(ns, proto string, port int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !c.Listening(ns, proto, port) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
	return true
}

// Sockets lists the listening sockets in namespace ns (ss -tulnp), for
// messages.
func (c *Container) Sockets(ns string) string {
	return c.InNetns(ns, "ss", "-tulnp").Stdout
}

// Journal returns the last lines of a unit's journal, for messages.
func (c *Container) Journal(unit string, n int) string {
	return c.Run("journalctl", "--no-pager", "-o", "cat", "-n", strconv.Itoa(n), "-u", unit).Stdout
}

// Curl runs curl in the container's own network namespace (the test's
// host) with -sS and the given arguments; it returns the body and the
// HTTP status (appended by -w).
func (c *Container) Curl(args ...string) (body string, code int, r Result) {
	r = c.Run(append([]string{"curl", "-sS", "--max-time", "20", "-w", "\n%{http_code}"}, args...)...)
	out := strings.TrimRight(r.Stdout, "\n")
	i := strings.LastIndex(out, "\n")
	code, _ = strconv.Atoi(out[i+1:])
	if i < 0 {
		return "", code, r
	}
	return out[:i], code, r
}
