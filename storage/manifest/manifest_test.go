package manifest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/storage/base"
)

func ikey(user string, seq base.SeqNum, kind base.Kind) []byte {
	return base.MakeInternalKey(nil, []byte(user), seq, kind)
}

func randKey(rng *rand.Rand) []byte {
	u := make([]byte, rng.Intn(20))
	rng.Read(u)
	return base.MakeInternalKey(nil, u, base.SeqNum(rng.Int63n(int64(base.SeqNumMax))), base.Kind(rng.Intn(2)))
}

func randEdit(rng *rand.Rand) *VersionEdit {
	e := &VersionEdit{}
	if rng.Intn(2) == 0 {
		e.LogNumber, e.HasLogNumber = rng.Uint64(), true
	}
	if rng.Intn(2) == 0 {
		e.NextFileNumber, e.HasNextFileNumber = rng.Uint64()>>uint(rng.Intn(64)), true
	}
	if rng.Intn(2) == 0 {
		e.LastSeq, e.HasLastSeq = base.SeqNum(rng.Int63n(int64(base.SeqNumMax)+1)), true
	}
	for i := range rng.Intn(5) {
		e.Deleted = append(e.Deleted, DeletedFile{Level: rng.Intn(NumLevels), Num: uint64(i)*1000 + uint64(rng.Intn(1000))})
	}
	for i := range rng.Intn(5) {
		a, b := randKey(rng), randKey(rng)
		if base.Compare(a, b) > 0 {
			a, b = b, a
		}
		s1, s2 := base.SeqNum(rng.Int63n(1<<40)), base.SeqNum(rng.Int63n(1<<40))
		if s1 > s2 {
			s1, s2 = s2, s1
		}
		e.Added = append(e.Added, NewFile{Level: rng.Intn(NumLevels), Meta: FileMeta{
			Num: uint64(i)*1000 + uint64(rng.Intn(1000)), Size: rng.Uint64() >> uint(rng.Intn(64)),
			Smallest: a, Largest: b, SmallestSeq: s1, LargestSeq: s2,
		}})
	}
	for i := range rng.Intn(3) {
		a, b := randUserKey(rng), randUserKey(rng)
		if bytes.Compare(a, b) > 0 {
			a, b = b, a
		}
		var reason string
		if rng.Intn(4) > 0 {
			reason = strings.Repeat("r", rng.Intn(MaxReasonLen+1))
		}
		e.Quarantined = append(e.Quarantined, QuarantinedFile{
			Level: rng.Intn(NumLevels), Num: uint64(i)*1000 + uint64(rng.Intn(1000)),
			Smallest: a, Largest: b, Reason: reason,
		})
	}
	return e
}

// randUserKey is nil or a non-empty user key, as Decode gives them back.
func randUserKey(rng *rand.Rand) []byte {
	n := rng.Intn(20)
	if n == 0 {
		return nil
	}
	u := make([]byte, n)
	rng.Read(u)
	return u
}

func TestRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for i := range 2000 {
		e := randEdit(rng)
		if err := e.Validate(); err != nil {
			t.Fatalf("edit %d: random edit invalid: %v", i, err)
		}
		enc := e.Encode([]byte("prefix"))
		if !bytes.HasPrefix(enc, []byte("prefix")) {
			t.Fatal("Encode dropped dst")
		}
		enc = enc[len("prefix"):]
		var got VersionEdit
		if err := got.Decode(enc); err != nil {
			t.Fatalf("edit %d: %v", i, err)
		}
		if !reflect.DeepEqual(&got, e) {
			t.Fatalf("edit %d: round trip\n got %+v\nwant %+v", i, got, *e)
		}
		if re := got.Encode(nil); !bytes.Equal(re, enc) {
			t.Fatalf("edit %d: re-encoding differs", i)
		}
	}
}

func TestDecodeEmpty(t *testing.T) {
	e := VersionEdit{HasLogNumber: true, LogNumber: 5}
	if err := e.Decode(nil); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e, VersionEdit{}) {
		t.Fatalf("Decode(nil) = %+v, want zero edit", e)
	}
}

func TestDecodeCopies(t *testing.T) {
	e := &VersionEdit{Added: []NewFile{{Level: 1, Meta: FileMeta{Num: 1, Smallest: ikey("a", 1, 1), Largest: ikey("b", 1, 1)}}}}
	enc := e.Encode(nil)
	var got VersionEdit
	if err := got.Decode(enc); err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		enc[i] = 0xee
	}
	if !reflect.DeepEqual(&got, e) {
		t.Fatal("decoded edit aliases its input")
	}
}

