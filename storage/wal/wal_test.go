package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ringkv/ringkv/storage/base"
)

// fakeFile is an in-memory vfs.File that can inject write and sync errors.
type fakeFile struct {
	data       bytes.Buffer
	writes     int
	syncs      int
	closed     bool
	writeErr   error
	shortWrite int // if > 0, the next Write accepts only this many bytes
	syncErr    error
}

func (f *fakeFile) Read(p []byte) (int, error) { return 0, io.EOF }
func (f *fakeFile) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(f.data.Bytes()).ReadAt(p, off)
}

func (f *fakeFile) Write(p []byte) (int, error) {
	f.writes++
	if f.writeErr != nil {
		n := len(p) / 2
		f.data.Write(p[:n])
		return n, f.writeErr
	}
	if f.shortWrite > 0 {
		n := min(f.shortWrite, len(p))
		f.shortWrite = 0
		f.data.Write(p[:n])
		return n, nil
	}
	return f.data.Write(p)
}

func (f *fakeFile) Sync() error {
	f.syncs++
	return f.syncErr
}

func (f *fakeFile) Close() error {
	f.closed = true
	return nil
}

func (f *fakeFile) Size() (int64, error) { return int64(f.data.Len()), nil }

// encode writes recs, one WriteRecords call per group, and returns the log.
func encode(t testing.TB, groups ...[][]byte) []byte {
	t.Helper()
	f := &fakeFile{}
	w := NewWriter(f)
	for _, g := range groups {
		if err := w.WriteRecords(g...); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if w.Size() != int64(f.data.Len()) {
		t.Fatalf("Size() = %d, file has %d bytes", w.Size(), f.data.Len())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return f.data.Bytes()
}

// readAll reads every record (copied) and returns the final error and
// Offset.
func readAll(src io.Reader) (recs [][]byte, err error, off int64) {
	r := NewReader(src)
	for {
		rec, err := r.Next()
		if err != nil {
			return recs, err, r.Offset()
		}
		recs = append(recs, bytes.Clone(rec))
	}
}

func randRecords(rng *rand.Rand, n, maxLen int) [][]byte {
	recs := make([][]byte, n)
	for i := range recs {
		recs[i] = make([]byte, 1+rng.Intn(maxLen))
		rng.Read(recs[i])
	}
	return recs
}

func equalRecs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// boundaries returns the end offset of each record.
func boundaries(recs [][]byte) []int {
	var out []int
	n := 0
	for _, r := range recs {
		n += HeaderSize + len(r)
		out = append(out, n)
	}
	return out
}

func TestFormatGolden(t *testing.T) {
	got := encode(t, [][]byte{[]byte("abc"), []byte("de")})
	want := func(pos int64, p string) []byte {
		h := make([]byte, HeaderSize)
		binary.LittleEndian.PutUint32(h[4:], uint32(len(p)))
		binary.LittleEndian.PutUint32(h[8:], crc32.Checksum([]byte(p), crc32.MakeTable(crc32.Castagnoli)))
		salted := binary.LittleEndian.AppendUint64(nil, uint64(pos))
		salted = append(salted, h[4:]...)
		binary.LittleEndian.PutUint32(h[0:], crc32.Checksum(salted, crc32.MakeTable(crc32.Castagnoli)))
		return append(h, p...)
	}
	exp := append(want(0, "abc"), want(15, "de")...)
	if !bytes.Equal(got, exp) {
		t.Fatalf("encoding\n got %x\nwant %x", got, exp)
	}
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	groups := [][][]byte{
		{[]byte("x")},
		randRecords(rng, 10, 100),
		{bytes.Repeat([]byte("big"), 100_000)}, // larger than the read buffer
		randRecords(rng, 100, 5000),
		{},
	}
	var all [][]byte
	for _, g := range groups {
		all = append(all, g...)
	}
	data := encode(t, groups...)
	readers := map[string]func() io.Reader{
		"bytes":    func() io.Reader { return bytes.NewReader(data) },
		"onebyte":  func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
		"dataerr":  func() io.Reader { return iotest.DataErrReader(bytes.NewReader(data)) },
		"timeout":  func() io.Reader { return iotest.TimeoutReader(bytes.NewReader(data)) },
		"emptyrds": func() io.Reader { return &stutterReader{r: bytes.NewReader(data)} },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			recs, err, off := readAll(mk())
			if name == "timeout" {
				// The second read fails; the error must surface as a read
				// error, neither torn tail nor corruption.
				if !errors.Is(err, iotest.ErrTimeout) || errors.Is(err, ErrTornTail) || errors.Is(err, base.ErrCorruption) {
					t.Fatalf("err = %v, want wrapped ErrTimeout", err)
				}
				return
			}
			if err != io.EOF {
				t.Fatalf("err = %v, want io.EOF", err)
			}
			if !equalRecs(recs, all) {
				t.Fatalf("got %d records, want %d (or contents differ)", len(recs), len(all))
			}
			if off != int64(len(data)) {
				t.Fatalf("Offset = %d, want %d", off, len(data))
			}
		})
	}
}

