package replica

import (
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/storage/vfs"
)

// BenchmarkBlindWriteBatch: batches of 16 blind writes (Redis SETs
// pipelined) over keys that are already stored, each read, stamped and
// committed by CoordinateBatch, as on the coordinating replica.
func BenchmarkBlindWriteBatch(b *testing.B) {
	db, err := storage.Open("db", &storage.Options{FS: vfs.NewMem(), Sync: storage.SyncNone, MemTableIndex: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s := New(db, "a")
	const keys = 10000
	value := make([]byte, 100)
	key := func(i int) []byte { return fmt.Appendf(nil, "key:%012d", i) }
	for i := range keys {
		if _, err := s.Coordinate(key(i), nil, value, false, 1); err != nil {
			b.Fatal(err)
		}
	}
	writes := make([]Write, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for j := range writes {
			writes[j] = Write{Key: key((n*16 + j*613) % keys), Value: value}
		}
		if _, _, err := s.CoordinateBatch(writes, int64(n), nil); err != nil {
			b.Fatal(err)
		}
	}
}
