package handoff

import (
	"bytes"
	"testing"
	"time"

	"github.com/ringkv/ringkv/version"
)

// Fuzz targets for hint records as read back from the store: no panic, and
// what decodes survives encode and decode unchanged.

func FuzzDecodeKey(f *testing.F) {
	k, _ := encodeKey("n2", 42, []byte("user-key"))
	f.Add(k)
	f.Add([]byte{255})
	f.Fuzz(func(t *testing.T, rec []byte) {
		target, seq, key, err := decodeKey(rec)
		if err != nil {
			return
		}
		again, err := encodeKey(target, seq, key)
		if err != nil {
			t.Fatalf("decoded target %q does not encode: %v", target, err)
		}
		if !bytes.Equal(again, rec) {
			t.Fatalf("%x decodes to (%q, %d, %q), which encodes to %x", rec, target, seq, key, again)
		}
		if !bytes.HasPrefix(rec, targetPrefix(target)) {
			t.Fatalf("record %x outside its target's range", rec)
		}
	})
}

func FuzzDecodeValue(f *testing.F) {
	o := &version.Object{}
	o.WriteBlind("n1", []byte("v"), false, 1)
	f.Add(encodeValue(time.Unix(0, 1234567), o))
	f.Add([]byte{recordFormat, 0x80})
	f.Fuzz(func(t *testing.T, v []byte) {
		created, obj, err := decodeValue(v)
		c2, cerr := createdOf(v)
		if err == nil && (cerr != nil || !c2.Equal(created)) {
			t.Fatalf("createdOf disagrees: %v %v, want %v", c2, cerr, created)
		}
		if err != nil {
			return
		}
		c3, o3, err := decodeValue(encodeValue(created, obj))
		if err != nil || !c3.Equal(created) || !o3.Equal(obj) {
			t.Fatalf("round trip: %v %v %v", c3, o3, err)
		}
	})
}
