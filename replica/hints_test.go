package replica

import (
	"testing"
)

func TestHintRecordsStayApartFromDataAndScanByPrefix(t *testing.T) {
	s := openStore(t, "n1")
	if _, err := s.Coordinate([]byte("user"), nil, []byte("v"), false, 1); err != nil {
		t.Fatal(err)
	}
	var keys, values [][]byte
	for _, k := range []string{"b2", "a1", "b1", "c1", "a2"} {
		keys, values = append(keys, []byte(k)), append(values, []byte("value of "+k))
	}
	if err := s.PutHints(keys, values); err != nil {
		t.Fatal(err)
	}
	scan := func(prefix, from string) string {
		var out string
		var f []byte
		if from != "" {
			f = []byte(from)
		}
		if err := s.ScanHints([]byte(prefix), f, func(k, v []byte) bool {
			if string(v) != "value of "+string(k) {
				t.Fatalf("hint %s has value %q", k, v)
			}
			out += string(k) + " "
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, c := range []struct{ prefix, from, want string }{
		{"", "", "a1 a2 b1 b2 c1 "},
		{"b", "", "b1 b2 "},
		{"b", "b2", "b2 "},
		{"a", "", "a1 a2 "},
	} {
		if got := scan(c.prefix, c.from); got != c.want {
			t.Errorf("ScanHints(%q, %q) = %q, want %q", c.prefix, c.from, got, c.want)
		}
	}
	data := 0
	if err := s.Scan(0, ^uint64(0), func(Entry) bool { data++; return true }); err != nil {
		t.Fatal(err)
	}
	if data != 1 {
		t.Fatalf("data scan sees %d keys, want the 1 user key: hints must not look like data", data)
	}
	if err := s.DeleteHints([][]byte{[]byte("a1"), []byte("b2")}); err != nil {
		t.Fatal(err)
	}
	if got := scan("", ""); got != "a2 b1 c1 " {
		t.Fatalf("after delete: %q", got)
	}
	if obj, err := s.Get([]byte("user")); err != nil || obj == nil {
		t.Fatalf("user key lost: %v", err)
	}
}
