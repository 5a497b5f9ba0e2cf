package coordinator

import (
	"bytes"
	"testing"

	"github.com/ringkv/ringkv/version"
)

// Fuzz targets for every peer message body this package decodes (the
// replicate batch has its own, FuzzDecodeReplicateBatch in rpc_test.go).
// Each asserts the decoder never panics and, where there is an encoder,
// that what it accepts survives encode and decode unchanged.

func FuzzDecodeKeys(f *testing.F) {
	keys, _ := batchFixture()
	f.Add(encodeKeys(keys))
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, msg []byte) {
		keys, err := decodeKeys(msg)
		if err != nil {
			return
		}
		if len(keys) == 0 || len(keys) > maxBatchEntries {
			t.Fatalf("decoded %d keys", len(keys))
		}
		// Lengths need not be minimal varints, so the input is not always
		// canonical; what it decodes to survives a round trip.
		again, err := decodeKeys(encodeKeys(keys))
		if err != nil || len(again) != len(keys) {
			t.Fatalf("%q re-encoded: %q, %v", keys, again, err)
		}
		for i := range keys {
			if !bytes.Equal(again[i], keys[i]) {
				t.Fatalf("key %d changed in a round trip: %q to %q", i, keys[i], again[i])
			}
		}
	})
}

func FuzzDecodeReadBatchReply(f *testing.F) {
	_, objs := batchFixture()
	reply := []byte{byte(len(objs))}
	for _, o := range objs {
		enc := o.Encode(nil)
		reply = append(reply, byte(len(enc)))
		reply = append(reply, enc...)
	}
	f.Add(reply, uint8(len(objs)))
	f.Add([]byte{2, 0, 0}, uint8(2))
	f.Fuzz(func(t *testing.T, msg []byte, want uint8) {
		objs, err := decodeReadBatchReply(msg, int(want))
		if err != nil {
			return
		}
		if len(objs) != int(want) {
			t.Fatalf("asked for %d objects, got %d", want, len(objs))
		}
		for i, o := range objs {
			if o == nil {
				continue
			}
			if err := o.Validate(); err != nil {
				t.Fatalf("object %d invalid: %v", i, err)
			}
			if _, err := version.DecodeObject(o.Encode(nil)); err != nil {
				t.Fatalf("object %d does not round-trip: %v", i, err)
			}
		}
	})
}

func FuzzDecodeWrite(f *testing.F) {
	var ctx version.Clock = version.Clock{"n1": 3, "n2": 1}
	for _, r := range []writeRequest{
		{key: []byte("k"), value: []byte("v"), w: Default, pw: Default},
		{key: []byte("k"), deleted: true, hasCtx: true, ctx: ctx, w: Quorum, pw: Default},
		{key: []byte(""), value: nil, w: 2, pw: 1, dc: "dc1"},
		{key: []byte("k"), value: []byte("v"), w: LocalQuorum, pw: Default},
		{key: []byte("k"), value: []byte("v"), hasCtx: true, ctx: ctx, w: Quorum, pw: Default, id: 0xfeed},
	} {
		f.Add(encodeWrite(r))
	}
	f.Add([]byte{0x10})
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := decodeWrite(msg)
		if err != nil {
			return
		}
		again, err := decodeWrite(encodeWrite(r))
		if err != nil {
			t.Fatalf("%+v re-encoded does not decode: %v", r, err)
		}
		if !bytes.Equal(again.key, r.key) || !bytes.Equal(again.value, r.value) ||
			again.deleted != r.deleted || again.hasCtx != r.hasCtx || !again.ctx.Equal(r.ctx) ||
			again.w != r.w || again.pw != r.pw || again.dc != r.dc || again.id != r.id {
			t.Fatalf("round trip changed %+v to %+v", r, again)
		}
	})
}

func FuzzDecodeHandoff(f *testing.F) {
	keys, objs := batchFixture()
	f.Add(encodeHandoff("n3", encodeReplicateBatch(keys, encodeAll(objs))))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		primary, keys, objs, err := decodeHandoff(msg)
		if err != nil {
			return
		}
		if primary == "" || len(keys) != len(objs) {
			t.Fatalf("primary %q, %d keys, %d objects", primary, len(keys), len(objs))
		}
		p2, k2, o2, err := decodeHandoff(encodeHandoff(primary, encodeReplicateBatch(keys, encodeAll(objs))))
		if err != nil || p2 != primary || len(k2) != len(keys) {
			t.Fatalf("round trip: %q %d keys, %v", p2, len(k2), err)
		}
		for i := range keys {
			if !bytes.Equal(k2[i], keys[i]) || !o2[i].Equal(objs[i]) {
				t.Fatalf("entry %d changed in a round trip", i)
			}
		}
	})
}

// FuzzDecodeReplicate is the kindReplicate body as Handle reads it.
func FuzzDecodeReplicate(f *testing.F) {
	_, objs := batchFixture()
	f.Add(encodeReplicate([]byte("k"), objs[1]))
	f.Add([]byte{5, 'a'})
	f.Fuzz(func(t *testing.T, msg []byte) {
		key, rest, err := readBytes(msg)
		if err != nil {
			return
		}
		obj, err := version.DecodeObject(rest)
		if err != nil {
			return
		}
		k2, rest2, err := readBytes(encodeReplicate(key, obj))
		if err != nil || !bytes.Equal(k2, key) {
			t.Fatalf("key %q re-encoded: %q, %v", key, k2, err)
		}
		if o2, err := version.DecodeObject(rest2); err != nil || !o2.Equal(obj) {
			t.Fatalf("object %v re-encoded: %v, %v", obj, o2, err)
		}
	})
}