// stutterReader returns (0, nil) on every other call.
type stutterReader struct {
	r io.Reader
	n int
}

func (s *stutterReader) Read(p []byte) (int, error) {
	s.n++
	if s.n%2 == 0 {
		return 0, nil
	}
	return s.r.Read(p)
}

func TestEmptyLog(t *testing.T) {
	recs, err, off := readAll(bytes.NewReader(nil))
	if len(recs) != 0 || err != io.EOF || off != 0 {
		t.Fatalf("got %d records, err %v, offset %d", len(recs), err, off)
	}
}

func TestNoProgressReader(t *testing.T) {
	r := NewReader(readerFunc(func([]byte) (int, error) { return 0, nil }))
	if _, err := r.Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestErrorsAreSticky(t *testing.T) {
	data := encode(t, [][]byte{[]byte("hello"), []byte("world")})
	r := NewReader(bytes.NewReader(data[:len(data)-1]))
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	_, err1 := r.Next()
	_, err2 := r.Next()
	if !errors.Is(err1, ErrTornTail) || err1 != err2 {
		t.Fatalf("errors %v then %v", err1, err2)
	}
	r = NewReader(bytes.NewReader(data))
	for range 2 {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("err = %v, want io.EOF", err)
		}
	}
}

// TestTruncateEveryOffset cuts the log at every offset and checks that
// exactly the records before the cut come back, then io.EOF (cut on a
// record boundary) or ErrTornTail.
func TestTruncateEveryOffset(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	recs := randRecords(rng, 5, 300)
	recs = append(recs, bytes.Repeat([]byte{7}, 70_000)) // spans reads
	data := encode(t, recs)
	bounds := boundaries(recs)
	for cut := 0; cut <= len(data); cut++ {
		if cut > bounds[len(bounds)-2]+HeaderSize+200 && cut < len(data)-200 && cut%997 != 0 {
			continue // the middle of the big record: sample it
		}
		got, err, off := readAll(bytes.NewReader(data[:cut]))
		n := 0
		for n < len(bounds) && bounds[n] <= cut {
			n++
		}
		wantOff := 0
		if n > 0 {
			wantOff = bounds[n-1]
		}
		if !equalRecs(got, recs[:n]) {
			t.Fatalf("cut %d: got %d records, want %d", cut, len(got), n)
		}
		if off != int64(wantOff) {
			t.Fatalf("cut %d: Offset = %d, want %d", cut, off, wantOff)
		}
		if cut == wantOff {
			if err != io.EOF {
				t.Fatalf("cut %d at a boundary: err = %v, want io.EOF", cut, err)
			}
		} else if !errors.Is(err, ErrTornTail) || errors.Is(err, base.ErrCorruption) {
			t.Fatalf("cut %d: err = %v, want ErrTornTail", cut, err)
		}
	}
}

