package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand"
	"testing"

	"github.com/ringkv/ringkv/storage/base"
)

// refValid reports whether a whole valid record starts at pos of b, and
// whether its header alone is valid; total is the record's size.
func refValid(b []byte, pos int) (total int, headerOK, ok bool) {
	if len(b)-pos < HeaderSize {
		return 0, false, false
	}
	tab := crc32.MakeTable(crc32.Castagnoli)
	h := b[pos : pos+HeaderSize]
	n := binary.LittleEndian.Uint32(h[4:8])
	salted := binary.LittleEndian.AppendUint64(nil, uint64(pos))
	salted = append(salted, h[4:12]...)
	if n == 0 || n > MaxRecordSize || crc32.Checksum(salted, tab) != binary.LittleEndian.Uint32(h[0:4]) {
		return 0, false, false
	}
	total = HeaderSize + int(n)
	if len(b)-pos < total {
		return total, true, false
	}
	return total, true, crc32.Checksum(b[pos+HeaderSize:pos+total], tab) == binary.LittleEndian.Uint32(h[8:12])
}

type outcome int

const (
	outEOF outcome = iota
	outTorn
	outCorrupt
)

// refRead is a simple whole-buffer model of Reader.
func refRead(b []byte) (recs [][]byte, out outcome, off int) {
	pos := 0
	for pos < len(b) {
		total, headerOK, ok := refValid(b, pos)
		if ok {
			recs = append(recs, b[pos+HeaderSize:pos+total])
			pos += total
			continue
		}
		skip := 1
		if headerOK {
			skip = total
		}
		for q := pos + skip; q < len(b); q++ {
			if _, _, ok := refValid(b, q); ok {
				return recs, outCorrupt, pos
			}
		}
		return recs, outTorn, pos
	}
	return recs, outEOF, pos
}

// chunkReader returns the input in chunks whose sizes come from sizes.
type chunkReader struct {
	b     []byte
	sizes []byte
	i     int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if len(c.sizes) > 0 {
		n = min(n, 1+int(c.sizes[c.i%len(c.sizes)])*97)
		c.i++
	}
	n = copy(p, c.b[:min(n, len(c.b))])
	c.b = c.b[n:]
	return n, nil
}

func checkAgainstModel(t *testing.T, data, chunks []byte) {
	t.Helper()
	got, err, off := readAll(&chunkReader{b: data, sizes: chunks})
	want, out, wantOff := refRead(data)
	if !equalRecs(got, want) {
		t.Fatalf("got %d records, model %d", len(got), len(want))
	}
	if off != int64(wantOff) {
		t.Fatalf("Offset %d, model %d", off, wantOff)
	}
	switch out {
	case outEOF:
		if err != io.EOF {
			t.Fatalf("err %v, model io.EOF", err)
		}
	case outTorn:
		if !errors.Is(err, ErrTornTail) || errors.Is(err, base.ErrCorruption) {
			t.Fatalf("err %v, model torn tail", err)
		}
	case outCorrupt:
		if !errors.Is(err, base.ErrCorruption) || errors.Is(err, ErrTornTail) {
			t.Fatalf("err %v, model corruption", err)
		}
	}
	// The clean prefix is exactly the encoding of the records returned.
	if len(got) > 0 {
		if re := encode(t, got); !bytes.Equal(re, data[:off]) {
			t.Fatal("re-encoding the records does not reproduce the clean prefix")
		}
	}
}

// FuzzReader feeds arbitrary bytes to the Reader and checks it against a
// whole-buffer model; it also reads a valid encoding of records followed by
// arbitrary garbage and checks the records come back first.
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data, garbage []byte) {
		// Arbitrary input, read in chunks chosen by garbage.
		checkAgainstModel(t, data, garbage)

		// Records cut from data, then garbage.
		var recs [][]byte
		for _, r := range bytes.Split(data, []byte{0xff}) {
			if len(r) > 0 {
				recs = append(recs, r)
			}
		}
		enc := encode(t, recs)
		in := append(bytes.Clone(enc), garbage...)
		r := NewReader(bytes.NewReader(in))
		for i, want := range recs {
			got, err := r.Next()
			if err != nil {
				t.Fatalf("record %d of %d: %v", i, len(recs), err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("record %d differs", i)
			}
		}
		_, err := r.Next()
		if len(garbage) == 0 && err != io.EOF {
			t.Fatalf("after the records, err = %v, want io.EOF", err)
		}
		if err != nil && r.Offset() != int64(len(enc)) {
			t.Fatalf("Offset %d after %v, want %d", r.Offset(), err, len(enc))
		}
		if allZero(garbage) && len(garbage) > 0 && !errors.Is(err, ErrTornTail) {
			t.Fatalf("zero tail gave %v", err)
		}
		checkAgainstModel(t, in, data)
	})
}

// FuzzTruncate encodes random records, cuts the log at a random offset and
// checks the records wholly before the cut come back, then io.EOF or
// ErrTornTail.
func FuzzTruncate(f *testing.F) {
	f.Add(int64(1), uint8(3), uint16(1000), uint32(17))
	f.Add(int64(2), uint8(10), uint16(70), uint32(0))
	f.Add(int64(3), uint8(1), uint16(40000), uint32(39000))
	f.Fuzz(func(t *testing.T, seed int64, n uint8, maxLen uint16, cut uint32) {
		rng := rand.New(rand.NewSource(seed))
		recs := randRecords(rng, int(n%32), 1+int(maxLen))
		data := encode(t, recs)
		c := int(cut % uint32(len(data)+1))
		got, err, off := readAll(bytes.NewReader(data[:c]))
		k, end := 0, 0
		for _, b := range boundaries(recs) {
			if b > c {
				break
			}
			k, end = k+1, b
		}
		if !equalRecs(got, recs[:k]) || off != int64(end) {
			t.Fatalf("cut %d of %d: %d records (want %d), offset %d (want %d)", c, len(data), len(got), k, off, end)
		}
		if c == end && err != io.EOF || c != end && !errors.Is(err, ErrTornTail) {
			t.Fatalf("cut %d (clean prefix %d): err %v", c, end, err)
		}
	})
}
