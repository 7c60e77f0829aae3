// Package credentials reads the small secret files that port forwarding
// needs: a VPN account (PIA) or a torrent client's WebUI login. The values
// must never reach a log line or an error message, so Credentials formats
// itself as "(hidden)" and every error here names the file and the line
// number, never the content.
//
// File format (one of two, chosen by the first line):
//
//   - key form, when the first line starts with "username=" or
//     "password=": lines "username=VALUE" and "password=VALUE", each at most
//     once, in any order; empty lines and lines starting with '#' are
//     ignored. Convenient for systemd credentials and env-style files.
//   - positional form, anything else: one line is the password alone (for
//     clients without user names, such as Deluge), two lines are the user
//     name and then the password.
//
// Values are taken verbatim: only the line ending ("\n" or "\r\n") is
// removed, so passwords may contain spaces, '=' or '#'. A positional file
// with more than two lines is an error rather than a guess.
package credentials

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Credentials is a user name and a password. Username may be empty.
type Credentials struct {
	Username string
	Password string
}

// String hides the values so that %v, %s and %+v never print them.
func (Credentials) String() string { return "(hidden)" }

// GoString hides the values from %#v.
func (Credentials) GoString() string { return "credentials.Credentials(hidden)" }

// maxSize bounds the file: a credentials file is two short lines, and a
// huge file is a mistake (a wrong path), not a password.
const maxSize = 64 << 10

// Load reads a credentials file (see the package comment for the format).
func Load(path string) (Credentials, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Credentials{}, fmt.Errorf("read credentials: %w", err)
	}
	if len(b) > maxSize {
		return Credentials{}, fmt.Errorf("credentials file %s: larger than %d bytes", path, maxSize)
	}
	c, err := Parse(b)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials file %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes the content of a credentials file.
func Parse(b []byte) (Credentials, error) {
	if bytes.IndexByte(b, 0) >= 0 {
		return Credentials{}, errors.New("contains a NUL byte (not a text file)")
	}
	lines := strings.Split(string(b), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1] // the final newline ends the last line
	}
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	if len(lines) == 0 {
		return Credentials{}, errors.New("empty")
	}
	if isKeyLine(lines[0]) {
		return parseKeys(lines)
	}
	switch len(lines) {
	case 1:
		if lines[0] == "" {
			return Credentials{}, errors.New("empty")
		}
		return Credentials{Password: lines[0]}, nil
	case 2:
		if lines[0] == "" {
			return Credentials{}, errors.New("line 1: empty user name")
		}
		return Credentials{Username: lines[0], Password: lines[1]}, nil
	default:
		return Credentials{}, fmt.Errorf("%d lines; want the user name and the password on two lines, or username=/password= lines", len(lines))
	}
}

func isKeyLine(l string) bool {
	return strings.HasPrefix(l, "username=") || strings.HasPrefix(l, "password=")
}

func parseKeys(lines []string) (Credentials, error) {
	var c Credentials
	var haveUser, havePass bool
	for i, l := range lines {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		key, value, ok := strings.Cut(l, "=")
		switch {
		case !ok:
			return Credentials{}, fmt.Errorf("line %d: want key=value", i+1)
		case key == "username" && !haveUser:
			c.Username, haveUser = value, true
		case key == "password" && !havePass:
			c.Password, havePass = value, true
		case key == "username" || key == "password":
			return Credentials{}, fmt.Errorf("line %d: %s given twice", i+1, key)
		default:
			// Not even the key is shown: a line missing its "password="
			// could be a password that happens to contain '='.
			return Credentials{}, fmt.Errorf("line %d: unknown key (want username= or password=)", i+1)
		}
	}
	if !havePass {
		return Credentials{}, errors.New("no password= line")
	}
	return c, nil
}