func TestZeroTail(t *testing.T) {
	recs := [][]byte{[]byte("one"), []byte("two")}
	data := encode(t, recs)
	for _, n := range []int{1, 11, 12, 13, 4096, 1 << 20} {
		in := append(bytes.Clone(data), make([]byte, n)...)
		got, err, off := readAll(bytes.NewReader(in))
		if !equalRecs(got, recs) || !errors.Is(err, ErrTornTail) || off != int64(len(data)) {
			t.Fatalf("%d zero bytes: %d records, err %v, offset %d", n, len(got), err, off)
		}
	}
	// A log of nothing but zeros.
	got, err, off := readAll(bytes.NewReader(make([]byte, 100)))
	if len(got) != 0 || !errors.Is(err, ErrTornTail) || off != 0 {
		t.Fatalf("all zeros: %d records, err %v, offset %d", len(got), err, off)
	}
}

// TestBitFlipMiddle flips every bit of a middle record, header included: the
// valid records after it make that corruption, not a torn tail.
func TestBitFlipMiddle(t *testing.T) {
	recs := [][]byte{[]byte("first record"), []byte("middle"), []byte("last one")}
	data := encode(t, recs)
	bounds := boundaries(recs)
	for i := bounds[0]; i < bounds[1]; i++ {
		for bit := range 8 {
			in := bytes.Clone(data)
			in[i] ^= 1 << bit
			got, err, off := readAll(bytes.NewReader(in))
			if !errors.Is(err, base.ErrCorruption) || errors.Is(err, ErrTornTail) {
				t.Fatalf("byte %d bit %d: err = %v, want corruption", i, bit, err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("offset %d", bounds[0])) {
				t.Fatalf("byte %d bit %d: error %q does not name offset %d", i, bit, err, bounds[0])
			}
			if !equalRecs(got, recs[:1]) || off != int64(bounds[0]) {
				t.Fatalf("byte %d bit %d: %d records, offset %d", i, bit, len(got), off)
			}
		}
	}
}

// TestBitFlipLast flips every bit of the last record: a torn tail.
func TestBitFlipLast(t *testing.T) {
	recs := [][]byte{[]byte("first record"), []byte("middle"), []byte("last one")}
	data := encode(t, recs)
	bounds := boundaries(recs)
	for i := bounds[1]; i < len(data); i++ {
		for bit := range 8 {
			in := bytes.Clone(data)
			in[i] ^= 1 << bit
			got, err, off := readAll(bytes.NewReader(in))
			if !errors.Is(err, ErrTornTail) || errors.Is(err, base.ErrCorruption) {
				t.Fatalf("byte %d bit %d: err = %v, want torn tail", i, bit, err)
			}
			if !equalRecs(got, recs[:2]) || off != int64(bounds[1]) {
				t.Fatalf("byte %d bit %d: %d records, offset %d", i, bit, len(got), off)
			}
		}
	}
}

// TestCorruptionFarAhead puts the valid record that proves mid-log
// corruption well beyond the read buffer, behind a stretch of garbage.
func TestCorruptionFarAhead(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	recs := [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 300_000), []byte("c")}
	data := encode(t, recs)
	bounds := boundaries(recs)
	// Garbage over the second record's header and most of its payload.
	rng.Read(data[bounds[0] : bounds[1]-5])
	got, err, _ := readAll(bytes.NewReader(data))
	if !errors.Is(err, base.ErrCorruption) || !equalRecs(got, recs[:1]) {
		t.Fatalf("%d records, err %v", len(got), err)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("valid record at offset %d", bounds[1])) {
		t.Fatalf("error %q does not name the valid record's offset %d", err, bounds[1])
	}
}

func TestGarbageTail(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	for i := range 200 {
		recs := randRecords(rng, 1+rng.Intn(5), 200)
		data := encode(t, recs)
		garbage := make([]byte, 1+rng.Intn(1000))
		rng.Read(garbage)
		got, err, off := readAll(bytes.NewReader(append(data, garbage...)))
		if !equalRecs(got, recs) || !errors.Is(err, ErrTornTail) || off != int64(len(data)) {
			t.Fatalf("iteration %d: %d records (want %d), err %v, offset %d", i, len(got), len(recs), err, off)
		}
	}
}

