package version

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeClock: DecodeClock never panics, fails only with the documented
// errors, and accepts only canonical encodings.
func FuzzDecodeClock(f *testing.F) {
	f.Add(EncodeClock(Clock{"a": 1, "b": 1 << 40}))
	f.Add(EncodeClock(Clock{}))
	f.Add([]byte{clockFormat, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeClock(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownFormat) {
				t.Fatalf("undocumented error: %v", err)
			}
			return
		}
		if enc := EncodeClock(c); !bytes.Equal(enc, b) {
			t.Fatalf("not canonical: %x re-encodes to %x", b, enc)
		}
	})
}

// FuzzParseClock is the context token as it arrives in an HTTP header or a
// RINGKV.PUT argument.
func FuzzParseClock(f *testing.F) {
	f.Add(ClockToString(Clock{"n1": 3}))
	f.Add("")
	f.Add("  !!not base64 ")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseClock(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownFormat) {
				t.Fatalf("undocumented error: %v", err)
			}
			return
		}
		c2, err := ParseClock(ClockToString(c))
		if err != nil || !c2.Equal(c) {
			t.Fatalf("round trip of %v: %v, %v", c, c2, err)
		}
	})
}
