package antientropy

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/ringkv/ringkv/version"
)

// Fuzz targets for the bodies of this package's peer messages: none may
// panic, and what a decoder accepts survives encode and decode unchanged.

func fuzzObject() *version.Object {
	o := &version.Object{}
	o.WriteBlind("n1", []byte("v"), false, 1)
	return o
}

func FuzzDecodeKeys(f *testing.F) {
	f.Add(encodeKeys([]string{"a", "", "bc"}))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		keys, err := decodeKeys(msg)
		if err != nil {
			return
		}
		s := make([]string, len(keys))
		for i, k := range keys {
			s[i] = string(k)
		}
		again, err := decodeKeys(encodeKeys(s))
		if err != nil || len(again) != len(keys) {
			t.Fatalf("%q re-encoded: %q, %v", keys, again, err)
		}
		for i := range keys {
			if !bytes.Equal(again[i], keys[i]) {
				t.Fatalf("key %d changed: %q to %q", i, keys[i], again[i])
			}
		}
	})
}

func FuzzDecodePut(f *testing.F) {
	enc := fuzzObject().Encode(nil)
	msg := binary.AppendUvarint(nil, 1)
	msg = appendBytes(msg, []byte("k"))
	msg = appendBytes(msg, enc)
	f.Add(msg)
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		keys, objs, err := decodePut(msg)
		if err != nil {
			return
		}
		again := binary.AppendUvarint(nil, uint64(len(keys)))
		for i := range keys {
			again = appendBytes(again, keys[i])
			again = appendBytes(again, objs[i].Encode(nil))
		}
		k2, o2, err := decodePut(again)
		if err != nil || len(k2) != len(keys) {
			t.Fatalf("re-encoded put: %d keys, %v", len(k2), err)
		}
		for i := range keys {
			if !bytes.Equal(k2[i], keys[i]) || !o2[i].Equal(objs[i]) {
				t.Fatalf("entry %d changed in a round trip", i)
			}
		}
	})
}

func FuzzDecodeKeyHashes(f *testing.F) {
	msg := binary.AppendUvarint(nil, 2)
	msg = binary.BigEndian.AppendUint64(appendBytes(msg, []byte("a")), 7)
	msg = binary.BigEndian.AppendUint64(appendBytes(msg, nil), 9)
	f.Add(msg)
	f.Fuzz(func(t *testing.T, msg []byte) {
		khs, err := decodeKeyHashes(msg)
		if err != nil {
			return
		}
		again := binary.AppendUvarint(nil, uint64(len(khs)))
		for _, kh := range khs {
			again = binary.BigEndian.AppendUint64(appendBytes(again, []byte(kh.key)), kh.hash)
		}
		k2, err := decodeKeyHashes(again)
		if err != nil || len(k2) != len(khs) {
			t.Fatalf("re-encoded: %d entries, %v", len(k2), err)
		}
		for i := range khs {
			if k2[i] != khs[i] {
				t.Fatalf("entry %d changed: %+v to %+v", i, khs[i], k2[i])
			}
		}
	})
}

func FuzzReadUvarints(f *testing.F) {
	f.Add(appendUvarints(nil, []int{0, 5, 1023}), uint16(1024))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, uint16(10))
	f.Fuzz(func(t *testing.T, msg []byte, limit uint16) {
		vs, rest, err := readUvarints(msg, int(limit))
		if err != nil {
			return
		}
		for _, v := range vs {
			if v < 0 || v >= int(limit) {
				t.Fatalf("value %d outside [0, %d)", v, limit)
			}
		}
		v2, rest2, err := readUvarints(append(appendUvarints(nil, vs), rest...), int(limit))
		if err != nil || len(v2) != len(vs) || !bytes.Equal(rest2, rest) {
			t.Fatalf("re-encoded: %v %v", v2, err)
		}
		for i := range vs {
			if v2[i] != vs[i] {
				t.Fatalf("value %d changed", i)
			}
		}
	})
}

func FuzzDecodeObjects(f *testing.F) {
	enc := fuzzObject().Encode(nil)
	f.Add(appendBytes(appendBytes(nil, enc), nil), uint8(2))
	f.Fuzz(func(t *testing.T, msg []byte, want uint8) {
		objs, err := decodeObjects(msg, int(want))
		if err != nil {
			return
		}
		if len(objs) != int(want) {
			t.Fatalf("asked for %d, got %d", want, len(objs))
		}
		var again []byte
		for _, o := range objs {
			if o == nil {
				again = appendBytes(again, nil)
				continue
			}
			again = appendBytes(again, o.Encode(nil))
		}
		o2, err := decodeObjects(again, int(want))
		if err != nil {
			t.Fatalf("re-encoded: %v", err)
		}
		for i := range objs {
			if (objs[i] == nil) != (o2[i] == nil) || objs[i] != nil && !o2[i].Equal(objs[i]) {
				t.Fatalf("object %d changed", i)
			}
		}
	})
}
