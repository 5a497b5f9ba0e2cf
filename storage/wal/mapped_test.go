package wal

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/ringkv/ringkv/storage/vfs"
)

// newMappedLog creates a log file on the operating system's filesystem and
// a mapped Writer on it, prefaulting; it skips the test where files cannot
// be mapped.
func newMappedLog(t *testing.T) (*Writer, string) { return newMappedLogPrefault(t, true) }

func newMappedLogPrefault(t *testing.T, prefault bool) (*Writer, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "000001.log")
	f, err := vfs.Default.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := NewMappedWriter(f, prefault)
	if !w.Mapped() {
		w.Close()
		t.Skip("the operating system's files are not mappable here")
	}
	t.Cleanup(func() { w.Close() })
	return w, path
}

// mappedRecords returns n records of assorted sizes, some larger than a
// map window, so that records straddle windows.
func mappedRecords(rng *rand.Rand, n int) [][]byte {
	recs := make([][]byte, n)
	for i := range recs {
		size := 1 + rng.IntN(3000)
		switch rng.IntN(50) {
		case 0:
			size = MapWindow + rng.IntN(MapWindow) // spans two or three windows
		case 1:
			size = prefaultAhead - HeaderSize // ends on a prefault boundary
		}
		r := make([]byte, size)
		for j := range r {
			r[j] = byte(i + j*7)
		}
		recs[i] = r
	}
	return recs
}

// readLog reads every record of the file at path and how the log ended.
func readLog(t *testing.T, path string) (recs [][]byte, end error, offset int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := NewReader(f)
	for {
		rec, err := r.Next()
		if err != nil {
			return recs, err, r.Offset()
		}
		recs = append(recs, bytes.Clone(rec))
	}
}

func checkRecords(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d records, wrote %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d: read %d bytes that differ from the %d written", i, len(got[i]), len(want[i]))
		}
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Records written through the mapping, across many windows, read back
// exactly, and Finish leaves a file that ends after the last record.
func TestMappedRoundTrip(t *testing.T) {
	for _, prefault := range []bool{true, false} {
		t.Run(fmt.Sprintf("prefault=%v", prefault), func(t *testing.T) { testMappedRoundTrip(t, prefault) })
	}
}

