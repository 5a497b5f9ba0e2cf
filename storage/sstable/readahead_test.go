package sstable

import (
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/cache"
)

// countingFile counts ReadAt calls.
type countingFile struct {
	*memFile
	reads int
}

func (f *countingFile) ReadAt(p []byte, off int64) (int, error) {
	f.reads++
	return f.memFile.ReadAt(p, off)
}

// A compaction iterator over a table of many blocks reads the file in
// readAhead pieces, returns exactly what NewIter returns, and leaves the
// block cache as it found it.
func TestCompactionIterReadsAhead(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	es := randEntries(rng, 20000, 2, 200)
	for _, comp := range []uint8{SnappyCompression, NoCompression} {
		t.Run(fmt.Sprintf("comp=%d", comp), func(t *testing.T) {
			mf, _ := buildTable(t, es, WriterOptions{BlockSize: 4096, Compression: comp})
			if len(mf.data) < 4*readAhead {
				t.Fatalf("table of %d bytes: want several read-ahead pieces", len(mf.data))
			}
			f := &countingFile{memFile: mf}
			c := cache.New(1 << 20)
			r, err := Open(f, int64(len(mf.data)), ReaderOptions{Cache: c, FileNum: 3})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			before, cached := f.reads, c.Metrics().Count

			checkIter(t, r.NewCompactionIter(), es)

			reads := f.reads - before
			if limit := len(mf.data)/readAhead + 2; reads > limit {
				t.Errorf("%d reads for %d bytes of %d blocks, want at most %d", reads, len(mf.data), r.Index().Len(), limit)
			}
			if n := c.Metrics().Count; n != cached {
				t.Errorf("the compaction scan changed the cache from %d to %d blocks", cached, n)
			}
			// NewIter still reads a block at a time and fills the cache.
			checkIter(t, r.NewIter(), es)
			if c.Metrics().Count == cached {
				t.Errorf("NewIter added nothing to the cache")
			}
		})
	}
}

// A damaged block in the middle of a read-ahead piece fails the compaction
// scan with ErrCorruption; the blocks before it are returned.
func TestCompactionIterCorruptBlock(t *testing.T) {
	rng := rand.New(rand.NewSource(8))
	es := randEntries(rng, 5000, 1, 200)
	mf, _ := buildTable(t, es, WriterOptions{BlockSize: 4096})
	r := openTable(t, mf, ReaderOptions{})
	defer r.Close()
	bad := r.Index().Len() / 2
	h := r.Index().Handle(bad)
	mf.data[h.Offset+h.Length/2] ^= 0x40

	it := r.NewCompactionIter()
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Error(); !errors.Is(err, base.ErrCorruption) {
		t.Fatalf("scan over a damaged block ended with %v, want ErrCorruption", err)
	}
	if n == 0 || n >= len(es) {
		t.Fatalf("scan returned %d of %d entries before the damaged block %d", n, len(es), bad)
	}
	it.Close()
}