// TestEmbeddedLogInPayload: a payload that is itself a well-formed log must
// not make a torn tail look like corruption, because a record is only valid
// at the offset it was written at.
func TestEmbeddedLogInPayload(t *testing.T) {
	inner := encode(t, [][]byte{[]byte("inner one"), []byte("inner two")})
	payload := append(append([]byte("prefix"), inner...), bytes.Repeat([]byte{'z'}, 100)...)
	recs := [][]byte{[]byte("outer"), payload}
	data := encode(t, recs)
	bounds := boundaries(recs)
	// Tear the last record after the embedded log, and separately damage its
	// header.
	torn := data[:len(data)-50]
	hdr := bytes.Clone(data)
	hdr[bounds[0]+5] ^= 0x40
	for name, in := range map[string][]byte{"torn": torn, "header": hdr} {
		got, err, off := readAll(bytes.NewReader(in))
		if !errors.Is(err, ErrTornTail) || !equalRecs(got, recs[:1]) || off != int64(bounds[0]) {
			t.Fatalf("%s: %d records, err %v, offset %d", name, len(got), err, off)
		}
	}
}

// TestRecordValidOnlyAtItsOffset moves a valid record to another offset.
func TestRecordValidOnlyAtItsOffset(t *testing.T) {
	data := encode(t, [][]byte{[]byte("abc")})
	moved := append([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, data...)
	_, err, _ := readAll(bytes.NewReader(moved))
	if !errors.Is(err, ErrTornTail) {
		t.Fatalf("err = %v, want ErrTornTail", err)
	}
}

func TestWriteRecordsOneWrite(t *testing.T) {
	f := &fakeFile{}
	w := NewWriter(f)
	if err := w.WriteRecords(); err != nil || f.writes != 0 {
		t.Fatalf("empty WriteRecords: err %v, %d writes", err, f.writes)
	}
	if err := w.WriteRecords([]byte("a"), []byte("bb"), []byte("ccc")); err != nil {
		t.Fatal(err)
	}
	if f.writes != 1 || w.Size() != 3*HeaderSize+6 {
		t.Fatalf("%d writes, Size %d", f.writes, w.Size())
	}
	if err := w.WriteRecords([]byte("dddd")); err != nil {
		t.Fatal(err)
	}
	if f.writes != 2 || w.Size() != int64(f.data.Len()) {
		t.Fatalf("%d writes, Size %d, file %d", f.writes, w.Size(), f.data.Len())
	}
}

func TestWriterRejectsBadRecords(t *testing.T) {
	f := &fakeFile{}
	w := NewWriter(f)
	for _, recs := range [][][]byte{
		{[]byte("ok"), {}},
		{nil},
		{[]byte("ok"), make([]byte, MaxRecordSize+1)},
	} {
		if err := w.WriteRecords(recs...); err == nil {
			t.Fatal("bad record accepted")
		}
	}
	if f.writes != 0 {
		t.Fatalf("%d writes after rejected records", f.writes)
	}
	// Rejection does not fail the writer.
	if err := w.WriteRecords([]byte("fine")); err != nil {
		t.Fatal(err)
	}
}

func TestWriterFailsOnWriteError(t *testing.T) {
	injected := errors.New("injected write error")
	f := &fakeFile{}
	w := NewWriter(f)
	if err := w.WriteRecords([]byte("before")); err != nil {
		t.Fatal(err)
	}
	f.writeErr = injected
	err := w.WriteRecords([]byte("doomed"), []byte("batch"))
	if !errors.Is(err, injected) {
		t.Fatalf("err = %v, want injected", err)
	}
	f.writeErr = nil
	writes := f.writes
	checkFailed(t, w, f, err)
	if f.writes != writes {
		t.Fatal("failed writer wrote again")
	}
}

func TestWriterFailsOnShortWrite(t *testing.T) {
	f := &fakeFile{shortWrite: 5}
	w := NewWriter(f)
	err := w.WriteRecords([]byte("abcdef"))
	if !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("err = %v, want io.ErrShortWrite", err)
	}
	if w.Size() != 5 {
		t.Fatalf("Size = %d, want 5", w.Size())
	}
	checkFailed(t, w, f, err)
}

