package wgquick

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// cmpOpts compares netip values by value and shows secrets in diffs; the
// keys in testdata are random and belong to nobody.
var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmp.Transformer("Reveal", func(s Secret) string { return s.Reveal() }),
}

func pfx(s string, line int) Field[netip.Prefix] {
	return Field[netip.Prefix]{netip.MustParsePrefix(s), line}
}

func addr(s string, line int) Field[netip.Addr] {
	return Field[netip.Addr]{netip.MustParseAddr(s), line}
}

func secret(s string, line int) Field[Secret] { return Field[Secret]{Secret{s}, line} }

func str(s string, line int) Field[string] { return Field[string]{s, line} }

func parseTestdata(t *testing.T, name string) (*File, []Problem) {
	t.Helper()
	f, problems, err := ParseFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return f, problems
}

func TestParseProviderFiles(t *testing.T) {
	tests := []struct {
		file string
		want *File
	}{{
		file: "mullvad.conf", // dual stack, comma lists without spaces, ::0/0
		want: &File{
			Interface: Interface{
				Line:       1,
				PrivateKey: secret("4SmxByE3CmGfi4q3M2EDZj0A0H7B2g2tBuxCDPPJuwI=", 3),
				Address:    []Field[netip.Prefix]{pfx("10.68.45.112/32", 4), pfx("fc00:bbbb:bbbb:bb01::5:2d6f/128", 4)},
				DNS:        []Field[netip.Addr]{addr("10.64.0.1", 5)},
			},
			Peers: []Peer{{
				Line:       7,
				PublicKey:  str("WioqHbdpEpCNiq7YI8L1frk0lWpg1Ze5JU4ZenwpaXw=", 8),
				AllowedIPs: []Field[netip.Prefix]{pfx("0.0.0.0/0", 9), pfx("::/0", 9)},
				Endpoint:   str("185.213.154.68:51820", 10),
			}},
		},
	}, {
		file: "proton.conf", // "# Key for ..." header comments, trailing comment, '#' inside a comment
		want: &File{
			Interface: Interface{
				Line:       1,
				PrivateKey: secret("2VrZ3uf6Dmw9EFlyKRUYFKAsW0QfqizSVF5ivcPNe1k=", 8),
				Address:    []Field[netip.Prefix]{pfx("10.2.0.2/32", 9)},
				DNS:        []Field[netip.Addr]{addr("10.2.0.1", 10)},
			},
			Peers: []Peer{{
				Line:       12,
				PublicKey:  str("qWh+98L7Nq+jtCQtSjTQ2GzlZKKcmTX8tHF/MRX+AxY=", 14),
				AllowedIPs: []Field[netip.Prefix]{pfx("0.0.0.0/0", 15)},
				Endpoint:   str("146.70.86.2:51820", 16),
			}},
		},
	}, {
		file: "ivpn.conf", // several peers, lower-case names, repeated lists, search domain, optional keys
		want: &File{
			Interface: Interface{
				Line:       1,
				PrivateKey: secret("oQpr+oGV/x/DcPC1cQRHs8rH83l0tAx4YYWsL5Z4I6w=", 2),
				Address:    []Field[netip.Prefix]{pfx("172.22.114.55/32", 3), pfx("fd00:4956:504e:ffff::ac16:7237/128", 4)},
				DNS:        []Field[netip.Addr]{addr("172.16.0.1", 5)},
				DNSSearch:  []Field[string]{str("ivpn.net", 5)},
				MTU:        Field[int]{1412, 6},
				ListenPort: Field[uint16]{51820, 7},
				FwMark:     Field[uint32]{0x1234, 8},
			},
			Peers: []Peer{{
				Line:                10,
				PublicKey:           str("dZr+pafUiZYJfaueRJme7zoDixHtZpGJBcM2JZCMK9k=", 11),
				PresharedKey:        secret("twfv6tImC1BVrYbHdmzzU9cBf78CBDjH3NSuSqpSClA=", 12),
				Endpoint:            str("nl3.wg.ivpn.net:2049", 13),
				AllowedIPs:          []Field[netip.Prefix]{pfx("0.0.0.0/0", 14), pfx("::/0", 14)},
				PersistentKeepalive: Field[uint16]{25, 15},
			}, {
				Line:                17,
				PublicKey:           str("lkXy2WpL/HALyLkCSgswCkHi8qGFHhOtMcwhaeBIskE=", 18),
				Endpoint:            str("[2a00:1678:2470:12::2]:53", 19),
				AllowedIPs:          []Field[netip.Prefix]{pfx("10.0.0.0/8", 20), pfx("192.168.0.0/16", 21)},
				PersistentKeepalive: Field[uint16]{0, 22},
			}},
		},
	}, {
		file: "hooks.conf", // wg-quick-only keys are recorded, not rejected
		want: &File{
			Interface: Interface{
				Line:       1,
				PrivateKey: secret("r+WomhGBHM0n+KsROEVsbtn+z8vHwd5YKM4YYoM0XHU=", 2),
				Address:    []Field[netip.Prefix]{pfx("10.8.0.2/24", 3)},
				Unsupported: []Setting{
					{"Table", "off", 4},
					{"PostUp", "ip rule add from 10.8.0.2 table 42; ip route add default dev %i table 42", 5},
					{"PreDown", "ip rule del from 10.8.0.2 table 42", 6},
					{"SaveConfig", "true", 7},
				},
			},
			Peers: []Peer{{
				Line:       9,
				PublicKey:  str("O9YIu87KIj2JR0425W9p3L/76YhIDgodHcxWb3gUz0k=", 10),
				AllowedIPs: []Field[netip.Prefix]{pfx("0.0.0.0/0", 11)},
				Endpoint:   str("vpn.example.net:51820", 12),
			}},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, problems := parseTestdata(t, tt.file)
			if len(problems) != 0 {
				t.Errorf("unexpected problems: %v", problems)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseCRLF checks Windows line endings and a byte order mark, both from
// the checked-in file and built here in case git normalised the file.
func TestParseCRLF(t *testing.T) {
	want, _ := parseTestdata(t, "proton.conf")
	lf, err := os.ReadFile(filepath.Join("testdata", "proton.conf"))
	if err != nil {
		t.Fatal(err)
	}
	built := append([]byte("\uFEFF"), bytes.ReplaceAll(lf, []byte("\n"), []byte("\r\n"))...)
	fromFile, problems := parseTestdata(t, "proton-crlf.conf")
	fromBytes, problems2 := Parse(bytes.NewReader(built))
	if len(problems)+len(problems2) != 0 {
		t.Errorf("unexpected problems: %v %v", problems, problems2)
	}
	for name, got := range map[string]*File{"file": fromFile, "built": fromBytes} {
		if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
			t.Errorf("%s: CRLF parse differs from LF parse (-want +got):\n%s", name, diff)
		}
	}
}

type wantProblem struct {
	Line int
	Key  string
	Text string // substring of the message
}

func checkProblems(t *testing.T, got []Problem, want []wantProblem) {
	t.Helper()
	var g []wantProblem
	for i, p := range got {
		w := wantProblem{p.Line, p.Key, p.Message}
		if i < len(want) && strings.Contains(p.Message, want[i].Text) {
			w.Text = want[i].Text
		}
		g = append(g, w)
	}
	if diff := cmp.Diff(want, g); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestParseBroken(t *testing.T) {
	got, problems := parseTestdata(t, "broken.conf")
	checkProblems(t, problems, []wantProblem{
		{2, "", "before any [Interface] or [Peer] section"},
		{4, "PrivateKey", "not a valid WireGuard key"},
		{5, "Address", `"10.0.0.2/33" is not an IP address`},
		{6, "DNS", `"1.1.1.1.1" is not a valid IP address`},
		{6, "DNS", `"fe80::1%eth0" is not a valid IP address (zones are not allowed)`},
		{8, "MTU", "already set on line 7"},
		{9, "ListenPort", `"http" is not a port number`},
		{10, "FwMark", `"0xZZ" is neither "off" nor a number`},
		{11, "", `unknown key "Addres"; did you mean Address?`},
		{12, "PublicKey", "belongs in a [Peer] section"},
		{13, "", `expected "Key = value"`},
		{15, "", "second [Interface] section (the first is on line 3)"},
		{17, "PublicKey", "got 11 characters"},
		{18, "PresharedKey", "not a valid WireGuard key"},
		{20, "Endpoint", "Endpoint is empty"},
		{21, "PersistentKeepalive", `"70000" is neither "off" nor a number`},
		{22, "DNS", "belongs in the [Interface] section"},
		{23, "PublicKey", "[Peer] has no PublicKey"},
		{25, "", "unknown section [Peers]"},
	})
	// What was valid is still returned, so callers can keep checking.
	want := &File{
		Interface: Interface{
			Line:      3,
			Address:   []Field[netip.Prefix]{pfx("10.0.0.3/32", 5)},
			DNSSearch: []Field[string]{str("corp.example", 6)},
			MTU:       Field[int]{1420, 7},
		},
		Peers: []Peer{
			{Line: 16, AllowedIPs: []Field[netip.Prefix]{pfx("0.0.0.0/0", 19)}},
			{Line: 23, Endpoint: str("192.0.2.1:51820", 24)},
		},
	}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("partial result (-want +got):\n%s", diff)
	}
	assertNoSecrets(t, readTestdata(t, "broken.conf"), problems)
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const (
	testPriv = "4SmxByE3CmGfi4q3M2EDZj0A0H7B2g2tBuxCDPPJuwI="
	testPub  = "WioqHbdpEpCNiq7YI8L1frk0lWpg1Ze5JU4ZenwpaXw="
	testPub2 = "2VrZ3uf6Dmw9EFlyKRUYFKAsW0QfqizSVF5ivcPNe1k="
)

func TestParseStructure(t *testing.T) {
	iface := "[Interface]\nPrivateKey = " + testPriv + "\n"
	peer := "[Peer]\nPublicKey = " + testPub + "\n"
	tests := []struct {
		name string
		in   string
		want []wantProblem
	}{
		{"empty file", "", []wantProblem{{0, "", "no [Interface] section"}, {0, "", "no [Peer] section"}}},
		{"only comments", "# nothing\n\n   # here\n", []wantProblem{{0, "", "no [Interface] section"}, {0, "", "no [Peer] section"}}},
		{"no interface", peer, []wantProblem{{0, "", "no [Interface] section"}}},
		{"no peer", iface, []wantProblem{{0, "", "no [Peer] section"}}},
		{"no private key", "[Interface]\nAddress = 10.0.0.2\n" + peer, []wantProblem{{1, "PrivateKey", "[Interface] has no PrivateKey"}}},
		{"peer without key", iface + "[Peer]\nAllowedIPs = 0.0.0.0/0\n", []wantProblem{{3, "PublicKey", "[Peer] has no PublicKey"}}},
		{"duplicate peer key", iface + peer + peer, []wantProblem{{6, "PublicKey", "same PublicKey as the peer on line 4"}}},
		{"valid minimal", iface + peer, nil},
		{"case-insensitive", "[INTERFACE]\nprivatekey=" + testPriv + "\n[ peer ]\nPUBLICKEY =" + testPub + "\n", nil},
		{"tabs and trailing comments", "\t[Interface] # dev\n\tPrivateKey\t=\t" + testPriv + "\t# key\n" + peer, nil},
		{"missing bracket", "[Interface\n" + iface + peer, []wantProblem{{1, "", "missing its closing ']'"}}},
		{"scalar twice", iface + "ListenPort = 1\nlistenport = 2\n" + peer, []wantProblem{{4, "ListenPort", "already set on line 3"}}},
		{"key before section", "Address = 10.0.0.1\n" + iface + peer, []wantProblem{{1, "", `"Address" appears before any`}}},
		{"spaced key suggestion", iface + peer + "Allowed IPs = 0.0.0.0/0\n", []wantProblem{{5, "", `unknown key "Allowed IPs"; did you mean AllowedIPs?`}}},
		{"bare key text not echoed", iface + peer + testPub2 + "\n", []wantProblem{{5, "", "unknown key (not shown"}}},
		{"DNS junk", iface + "DNS = a b!c\n" + peer, []wantProblem{{3, "DNS", `"b!c" is neither an IP address nor a search domain`}}},
		{"empty list values", iface + "Address =\nDNS = ,\n" + peer + "AllowedIPs =\n", nil},
		{"MTU too small", iface + "MTU = 67\n" + peer, []wantProblem{{3, "MTU", "between 68 and 65455"}}},
		{"FwMark forms", iface + "FwMark = off\n" + peer, nil},
		{"FwMark too big", iface + "FwMark = 0x100000000\n" + peer, []wantProblem{{3, "FwMark", "neither"}}},
		{"FwMark upper-case X", iface + "FwMark = 0X10\n" + peer, []wantProblem{{3, "FwMark", "neither"}}},
		{"private key pasted as public key", iface + "[Peer]\nPublicKey = " + testPriv + "\n", []wantProblem{{4, "PublicKey", "a secret key was pasted"}}},
		{"peer key in [Interface]", iface + "Endpoint = 192.0.2.1:1\n" + peer, []wantProblem{{3, "Endpoint", "belongs in a [Peer] section"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, problems := Parse(strings.NewReader(tt.in))
			checkProblems(t, problems, tt.want)
		})
	}
}

func TestParseValues(t *testing.T) {
	in := "[Interface]\nPrivateKey = " + testPriv + "\n" +
		"Address = 10.0.0.2 fd00::2/64,10.0.0.3/24\n" + // bare IP is a host prefix; host bits kept
		"DNS = 10.0.0.1,fd00::1 corp.example. lan\n" +
		"FwMark = 4294967295\nListenPort = 0\nMTU = 01280\n" +
		"[Peer]\nPublicKey = " + testPub + "\nPersistentKeepalive = OFF\nAllowedIPs = 10.1.2.3/8\n"
	got, problems := Parse(strings.NewReader(in))
	if len(problems) != 0 {
		t.Fatalf("unexpected problems: %v", problems)
	}
	want := &File{
		Interface: Interface{
			Line:       1,
			PrivateKey: secret(testPriv, 2),
			Address:    []Field[netip.Prefix]{pfx("10.0.0.2/32", 3), pfx("fd00::2/64", 3), pfx("10.0.0.3/24", 3)},
			DNS:        []Field[netip.Addr]{addr("10.0.0.1", 4), addr("fd00::1", 4)},
			DNSSearch:  []Field[string]{str("corp.example.", 4), str("lan", 4)},
			FwMark:     Field[uint32]{4294967295, 5},
			ListenPort: Field[uint16]{0, 6},
			MTU:        Field[int]{1280, 7},
		},
		Peers: []Peer{{
			Line:                8,
			PublicKey:           str(testPub, 9),
			PersistentKeepalive: Field[uint16]{0, 10},
			AllowedIPs:          []Field[netip.Prefix]{pfx("10.1.2.3/8", 11)},
		}},
	}
	if diff := cmp.Diff(want, got, cmpOpts); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
	if k := got.Interface.PrivateKey.Value.Key(); k == [32]byte{} {
		t.Errorf("Secret.Key() is zero for a valid key")
	}
}

// TestParseWithholdsSecrets covers key material that lands in fields which
// print as plain text.
func TestParseWithholdsSecrets(t *testing.T) {
	in := "[Interface]\nPrivateKey = " + testPriv + "\nPostUp = wg set %i private-key <(echo " + testPriv + ")\n" +
		"[Peer]\nPublicKey = " + testPriv + "\nEndpoint = " + testPriv + ":1\n"
	f, problems := Parse(strings.NewReader(in))
	checkProblems(t, problems, []wantProblem{
		{5, "PublicKey", "a secret key was pasted"},
		{6, "Endpoint", "contains key material"},
	})
	if got := f.Interface.Unsupported[0].Value; got != "(hidden)" {
		t.Errorf("PostUp value = %q, want (hidden)", got)
	}
	if f.Peers[0].PublicKey.IsSet() || f.Peers[0].Endpoint.IsSet() {
		t.Errorf("secret kept in peer: %+v", f.Peers[0])
	}
}

func TestSecretNeverPrints(t *testing.T) {
	f, _ := parseTestdata(t, "ivpn.conf")
	priv := f.Interface.PrivateKey.Value.Reveal()
	psk := f.Peers[0].PresharedKey.Value.Reveal()
	if priv == "" || psk == "" {
		t.Fatal("testdata secrets not parsed")
	}
	var out []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T"} {
		out = append(out, fmt.Sprintf(verb, f), fmt.Sprintf(verb, f.Interface.PrivateKey.Value))
	}
	out = append(out, f.Interface.PrivateKey.Value.String(), f.Interface.PrivateKey.Value.GoString())
	js, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", "file", f, "key", f.Interface.PrivateKey.Value)
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("x", "file", f, "key", f.Interface.PrivateKey.Value)
	out = append(out, string(js), logBuf.String())
	for _, s := range out {
		if strings.Contains(s, priv) || strings.Contains(s, psk) {
			t.Errorf("secret leaked in %q", s)
		}
	}
	if got := fmt.Sprint(f.Interface.PrivateKey.Value); got != "(hidden)" {
		t.Errorf("fmt.Sprint(Secret) = %q, want (hidden)", got)
	}
}

func TestJoin(t *testing.T) {
	err := Join("provider.conf", []Problem{{Line: 7, Message: "bad"}, {Message: "no [Peer] section"}})
	want := "provider.conf:7: bad\nprovider.conf: no [Peer] section"
	if err == nil || err.Error() != want {
		t.Errorf("Join = %v, want %q", err, want)
	}
	if err := Join("x", nil); err != nil {
		t.Errorf("Join(nil) = %v, want nil", err)
	}
	if got := (Problem{Line: 3, Message: "m"}).Error(); got != "line 3: m" {
		t.Errorf("Problem.Error() = %q", got)
	}
}

func TestParseFileErrors(t *testing.T) {
	if _, _, err := ParseFile(filepath.Join("testdata", "does-not-exist.conf")); err == nil {
		t.Error("ParseFile of a missing file: no error")
	}
	_, problems := Parse(bytes.NewReader(make([]byte, MaxFileSize+1)))
	checkProblems(t, problems, []wantProblem{{0, "", "file is larger than"}})
}

func TestParseNoInterfaceFile(t *testing.T) {
	_, problems := parseTestdata(t, "no-interface.conf")
	checkProblems(t, problems, []wantProblem{{0, "", "no [Interface] section"}})
}

// secretsIn returns the values of the PrivateKey/PresharedKey lines of in
// (as any section would see them) that are at least 8 bytes long; shorter
// ones are not keys and could match ordinary words.
func secretsIn(in string) []string {
	var out []string
	for _, line := range strings.Split(in, "\n") {
		line, _, _ = strings.Cut(line, "#")
		k, v, ok := strings.Cut(line, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(strings.TrimSuffix(v, "\r"))
		if ok && (k == "privatekey" || k == "presharedkey") && len(v) >= 8 {
			out = append(out, v)
		}
	}
	return out
}

// assertNoSecrets fails if a secret value of in shows up in a problem.
func assertNoSecrets(t *testing.T, in string, problems []Problem) {
	t.Helper()
	for _, v := range secretsIn(in) {
		for _, p := range problems {
			if strings.Contains(p.Message, v) || strings.Contains(p.Key, v) || strings.Contains(p.Error(), v) {
				t.Fatalf("secret %q leaked into problem %+v", v, p)
			}
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"mullvad.conf", "proton.conf", "proton-crlf.conf", "ivpn.conf", "hooks.conf", "broken.conf", "no-interface.conf"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("[Interface]\nPrivateKey: " + testPriv + "\nAddress = " + testPriv + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, problems := Parse(bytes.NewReader(data))
		if file == nil {
			t.Fatal("Parse returned a nil File")
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, p := range problems {
			if p.Line < 0 || p.Line > lines || p.Message == "" {
				t.Fatalf("bad problem %+v for %d lines", p, lines)
			}
		}
		assertNoSecrets(t, string(data), problems)
		// A well-formed key is never printed, whichever field it landed in.
		js, err := json.Marshal(file)
		if err != nil {
			t.Fatal(err)
		}
		printed := fmt.Sprintf("%v %+v %#v %s", file, file, file, js)
		for _, v := range secretsIn(string(data)) {
			if _, ok := decodeKey(v); ok && strings.Contains(printed, v) {
				t.Fatalf("secret %q printed: %s", v, printed)
			}
		}
		if file.Interface.PrivateKey.IsSet() {
			if _, ok := decodeKey(file.Interface.PrivateKey.Value.Reveal()); !ok {
				t.Fatal("accepted an invalid PrivateKey")
			}
		}
		for _, a := range file.Interface.Address {
			if !a.Value.IsValid() || a.Line < 1 || a.Line > lines {
				t.Fatalf("bad address %+v", a)
			}
		}
		for _, peer := range file.Peers {
			for _, a := range peer.AllowedIPs {
				if !a.Value.IsValid() || a.Value.Addr().Zone() != "" {
					t.Fatalf("bad AllowedIPs entry %+v", a)
				}
			}
		}
	})
}
