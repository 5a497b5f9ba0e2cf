package version

import (
	"errors"
	"strings"
	"testing"
)

func TestClockCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b Clock
		want Order
	}{
		{nil, Clock{}, Equal},
		{Clock{"a": 0}, nil, Equal},
		{Clock{"a": 1}, Clock{"a": 2}, Before},
		{Clock{"a": 2, "b": 1}, Clock{"a": 2}, After},
		{Clock{"a": 1}, Clock{"b": 1}, Concurrent},
	} {
		if got := tc.a.Compare(tc.b); got != tc.want {
			t.Errorf("%v.Compare(%v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	c := Clock{"b": 2, "a": 1, "z": 0}
	if c.String() != "{a:1, b:2}" {
		t.Fatalf("String = %s", c.String())
	}
	m := c.Merge(Clock{"a": 3})
	if m.String() != "{a:3, b:2}" || c["a"] != 1 {
		t.Fatalf("Merge = %v, input %v", m, c)
	}
	if !c.Covers(Dot{"b", 2}) || c.Covers(Dot{"b", 3}) || c.Covers(Dot{"x", 1}) {
		t.Fatal("Covers")
	}
}

func TestClockTokenRoundTrip(t *testing.T) {
	c := Clock{"node-1": 3, "node-2": 1 << 40, "n/3": 1}
	tok := ClockToString(c)
	if strings.ContainsAny(tok, "+/=") {
		t.Fatalf("token %q is not URL-safe", tok)
	}
	got, err := ParseClock(" " + tok + "\r\n")
	if err != nil || !got.Equal(c) {
		t.Fatalf("ParseClock = %v, %v", got, err)
	}
	if ClockToString(Clock{"a": 0}) != "" {
		t.Fatal("empty clock should give empty token")
	}
	if e, err := ParseClock(""); err != nil || e == nil || len(e) != 0 {
		t.Fatalf("ParseClock(\"\") = %v, %v", e, err)
	}
	// Deterministic: same clock, same bytes, whatever the map order.
	if string(EncodeClock(Clock{"a": 1, "b": 2})) != string(EncodeClock(Clock{"b": 2, "a": 1})) {
		t.Fatal("encoding not deterministic")
	}
	for _, bad := range []string{"!!!", "AA", "AQEBYQA", ClockToString(Clock{"a": MaxCounter + 1})} {
		if _, err := ParseClock(bad); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownFormat) {
			t.Errorf("ParseClock(%q) err = %v", bad, err)
		}
	}
}
