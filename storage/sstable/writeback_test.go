package sstable

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/storage/base"
)

// writebackMemFile is a memFile that records the writebacks started on it,
// with the bytes written at each.
type writebackMemFile struct {
	memFile
	starts []writebackCall
}

type writebackCall struct{ off, n, writtenThen int64 }

func (f *writebackMemFile) WriteBack(off, n int64) error {
	f.starts = append(f.starts, writebackCall{off, n, int64(len(f.data))})
	return nil
}

// A table is written back as it grows, in contiguous ranges of at least
// BytesPerSync bytes each, each started once its bytes were written, so
// that Finish's fsync has little left; a table smaller than BytesPerSync,
// or with it negative, starts none.
func TestWriterStartsWritebackAsTheTableGrows(t *testing.T) {
	write := func(t *testing.T, f *writebackMemFile, n int, o WriterOptions) Meta {
		t.Helper()
		w := NewWriter(f, o)
		val := make([]byte, 200)
		for i := range n {
			ikey := base.MakeInternalKey(nil, binary.BigEndian.AppendUint64(nil, uint64(i)), base.SeqNum(i+1), base.KindSet)
			if err := w.Add(ikey, val); err != nil {
				t.Fatal(err)
			}
		}
		m, err := w.Finish()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	t.Run("default", func(t *testing.T) {
		f := &writebackMemFile{}
		m := write(t, f, 20000, WriterOptions{Compression: NoCompression}) // about 4 MiB
		if want := int(m.Size / DefaultBytesPerSync); len(f.starts) < want-1 {
			t.Fatalf("%d writebacks started for a %d-byte table, want about %d", len(f.starts), m.Size, want)
		}
		var next int64
		for i, c := range f.starts {
			if c.off != next || c.n < DefaultBytesPerSync || c.off+c.n > c.writtenThen {
				t.Fatalf("writeback %d: [%d, +%d) with %d bytes written, after one ending at %d: %v",
					i, c.off, c.n, c.writtenThen, next, fmt.Sprint(f.starts))
			}
			next = c.off + c.n
		}
		if m.Size-uint64(next) >= DefaultBytesPerSync+writeBufferSize {
			t.Fatalf("the last %d bytes of %d were never written back before the fsync", m.Size-uint64(next), m.Size)
		}
		if f.syncs != 1 {
			t.Fatalf("%d fsyncs, want Finish's one", f.syncs)
		}
	})

	t.Run("whole pages", func(t *testing.T) {
		// Values larger than the output buffer reach the file in writes
		// of any length; a writeback still ends on a page boundary, so
		// that no page being written is sent to the disk.
		f := &writebackMemFile{}
		w := NewWriter(f, WriterOptions{Compression: NoCompression})
		val := make([]byte, 300<<10+7)
		for i := range 12 {
			ikey := base.MakeInternalKey(nil, binary.BigEndian.AppendUint64(nil, uint64(i)), base.SeqNum(i+1), base.KindSet)
			if err := w.Add(ikey, val); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		if len(f.starts) < 4 {
			t.Fatalf("%d writebacks for a %d-byte table", len(f.starts), len(f.data))
		}
		for i, c := range f.starts {
			if (c.off+c.n)%writebackPage != 0 || c.off+c.n > c.writtenThen {
				t.Fatalf("writeback %d: [%d, +%d) with %d bytes written: not up to a page boundary already written", i, c.off, c.n, c.writtenThen)
			}
		}
	})

	t.Run("small table", func(t *testing.T) {
		f := &writebackMemFile{}
		write(t, f, 100, WriterOptions{})
		if len(f.starts) != 0 {
			t.Fatalf("writebacks %v for a table under BytesPerSync", f.starts)
		}
	})

	t.Run("off", func(t *testing.T) {
		f := &writebackMemFile{}
		write(t, f, 20000, WriterOptions{Compression: NoCompression, BytesPerSync: -1})
		if len(f.starts) != 0 {
			t.Fatalf("writebacks %v with BytesPerSync negative", f.starts)
		}
	})
}
