package status

import (
	"bytes"
	"strings"
	"testing"
)

func withPublished(n *Namespace) *Namespace {
	active := func(name, sub string) Unit {
		return Unit{Name: name, LoadState: "loaded", ActiveState: "active", SubState: sub}
	}
	n.Published = []Published{
		{Unit: "vpn-publish-media-8080", Port: 8080, KernelRead: true, Connections: 2,
			Socket: active("vpn-publish-media-8080.socket", "running"), Service: active("vpn-publish-media-8080.service", "running"),
			Listen: []PublishedAddr{
				{Address: "127.0.0.1:8080", Listening: true, HeldBySystemd: true, Holders: []string{"systemd-socket- (PID 300)"}, Connections: 2},
				{Address: "[::1]:8080", Listening: true, HeldBySystemd: true, Holders: []string{}},
			}},
		{Unit: "vpn-publish-media-8112", Port: 8112, Activate: "deluge-web.service", KernelRead: true,
			Socket: active("vpn-publish-media-8112.socket", "listening"), Service: Unit{Name: "deluge-web.service", LoadState: "loaded", ActiveState: "inactive"},
			Listen: []PublishedAddr{{Address: "0.0.0.0:8112", Listening: true, HeldBySystemd: true, Holders: []string{}}}},
	}
	n.ToHost = &ToHost{Address: "169.254.23.1", TCP: []uint16{8096}, UDP: []uint16{}, Connections: map[uint16]int{8096: 1},
		Table: "vpnc_hostlink_media", TablePresent: true, AcceptedTCP: 4, KernelRead: true}
	return n
}

func TestPublishedText(t *testing.T) {
	n := withPublished(healthy())
	Assess(n, allKnown, now)
	if n.State != StateUp || len(n.Problems) > 0 {
		t.Fatalf("state %s, problems %v", n.State, n.Problems)
	}
	var b bytes.Buffer
	n.writeText(&b, now)
	for _, want := range []string{
		"published  127.0.0.1:8080 [::1]:8080 → port 8080 in the namespace (proxy vpn-publish-media-8080.service active); vpn-publish-media-8080.socket active, 2 connections",
		"             127.0.0.1:8080: 2 connections",
		"0.0.0.0:8112 → port 8112, handed to deluge-web.service (inactive); vpn-publish-media-8112.socket active, 0 connections",
		"to host    confined services may open tcp/8096 (1 connection) on the host at 169.254.23.1",
		"table inet vpnc_hostlink_media: 4 TCP connections and 0 UDP flows accepted, 0 packets dropped from the link",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}

func TestPublishedProblems(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(n *Namespace)
		state   string
		problem string
	}{
		{"socket stopped", func(n *Namespace) { n.Published[0].Socket.ActiveState = "inactive" }, StateDegraded,
			"vpn-publish-media-8080.socket is inactive: the published port is closed"},
		{"socket failed", func(n *Namespace) { n.Published[1].Socket.ActiveState = "failed" }, StateFailed,
			"vpn-publish-media-8112.socket failed: the published port is closed (is the address in use? vpn-confinement doctor"},
		{"file vanished at daemon-reload", func(n *Namespace) {
			n.Published[1].Listen[0].Listening, n.Published[1].Listen[0].HeldBySystemd = false, false
		}, StateDegraded, "nothing listens on 0.0.0.0:8112 (its unit file was gone at a daemon-reload): systemctl reload vpn-ns@media.service"},
		{"only the proxy holds it", func(n *Namespace) { n.Published[0].Listen[0].HeldBySystemd = false }, StateDegraded,
			"only systemd-socket- (PID 300) still holds 127.0.0.1:8080"},
		{"host table missing", func(n *Namespace) { n.ToHost.TablePresent = false }, StateDegraded,
			"table inet vpnc_hostlink_media is missing on the host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := withPublished(healthy())
			tc.mutate(n)
			Assess(n, allKnown, now)
			if n.State != tc.state || !strings.Contains(strings.Join(n.Problems, "\n"), tc.problem) {
				t.Errorf("state %s, problems:\n%s\nwant %s with %q", n.State, strings.Join(n.Problems, "\n"), tc.state, tc.problem)
			}
		})
	}
}