// Encoding helpers for hand-made malformed input.
func uv(vs ...uint64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func str(k []byte) []byte { return cat(uv(uint64(len(k))), k) }

// newFileBytes encodes tag 5 with the given fields.
func newFileBytes(level, num uint64, smallest, largest []byte, sseq, lseq uint64) []byte {
	return cat(uv(tagNewFile, level, num, 100), str(smallest), str(largest), uv(sseq, lseq))
}

func TestDecodeMalformed(t *testing.T) {
	a, b := ikey("a", 5, base.KindSet), ikey("b", 5, base.KindSet)
	good := newFileBytes(1, 7, a, b, 1, 5)
	var e VersionEdit
	if err := e.Decode(good); err != nil {
		t.Fatalf("control case: %v", err)
	}
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"unknown tag", uv(9, 1), "unknown tag 9 at byte 0"},
		{"tag zero", uv(0), "unknown tag 0"},
		{"unknown tag after field", cat(uv(tagLogNumber, 3), uv(200)), "unknown tag 200 at byte 2"},
		{"truncated tag", []byte{0x80}, "truncated varint for tag at byte 0"},
		{"overflowing varint", cat(uv(tagLogNumber), bytes.Repeat([]byte{0xff}, 10), []byte{1}), "log number at byte 1 overflows"},
		{"missing log number", uv(tagLogNumber), "truncated varint for log number"},
		{"truncated next file number", cat(uv(tagNextFileNumber), []byte{0x81}), "truncated varint for next file number"},
		{"missing last seq", uv(tagLastSeq), "truncated varint for last sequence number"},
		{"repeated log number", uv(tagLogNumber, 1, tagLogNumber, 2), "repeated log number at byte 2"},
		{"repeated next file number", uv(tagNextFileNumber, 1, tagNextFileNumber, 1), "repeated next file number"},
		{"repeated last seq", uv(tagLastSeq, 1, tagLastSeq, 1), "repeated last sequence number"},
		{"last seq too large", uv(tagLastSeq, uint64(base.SeqNumMax)+1), "last sequence number 72057594037927936 exceeds"},
		{"deleted level out of range", uv(tagDeletedFile, 7, 1), "deleted file level 7 at byte 1 out of range 0..6"},
		{"deleted huge level", uv(tagDeletedFile, 1<<63, 1), "out of range 0..6"},
		{"deleted missing num", uv(tagDeletedFile, 2), "truncated varint for deleted file number"},
		{"deleted twice", uv(tagDeletedFile, 2, 9, tagDeletedFile, 2, 9), "table 9 deleted from level 2 twice"},
		{"new file level out of range", newFileBytes(7, 7, a, b, 1, 5), "new file level 7 at byte 1 out of range"},
		{"new file truncated", good[:len(good)-1], "truncated varint for new file largest sequence number"},
		{"new file missing size", uv(tagNewFile, 1, 7), "truncated varint for new file size"},
		{"key length beyond input", cat(uv(tagNewFile, 1, 7, 100, 50), a), "smallest key at byte 4 claims 50 bytes, only 9 remain"},
		{"absurd key length", cat(uv(tagNewFile, 1, 7, 100, 1<<62), a), "claims 4611686018427387904 bytes"},
		{"max key length", cat(uv(tagNewFile, 1, 7, 100, ^uint64(0)), a), "claims 18446744073709551615 bytes"},
		{"short smallest key", newFileBytes(1, 7, []byte("short"), b, 1, 5), "smallest key at byte 4 is 5 bytes, shorter than the 8-byte trailer"},
		{"empty largest key", newFileBytes(1, 7, a, nil, 1, 5), "largest key at byte 14 is 0 bytes"},
		{"smallest > largest", newFileBytes(1, 7, b, a, 1, 5), `smallest key "b"#5,SET > largest key "a"#5,SET`},
		{"smallest > largest by seq", newFileBytes(1, 7, ikey("a", 1, 1), ikey("a", 2, 1), 1, 5), "smallest key"},
		{"seqs reversed", newFileBytes(1, 7, a, b, 6, 5), "smallest sequence number 6 > largest 5"},
		{"largest seq too large", newFileBytes(1, 7, a, b, 1, uint64(base.SeqNumMax)+1), "largest sequence number 72057594037927936 exceeds"},
		{"table added twice", cat(good, newFileBytes(2, 7, a, b, 1, 5)), "table 7 added twice"},
		{"quarantined level out of range", cat(uv(tagQuarantined, 7, 3), str([]byte("a")), str([]byte("b")), str(nil)), "quarantined file level 7 at byte 1 out of range"},
		{"quarantined truncated", cat(uv(tagQuarantined, 1, 3), str([]byte("a")), str([]byte("b"))), "truncated varint for quarantined file reason length"},
		{"quarantined key beyond input", cat(uv(tagQuarantined, 1, 3, 40), []byte("a")), "quarantined file smallest key at byte 3 claims 40 bytes, only 1 remain"},
		{"quarantined reason too long", cat(uv(tagQuarantined, 1, 3), str([]byte("a")), str([]byte("b")), str(bytes.Repeat([]byte("x"), MaxReasonLen+1))), "quarantined file reason at byte 7 is 1025 bytes, more than 1024"},
		{"quarantined keys reversed", cat(uv(tagQuarantined, 1, 3), str([]byte("b")), str([]byte("a")), str(nil)), `table 3): smallest key "b" > largest key "a"`},
		{"quarantined twice", bytes.Repeat(cat(uv(tagQuarantined, 1, 3), str([]byte("a")), str([]byte("b")), str(nil)), 2), "table 3 quarantined twice"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := VersionEdit{HasLastSeq: true, LastSeq: 1}
			err := e.Decode(c.in)
			if err == nil {
				t.Fatalf("Decode(%x) succeeded: %+v", c.in, e)
			}
			if !errors.Is(err, base.ErrCorruption) {
				t.Fatalf("error %v does not wrap base.ErrCorruption", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			if !reflect.DeepEqual(e, VersionEdit{}) {
				t.Fatalf("failed Decode left %+v", e)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	a, b := ikey("a", 5, base.KindSet), ikey("b", 5, base.KindSet)
	ok := NewFile{Level: 1, Meta: FileMeta{Num: 1, Smallest: a, Largest: b, SmallestSeq: 1, LargestSeq: 5}}
	if err := (&VersionEdit{Added: []NewFile{ok}}).Validate(); err != nil {
		t.Fatal(err)
	}
	// A table moved between levels appears in Deleted and Added.
	move := &VersionEdit{Deleted: []DeletedFile{{Level: 1, Num: 1}}, Added: []NewFile{{Level: 2, Meta: ok.Meta}}}
	if err := move.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []*VersionEdit{
		{Deleted: []DeletedFile{{Level: -1}}},
		{Deleted: []DeletedFile{{Level: NumLevels}}},
		{Added: []NewFile{{Level: -1, Meta: ok.Meta}}},
		{Added: []NewFile{ok, ok}},
		{HasLastSeq: true, LastSeq: base.SeqNumMax + 1},
		{Quarantined: []QuarantinedFile{{Level: NumLevels, Num: 1}}},
		{Quarantined: []QuarantinedFile{{Level: 1, Num: 1, Smallest: []byte("b"), Largest: []byte("a")}}},
		{Quarantined: []QuarantinedFile{{Level: 1, Num: 1}, {Level: 2, Num: 1}}},
		{Quarantined: []QuarantinedFile{{Level: 1, Num: 1, Reason: strings.Repeat("x", MaxReasonLen+1)}}},
	}
	for i, e := range bad {
		err := e.Validate()
		if !errors.Is(err, base.ErrCorruption) {
			t.Fatalf("case %d: Validate = %v", i, err)
		}
		// What Validate rejects, Decode rejects too.
		var d VersionEdit
		if err := d.Decode(e.Encode(nil)); !errors.Is(err, base.ErrCorruption) {
			t.Fatalf("case %d: Decode = %v", i, err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	e := &VersionEdit{}
	for i := range 1000 {
		k1, k2 := ikey("key"+string(rune('a'+i%26)), 1, 1), ikey("key"+string(rune('a'+i%26))+"z", 1, 1)
		e.Added = append(e.Added, NewFile{Level: i % NumLevels, Meta: FileMeta{Num: uint64(i), Size: 4 << 20, Smallest: k1, Largest: k2, SmallestSeq: 1, LargestSeq: 9}})
	}
	enc := e.Encode(nil)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		var d VersionEdit
		if err := d.Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}
