package coordinator

import (
	"errors"
	"testing"

	"github.com/ringkv/ringkv/version"
)

// A forwarded write carries PW only when set, so that a write without it
// is byte for byte what nodes before PW sent and read.
func TestWriteRequestCodecCarriesPWOnlyWhenSet(t *testing.T) {
	for _, req := range []writeRequest{
		{key: []byte("k"), value: []byte("v"), w: Quorum},
		{key: []byte("k"), value: []byte("v"), w: 2, pw: Quorum},
		{key: []byte("k"), deleted: true, hasCtx: true, ctx: version.Clock{}, w: All, pw: One},
	} {
		enc := encodeWrite(req)
		got, err := decodeWrite(enc)
		if err != nil {
			t.Fatalf("decode %+v: %v", req, err)
		}
		if got.w != req.w || got.pw != req.pw || got.deleted != req.deleted || got.hasCtx != req.hasCtx ||
			string(got.key) != string(req.key) || string(got.value) != string(req.value) {
			t.Fatalf("round trip of %+v gave %+v", req, got)
		}
		if req.pw == Default && enc[0]&4 != 0 {
			t.Fatalf("a write without PW sets the PW flag: %x", enc)
		}
	}
	// The layout before PW: flags, w+3, key, context, value.
	old := []byte{0, byte(Quorum + 3), 1, 'k', 0, 'v'}
	got, err := decodeWrite(old)
	if err != nil || got.w != Quorum || got.pw != Default || string(got.key) != "k" || string(got.value) != "v" {
		t.Fatalf("decode of a pre-PW write: %+v, %v", got, err)
	}
}

func TestHandoffCodec(t *testing.T) {
	obj := &version.Object{}
	batch := encodeReplicateBatch([][]byte{[]byte("a"), []byte("b")}, [][]byte{obj.Encode(nil), obj.Encode(nil)})
	primary, keys, objs, err := decodeHandoff(encodeHandoff("n3", batch))
	if err != nil || primary != "n3" || len(keys) != 2 || len(objs) != 2 || string(keys[1]) != "b" {
		t.Fatalf("handoff round trip: %q %q %d %v", primary, keys, len(objs), err)
	}
	for _, bad := range [][]byte{nil, {0}, encodeHandoff("", batch), encodeHandoff("n3", nil), {5, 'n'}} {
		if _, _, _, err := decodeHandoff(bad); !errors.Is(err, errMalformed) {
			t.Fatalf("decodeHandoff(%x): %v, want errMalformed", bad, err)
		}
	}
}

// The tally stops as soon as W or PW can no longer be met, and says which.
func TestTallyStopsWhenEitherLevelIsOutOfReach(t *testing.T) {
	fail := errors.New("down")
	cases := []struct {
		name      string
		need      quorum
		sent      fanout
		answers   []ack
		done, met bool
		primaries bool // the failure is about PW
	}{
		{"W met by a fallback", quorum{w: 2}, fanout{all: 2, primaries: 1}, []ack{{primary: false}}, true, true, false},
		{"PW waits for a primary", quorum{w: 2, pw: 2}, fanout{all: 2, primaries: 1}, []ack{{primary: false}}, false, false, false},
		{"PW met", quorum{w: 2, pw: 2}, fanout{all: 2, primaries: 1}, []ack{{primary: false}, {primary: true}}, true, true, false},
		{"PW out of reach", quorum{w: 2, pw: 2}, fanout{all: 2, primaries: 1}, []ack{{primary: true, err: fail}}, true, false, true},
		{"W out of reach", quorum{w: 3}, fanout{all: 2, primaries: 2}, []ack{{primary: true, err: fail}}, true, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tl := newTally(tc.need, nil, tc.sent)
			for _, a := range tc.answers {
				tl.count(a)
			}
			if tl.done() != tc.done || tl.met() != tc.met {
				t.Fatalf("done %v met %v, want %v %v", tl.done(), tl.met(), tc.done, tc.met)
			}
			if tc.done && !tc.met {
				var qe *QuorumError
				if err := tl.failure(3); !errors.As(err, &qe) || qe.Primaries != tc.primaries {
					t.Fatalf("failure %v, want Primaries=%v", err, tc.primaries)
				}
			}
		})
	}
}

func TestPrimaryLevelsParseAndFormat(t *testing.T) {
	for _, s := range []string{"ONE", "QUORUM", "ALL", "2"} {
		lv, err := ParsePrimaryLevel(s)
		if err != nil || FormatLevel(lv) != s {
			t.Fatalf("%s: %d %v -> %q", s, lv, err, FormatLevel(lv))
		}
	}
	if lv, err := ParsePrimaryLevel("0"); err != nil || lv != Default {
		t.Fatalf(`ParsePrimaryLevel("0") = %d, %v; want Default`, lv, err)
	}
	if _, err := ParseLevel("0"); err == nil {
		t.Fatal(`ParseLevel("0") accepted: R and W need at least one node`)
	}
	if n, err := resolvePrimaries("write", Default, 3, 3); n != 0 || err != nil {
		t.Fatalf("PW default: %d %v, want no requirement", n, err)
	}
	if _, err := resolvePrimaries("write", 4, 3, 3); !errors.Is(err, ErrBadLevel) {
		t.Fatalf("PW=4 of N=3: %v, want ErrBadLevel", err)
	}
}
