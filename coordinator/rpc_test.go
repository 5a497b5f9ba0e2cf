package coordinator

import (
	"bytes"
	"testing"

	"github.com/ringkv/ringkv/version"
)

func encodeAll(objs []*version.Object) [][]byte {
	out := make([][]byte, len(objs))
	for i, o := range objs {
		out[i] = o.Encode(nil)
	}
	return out
}

// A batch too big for one message is cut into several, each within the
// entry and byte bounds, together holding every entry once, in order.
func TestSplitReplicateBatch(t *testing.T) {
	big := &version.Object{}
	big.WriteBlind("n1", make([]byte, 1<<20), false, 1)
	small := &version.Object{}
	small.WriteBlind("n1", []byte("v"), false, 1)
	var keys [][]byte
	var objs []*version.Object
	for i := range 3000 {
		keys = append(keys, []byte{byte(i >> 8), byte(i)})
		if i%500 == 0 {
			objs = append(objs, big) // 6 MiB of large values in all
		} else {
			objs = append(objs, small)
		}
	}
	msgs := splitReplicateBatch(keys, objs)
	next := 0
	for _, m := range msgs {
		if m.from != next || m.to <= m.from || len(m.keys) != m.to-m.from {
			t.Fatalf("message [%d, %d) with %d keys after entry %d", m.from, m.to, len(m.keys), next)
		}
		next = m.to
		payload := encodeReplicateBatch(m.keys, m.encoded)
		if len(m.keys) > replicateBatchMaxEntries || len(payload) > replicateBatchMaxBytes+64 {
			t.Fatalf("message of %d entries, %d bytes: over the bounds", len(m.keys), len(payload))
		}
		gotKeys, _, err := decodeReplicateBatch(payload)
		if err != nil || !bytes.Equal(gotKeys[0], keys[m.from]) {
			t.Fatalf("message [%d, %d) does not decode to its entries: %v", m.from, m.to, err)
		}
	}
	if next != len(keys) || len(msgs) < 3 {
		t.Fatalf("%d messages covering %d of %d entries", len(msgs), next, len(keys))
	}
}

func batchFixture() ([][]byte, []*version.Object) {
	a := &version.Object{}
	a.WriteBlind("n1", []byte("va"), false, 1)
	b := &version.Object{}
	b.WriteBlind("n2", []byte("vb"), false, 2)
	b.WriteBlind("n2", nil, true, 3)
	return [][]byte{[]byte("a"), []byte(""), []byte("a")}, []*version.Object{a, b, b}
}

// A replicate-batch message decodes to what was encoded, and every damaged
// form of it (truncated, trailing bytes, an absurd count) is an error, not
// a panic or a partial batch.
func TestReplicateBatchCodec(t *testing.T) {
	keys, objs := batchFixture()
	msg := encodeReplicateBatch(keys, encodeAll(objs))
	gotKeys, gotObjs, err := decodeReplicateBatch(msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotKeys) != len(keys) {
		t.Fatalf("decoded %d entries, want %d", len(gotKeys), len(keys))
	}
	for i := range keys {
		if !bytes.Equal(gotKeys[i], keys[i]) || !gotObjs[i].Equal(objs[i]) {
			t.Fatalf("entry %d: got %q %v, want %q %v", i, gotKeys[i], gotObjs[i], keys[i], objs[i])
		}
	}
	for cut := 0; cut < len(msg); cut++ {
		if _, _, err := decodeReplicateBatch(msg[:cut]); err == nil {
			t.Fatalf("a message cut to %d of %d bytes decoded without error", cut, len(msg))
		}
	}
	if _, _, err := decodeReplicateBatch(append(bytes.Clone(msg), 0)); err == nil {
		t.Fatal("trailing bytes decoded without error")
	}
	if _, _, err := decodeReplicateBatch([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}); err == nil {
		t.Fatal("a huge entry count decoded without error")
	}
}

func FuzzDecodeReplicateBatch(f *testing.F) {
	keys, objs := batchFixture()
	f.Add(encodeReplicateBatch(keys, encodeAll(objs)))
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, msg []byte) {
		keys, objs, err := decodeReplicateBatch(msg)
		if err != nil {
			return
		}
		again := encodeReplicateBatch(keys, encodeAll(objs))
		k2, o2, err := decodeReplicateBatch(again)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		for i := range keys {
			if !bytes.Equal(k2[i], keys[i]) || !o2[i].Equal(objs[i]) {
				t.Fatalf("entry %d changed in a round trip", i)
			}
		}
	})
}

// Read-batch requests and replies round-trip, and damaged ones are errors.
func TestReadBatchCodec(t *testing.T) {
	keys, objs := batchFixture()
	msg := encodeKeys(keys)
	got, err := decodeKeys(msg)
	if err != nil || len(got) != len(keys) || !bytes.Equal(got[0], keys[0]) {
		t.Fatalf("decodeKeys: %q %v", got, err)
	}
	for cut := 0; cut < len(msg); cut++ {
		if _, err := decodeKeys(msg[:cut]); err == nil {
			t.Fatalf("a request cut to %d of %d bytes decoded", cut, len(msg))
		}
	}
	reply := []byte{3}
	for _, o := range []*version.Object{objs[0], nil, objs[1]} {
		if o == nil {
			reply = append(reply, 0)
			continue
		}
		enc := o.Encode(nil)
		reply = append(append(reply, byte(len(enc))), enc...)
	}
	dec, err := decodeReadBatchReply(reply, 3)
	if err != nil || dec[1] != nil || !dec[0].Equal(objs[0]) || !dec[2].Equal(objs[1]) {
		t.Fatalf("decodeReadBatchReply: %v %v", dec, err)
	}
	if _, err := decodeReadBatchReply(reply, 2); err == nil {
		t.Fatal("a reply for 3 keys decoded as one for 2")
	}
	for cut := 0; cut < len(reply); cut++ {
		if _, err := decodeReadBatchReply(reply[:cut], 3); err == nil {
			t.Fatalf("a reply cut to %d of %d bytes decoded", cut, len(reply))
		}
	}
}