func TestWriterFailsOnSyncError(t *testing.T) {
	injected := errors.New("injected fsync error")
	f := &fakeFile{}
	w := NewWriter(f)
	if err := w.WriteRecords([]byte("x")); err != nil {
		t.Fatal(err)
	}
	f.syncErr = injected
	err := w.Sync()
	if !errors.Is(err, injected) {
		t.Fatalf("err = %v, want injected", err)
	}
	f.syncErr = nil // a retry would now "succeed": it must not be attempted
	syncs, writes := f.syncs, f.writes
	checkFailed(t, w, f, err)
	if f.syncs != syncs || f.writes != writes {
		t.Fatal("failed writer touched the file again")
	}
}

// checkFailed checks that every call on w returns failure, and that Close
// still closes the file.
func checkFailed(t *testing.T, w *Writer, f *fakeFile, failure error) {
	t.Helper()
	for i := range 2 {
		if err := w.WriteRecords([]byte("more")); err != failure {
			t.Fatalf("WriteRecords #%d after failure: %v", i, err)
		}
		if err := w.Sync(); err != failure {
			t.Fatalf("Sync #%d after failure: %v", i, err)
		}
	}
	if w.Err() != failure {
		t.Fatalf("Err() = %v", w.Err())
	}
	if err := w.Close(); err != failure {
		t.Fatalf("Close after failure: %v", err)
	}
	if !f.closed {
		t.Fatal("Close did not close the file")
	}
	if err := w.Close(); err != failure {
		t.Fatalf("second Close after failure: %v", err)
	}
}

func TestWriterClosed(t *testing.T) {
	f := &fakeFile{}
	w := NewWriter(f)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRecords([]byte("x")); err != ErrClosed {
		t.Fatalf("WriteRecords after Close: %v", err)
	}
	if err := w.Sync(); err != ErrClosed {
		t.Fatalf("Sync after Close: %v", err)
	}
	if err := w.Close(); err != ErrClosed {
		t.Fatalf("second Close: %v", err)
	}
}

func TestWriterConcurrent(t *testing.T) {
	f := &fakeFile{}
	w := NewWriter(f)
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 100 {
				if err := w.WriteRecords([]byte(fmt.Sprintf("g%d-%d", g, i))); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					if err := w.Sync(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	recs, err, _ := readAll(bytes.NewReader(f.data.Bytes()))
	if err != io.EOF || len(recs) != 400 {
		t.Fatalf("%d records, err %v", len(recs), err)
	}
}

func BenchmarkWriteRecords(b *testing.B) {
	for _, bc := range []struct{ recs, size int }{{1, 100}, {16, 1024}, {64, 64 << 10}} {
		b.Run(fmt.Sprintf("recs=%d/size=%d", bc.recs, bc.size), func(b *testing.B) {
			recs := randRecords(rand.New(rand.NewSource(1)), bc.recs, 1)
			for i := range recs {
				recs[i] = bytes.Repeat([]byte{byte(i)}, bc.size)
			}
			w := NewWriter(&discardFile{})
			b.SetBytes(int64(bc.recs * bc.size))
			b.ReportAllocs()
			for b.Loop() {
				if err := w.WriteRecords(recs...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReader(b *testing.B) {
	recs := randRecords(rand.New(rand.NewSource(1)), 1000, 4096)
	data := encode(b, recs)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r := NewReader(bytes.NewReader(data))
		for {
			if _, err := r.Next(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
}

type discardFile struct{ fakeFile }

func (discardFile) Write(p []byte) (int, error) { return len(p), nil }