func testMappedRoundTrip(t *testing.T, prefault bool) {
	w, path := newMappedLogPrefault(t, prefault)
	rng := rand.New(rand.NewPCG(1, 2))
	want := mappedRecords(rng, 3000)
	for i := 0; i < len(want); {
		n := min(1+rng.IntN(5), len(want)-i)
		if err := w.WriteRecords(want[i : i+n]...); err != nil {
			t.Fatal(err)
		}
		i += n
	}
	if w.Size() < 3*MapWindow {
		t.Fatalf("wrote only %d bytes: the test must cross several windows", w.Size())
	}
	if !prefault && (w.pwrites == 0 || w.pwrites == len(want)) {
		t.Fatalf("%d of the writes went through pwrite(2): the test must mix them with copies into the mapping", w.pwrites)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, path); got != w.Size() {
		t.Fatalf("after Finish the file is %d bytes, the records %d", got, w.Size())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, end, _ := readLog(t, path)
	if end != io.EOF {
		t.Fatalf("log ends with %v, want io.EOF", end)
	}
	checkRecords(t, got, want)
}

// What a crash of the process leaves: the records are in the file (the
// page cache) as soon as WriteRecords returns, with no Sync, Finish or
// Close, followed by the preallocated zeros, which read as a torn tail
// exactly at the end of the last record.
func TestMappedRecordsVisibleWithoutClose(t *testing.T) {
	for _, prefault := range []bool{true, false} {
		t.Run(fmt.Sprintf("prefault=%v", prefault), func(t *testing.T) { testMappedRecordsVisibleWithoutClose(t, prefault) })
	}
}

func testMappedRecordsVisibleWithoutClose(t *testing.T, prefault bool) {
	w, path := newMappedLogPrefault(t, prefault)
	rng := rand.New(rand.NewPCG(3, 4))
	want := mappedRecords(rng, 1500)
	for i, r := range want {
		if err := w.WriteRecords(r); err != nil {
			t.Fatal(err)
		}
		if i == 0 || i == len(want)-1 || rng.IntN(200) == 0 {
			got, end, off := readLog(t, path)
			checkRecords(t, got, want[:i+1])
			if !errors.Is(end, ErrTornTail) && end != io.EOF {
				t.Fatalf("after record %d the log ends with %v, want a torn tail or io.EOF", i, end)
			}
			if off != w.Size() {
				t.Fatalf("after record %d the clean prefix is %d bytes, the writer wrote %d", i, off, w.Size())
			}
		}
	}
	got := fileSize(t, path)
	if prefault && (got <= w.Size() || got%MapWindow != 0) {
		t.Fatalf("file is %d bytes for %d bytes of records: want whole preallocated windows", got, w.Size())
	}
	// Without prefaulting, a long write goes through pwrite(2) and may end
	// the file (minPwrite).
	if !prefault && got < w.Size() {
		t.Fatalf("file is %d bytes for %d bytes of records", got, w.Size())
	}
}

// Close without Finish (a failed engine) still cuts the zeros off.
func TestMappedCloseCutsPreallocation(t *testing.T) {
	w, path := newMappedLog(t)
	if err := w.WriteRecords([]byte("one"), []byte("two")); err != nil {
		t.Fatal(err)
	}
	size := w.Size()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := fileSize(t, path); got != size {
		t.Fatalf("after Close the file is %d bytes, want %d", got, size)
	}
	got, end, _ := readLog(t, path)
	if end != io.EOF {
		t.Fatalf("log ends with %v, want io.EOF", end)
	}
	checkRecords(t, got, [][]byte{[]byte("one"), []byte("two")})
}

// After Finish the Writer takes no more records; Close still works.
func TestMappedFinishEnds(t *testing.T) {
	w, _ := newMappedLog(t)
	if err := w.WriteRecords([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteRecords([]byte("y")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Finish: %v, want ErrClosed", err)
	}
	if err := w.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("sync after Finish: %v, want ErrClosed", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close after Finish: %v", err)
	}
}

// A file that cannot be mapped (the in-memory filesystem) gets a Writer
// that writes, with the same records and the same Finish.
func TestMappedFallsBackToWrite(t *testing.T) {
	fs := vfs.NewMem()
	f, err := fs.Create("000001.log")
	if err != nil {
		t.Fatal(err)
	}
	w := NewMappedWriter(f, true)
	if w.Mapped() {
		t.Fatal("a memory file was mapped")
	}
	want := [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 5000)}
	if err := w.WriteRecords(want...); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rf, err := fs.Open("000001.log")
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	r := NewReader(rf)
	for i := range want {
		rec, err := r.Next()
		if err != nil || !bytes.Equal(rec, want[i]) {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the records: %v, want io.EOF", err)
	}
}

// Writers and syncers on several goroutines (run it with -race): every
// record lands whole, each goroutine's in its order.
func TestMappedConcurrent(t *testing.T) {
	w, path := newMappedLog(t)
	const goroutines, perG = 4, 400
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				rec := fmt.Appendf(nil, "g%d-%05d-", g, i)
				rec = append(rec, bytes.Repeat([]byte{'x'}, (g*131+i*17)%2500)...)
				if err := w.WriteRecords(rec); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					if err := w.Sync(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	got, end, _ := readLog(t, path)
	if end != io.EOF {
		t.Fatalf("log ends with %v", end)
	}
	next := make([]int, goroutines)
	for _, rec := range got {
		var g, i int
		if _, err := fmt.Sscanf(string(rec), "g%d-%05d-", &g, &i); err != nil || g < 0 || g >= goroutines {
			t.Fatalf("bad record %.20q", rec)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: record %d after %d", g, i, next[g]-1)
		}
		next[g]++
	}
	for g, n := range next {
		if n != perG {
			t.Fatalf("goroutine %d: %d records, want %d", g, n, perG)
		}
	}
}

// A page of the mapping the filesystem cannot back faults (SIGBUS) when it
// is written: on a full copy-on-write filesystem, where fallocate reserves
// nothing, or, as here, past the end of a file cut short under the Writer.
// The Writer must return an error and fail, not take the process down.
func TestMappedWriteFaultIsAnError(t *testing.T) {
	for _, prefault := range []bool{true, false} {
		t.Run(fmt.Sprintf("prefault=%v", prefault), func(t *testing.T) {
			w, path := newMappedLogPrefault(t, prefault)
			if err := w.WriteRecords([]byte("before the cut")); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			// Prefaulting, the write fails in the prefault; without, a
			// write below minPwrite fails in the guarded copy (a longer
			// one goes through pwrite(2), which extends the file).
			size := 200 << 10
			if !prefault {
				size = minPwrite / 2
			}
			err := w.WriteRecords(bytes.Repeat([]byte("x"), size))
			if err == nil {
				t.Fatal("a write into pages past the end of the file succeeded")
			}
			t.Logf("write error: %v", err)
			if err := w.WriteRecords([]byte("after")); err == nil {
				t.Fatal("the Writer took another record after a failed write")
			}
			_ = w.Close()
		})
	}
}

// limitedFile is an operating-system file whose pwrite(2) takes bytes only
// up to limit, then fails as a full disk does.
type limitedFile struct {
	vfs.File
	vfs.Mappable
	limit int64
}

func (f limitedFile) WriteAt(p []byte, off int64) (int, error) {
	n := 0
	if off < f.limit {
		var err error
		if n, err = f.Mappable.WriteAt(p[:min(int64(len(p)), f.limit-off)], off); err != nil {
			return n, err
		}
	}
	if n < len(p) {
		return n, syscall.ENOSPC
	}
	return n, nil
}

// A pwrite(2) the file takes only part of fails the Writer, which counts
// the part taken (as for write(2)); the log then reads as its whole records
// and a torn tail, before and after Close.
func TestMappedPartialPwrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "000001.log")
	f, err := vfs.Default.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := f.(vfs.Mappable)
	if !ok {
		f.Close()
		t.Skip("the operating system's files are not mappable here")
	}
	const limit = 3 * minPwrite
	w := NewMappedWriter(limitedFile{File: f, Mappable: m, limit: limit}, false)
	if !w.Mapped() {
		t.Fatal("the Writer does not write through the mapping")
	}
	first := []byte("a record copied into the mapping")
	if err := w.WriteRecords(first); err != nil {
		t.Fatal(err)
	}
	before := w.Size()
	if err := w.WriteRecords(bytes.Repeat([]byte("y"), 2*limit)); err == nil {
		t.Fatal("a write past a full disk succeeded")
	}
	if w.pwrites != 1 {
		t.Fatalf("%d writes went through pwrite(2), want the long one", w.pwrites)
	}
	if got := w.Size(); got != limit {
		t.Fatalf("after the failed write the Writer counts %d bytes (%d before it), want %d: the part the file took", got, before, limit)
	}
	if err := w.WriteRecords(first); err == nil {
		t.Fatal("the Writer took another record after a failed write")
	}
	got, end, off := readLog(t, path)
	checkRecords(t, got, [][]byte{first})
	if !errors.Is(end, ErrTornTail) || off != before {
		t.Fatalf("the log ends with %v at %d, want a torn tail at %d", end, off, before)
	}
	_ = w.Close()
	if size := fileSize(t, path); size != limit {
		t.Fatalf("after Close the file is %d bytes, want %d (the preallocation cut off after what the file took)", size, limit)
	}
	if got, end, off = readLog(t, path); len(got) != 1 || !errors.Is(end, ErrTornTail) || off != before {
		t.Fatalf("after Close the log reads %d records and ends with %v at %d, want one and a torn tail at %d", len(got), end, off, before)
	}
}
