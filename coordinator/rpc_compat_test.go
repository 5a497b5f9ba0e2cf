package coordinator

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/ringkv/ringkv/version"
)

// decodeWriteBeforePW is decodeWrite as the release before PW and
// datacenter levels had it: flags 1 and 2, w+3 at most 2^20, key, context,
// value; other flag bits ignored.
func decodeWriteBeforePW(b []byte) (writeRequest, error) {
	var r writeRequest
	if len(b) < 1 {
		return r, errMalformed
	}
	r.deleted = b[0]&1 != 0
	r.hasCtx = b[0]&2 != 0
	b = b[1:]
	w, n := binary.Uvarint(b)
	if n <= 0 || w > 1<<20 {
		return r, errMalformed
	}
	r.w = int(w) - 3
	b = b[n:]
	var err error
	if r.key, b, err = readBytes(b); err != nil {
		return r, err
	}
	var ctxBytes []byte
	if ctxBytes, b, err = readBytes(b); err != nil {
		return r, err
	}
	if r.hasCtx {
		if r.ctx, err = version.DecodeClock(ctxBytes); err != nil {
			return r, errMalformed
		}
	}
	r.value = b
	return r, nil
}

// A forwarded write with PW is refused as malformed by a node of the
// release before PW (which would otherwise read the PW field as the key's
// length and apply the write to another key), and decodes here.
func TestWriteWithPWIsRefusedByNodesBeforePW(t *testing.T) {
	for _, req := range []writeRequest{
		{key: []byte("k"), value: []byte("v"), w: Quorum, pw: Quorum},
		{key: []byte("key"), value: []byte("value"), w: 2, pw: 1},
		{key: []byte("k"), deleted: true, hasCtx: true, ctx: version.Clock{}, w: All, pw: One},
		{key: []byte("k"), value: []byte("v"), w: LocalQuorum, pw: 2, dc: "dc1"},
	} {
		enc := encodeWrite(req)
		if old, err := decodeWriteBeforePW(enc); err == nil {
			t.Fatalf("%+v: a node before PW decodes it as key %q, value %q, w %d", req, old.key, old.value, old.w)
		}
		got, err := decodeWrite(enc)
		if err != nil || got.w != req.w || got.pw != req.pw || got.dc != req.dc || string(got.key) != string(req.key) || string(got.value) != string(req.value) {
			t.Fatalf("round trip of %+v: %+v, %v", req, got, err)
		}
	}
	// Without PW a write stays what the older release reads.
	plain := writeRequest{key: []byte("k"), value: []byte("v"), w: Quorum}
	if old, err := decodeWriteBeforePW(encodeWrite(plain)); err != nil || string(old.key) != "k" || old.w != Quorum {
		t.Fatalf("a write without PW, decoded by a node before PW: %+v, %v", old, err)
	}
}

// Flag bits this release does not know are refused: a later release's
// field would otherwise be read as another one.
func TestDecodeWriteRefusesUnknownFlags(t *testing.T) {
	enc := encodeWrite(writeRequest{key: []byte("k"), value: []byte("v"), w: Quorum})
	for bit := 4; bit < 8; bit++ {
		b := append([]byte{enc[0] | 1<<bit}, enc[1:]...)
		if _, err := decodeWrite(b); !errors.Is(err, errMalformed) {
			t.Fatalf("flag bit %d: %v, want errMalformed", bit, err)
		}
	}
}
