package storage

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/storage/vfs"
)

// GetShared answers as Get does, from the memtable and from tables (cached
// blocks and blocks read past the cache). A value from a cached block is
// not copied (two reads share it); one from a memtable is, so that it does
// not keep the whole arena alive. An append to a value copies it, so no
// later read sees the appended bytes.
func TestGetSharedAnswersAsGetAndCannotBeAppendedInto(t *testing.T) {
	for _, cache := range []int64{8 << 20, 1} { // 1 byte: no block fits, every read goes to the file
		t.Run(fmt.Sprint("block-cache=", cache), func(t *testing.T) {
			db, err := Open("db", &Options{FS: vfs.NewMem(), Sync: SyncNone, MemTableSize: 256 << 10, BlockSize: 1 << 10, BlockCacheSize: cache})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			key := func(i int) []byte { return fmt.Appendf(nil, "k%05d", i) }
			value := func(i int) []byte { return bytes.Repeat(fmt.Appendf(nil, "v%d.", i), 5) }
			for i := range 200 {
				if err := db.Set(key(i), value(i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Delete(key(7)); err != nil {
				t.Fatal(err)
			}
			// sharing: whether two reads of a key return the same bytes
			// in memory (-1: do not check).
			check := func(where string, sharing int) {
				t.Helper()
				for i := range 200 {
					got, err := db.GetShared(key(i))
					want, werr := db.Get(key(i))
					if i == 7 {
						if !errors.Is(err, ErrNotFound) || !errors.Is(werr, ErrNotFound) {
							t.Fatalf("%s: deleted key: GetShared %v, Get %v", where, err, werr)
						}
						continue
					}
					if err != nil || werr != nil || !bytes.Equal(got, want) || !bytes.Equal(got, value(i)) {
						t.Fatalf("%s: key %d: GetShared (%q, %v), Get (%q, %v), want %q", where, i, got, err, want, werr, value(i))
					}
					if cap(got) != len(got) {
						t.Fatalf("%s: key %d: capacity %d beyond the value's %d bytes", where, i, cap(got), len(got))
					}
					again, _ := db.GetShared(key(i))
					if shared := &again[0] == &got[0]; sharing >= 0 && shared != (sharing == 1) {
						t.Fatalf("%s: key %d: two reads share their bytes: %v, want %v", where, i, shared, sharing == 1)
					}
					_ = append(got, "XXXXXXXXXXXXXXXX"...)
				}
				// The appends above left every stored value as it was.
				for i := range 200 {
					if got, err := db.Get(key(i)); i != 7 && (err != nil || !bytes.Equal(got, value(i))) {
						t.Fatalf("%s: key %d after the appends: (%q, %v), want %q", where, i, got, err, value(i))
					}
				}
			}
			check("memtable", 0)
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
			cached := -1 // read past the cache: fresh blocks
			if cache > 1 {
				cached = 1
			}
			check("tables", cached)
			check("tables, again", cached)
			if _, err := db.GetShared(key(1000)); !errors.Is(err, ErrNotFound) {
				t.Fatalf("absent key: %v", err)
			}
		})
	}
}

// BenchmarkGetCopyOrShared: random point reads of 100-byte values over
// tables and the memtable, with and without the copy.
func BenchmarkGetCopyOrShared(b *testing.B) {
	db, err := Open("db", &Options{FS: vfs.NewMem(), Sync: SyncNone, BlockCacheSize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const n = 200000
	key := func(i int) []byte { return fmt.Appendf(nil, "key:%012d", (i*7919)%n) }
	for i := range n {
		if err := db.Set(key(i), bytes.Repeat([]byte{'v'}, 100)); err != nil {
			b.Fatal(err)
		}
		if i == n/2 {
			if err := db.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, bc := range []struct {
		name string
		get  func([]byte) ([]byte, error)
	}{{"copy", db.Get}, {"shared", db.GetShared}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				if _, err := bc.get(key(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
