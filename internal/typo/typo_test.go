package typo

import "testing"

func TestClosest(t *testing.T) {
	keys := []string{"mode", "servers", "search", "allowHostResolverIPC"}
	for in, want := range map[string]string{"mdoe": "mode", "sever": "servers", "serach": "search", "zzzzzz": "", "mode": "mode"} {
		if got := Closest(in, keys, 3); got != want {
			t.Errorf("Closest(%q) = %q, want %q", in, got, want)
		}
	}
	if Distance("kitten", "sitting") != 3 {
		t.Error("Distance(kitten, sitting) != 3")
	}
}
