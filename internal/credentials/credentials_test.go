package credentials

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Credentials
	}{
		{"two lines", "p1234567\ns3cret\n", Credentials{"p1234567", "s3cret"}},
		{"two lines no final newline", "p1234567\ns3cret", Credentials{"p1234567", "s3cret"}},
		{"crlf", "admin\r\npass word\r\n", Credentials{"admin", "pass word"}},
		{"password only", "hunter2\n", Credentials{Password: "hunter2"}},
		{"verbatim spaces and equals", "u\n  a=b #c  \n", Credentials{"u", "  a=b #c  "}},
		{"keys", "username=admin\npassword=x=y\n", Credentials{"admin", "x=y"}},
		{"keys reversed with comments", "password=pw\n\n# note\nusername=u\n", Credentials{"u", "pw"}},
		{"keys password only", "password=pw\n", Credentials{Password: "pw"}},
		{"keys empty password", "username=u\npassword=\n", Credentials{Username: "u"}},
		{"positional empty password", "u\n\n", Credentials{Username: "u"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseErrorsHideSecrets(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "empty"},
		{"blank line", "\n", "empty"},
		{"three lines", "u\nSECRET\nmore\n", "3 lines"},
		{"empty user", "\nSECRET\n", "empty user name"},
		{"unknown key", "username=u\nSECRET=x\n", "line 2: unknown key"},
		{"no equals", "username=u\nSECRET\n", "line 2: want key=value"},
		{"duplicate", "password=SECRET\npassword=SECRET\n", "line 2: password given twice"},
		{"no password", "username=u\n", "no password= line"},
		{"nul", "u\nSECRET\x00\n", "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error %q leaks the secret", err)
			}
		})
	}
}

func TestFormattingHides(t *testing.T) {
	c := Credentials{Username: "USER", Password: "SECRET"}
	for _, verb := range []string{"%v", "%+v", "%s", "%#v", "%q"} {
		out := fmt.Sprintf(verb, c)
		if strings.Contains(out, "SECRET") || strings.Contains(out, "USER") {
			t.Errorf("%s prints %q", verb, out)
		}
	}
	// Also inside a struct printed by a careless caller.
	out := fmt.Sprintf("%+v", struct{ C Credentials }{c})
	if strings.Contains(out, "SECRET") {
		t.Errorf("nested %%+v prints %q", out)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "creds")
	if err := os.WriteFile(p, []byte("u\nSECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Password != "SECRET" {
		t.Errorf("password = %q", c.Password)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, maxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("big file: %v", err)
	}
}
