package antientropy

import (
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/version"
)

// BenchmarkCoordinate measures a replica's blind write with and without
// the trees following it (the cost anti-entropy adds to every write).
func BenchmarkCoordinate(b *testing.B) {
	for _, trees := range []bool{false, true} {
		b.Run(fmt.Sprintf("trees=%v", trees), func(b *testing.B) {
			db, err := storage.Open(b.TempDir(), &storage.Options{Sync: storage.SyncNone, MemTableIndex: true})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			st := replica.New(db, version.Actor("n1", 1))
			if trees {
				t, _ := NewTrees(1024)
				st.SetObserver(t)
			}
			value := make([]byte, 100)
			keys := make([][]byte, 1<<16)
			for i := range keys {
				keys[i] = []byte(fmt.Sprintf("key:%08d", i*7919))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := st.Coordinate(keys[i&(len(keys)-1)], nil, value, false, int64(i)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
