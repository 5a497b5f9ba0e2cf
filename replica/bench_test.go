package replica

import (
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/version"
)

// The benchmarks' keys: benchKeys of them, each with a 100-byte value.
const benchKeys = 10000

var benchValue = make([]byte, 100)

func benchKey(i int) []byte { return fmt.Appendf(nil, "key:%012d", i) }

// openBenchStore opens a store for actor on an in-memory engine that does
// not sync.
func openBenchStore(b *testing.B, actor string) *Store {
	db, err := storage.Open("db", &storage.Options{FS: vfs.NewMem(), Sync: storage.SyncNone, MemTableIndex: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return New(db, actor)
}

// BenchmarkBlindWriteBatch: batches of 16 blind writes (Redis SETs
// pipelined) over keys that are already stored, each read, stamped and
// committed by CoordinateBatch, as on the coordinating replica.
func BenchmarkBlindWriteBatch(b *testing.B) {
	s := openBenchStore(b, "a")
	for i := range benchKeys {
		if _, err := s.Coordinate(benchKey(i), nil, benchValue, false, 1); err != nil {
			b.Fatal(err)
		}
	}
	writes := make([]Write, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for j := range writes {
			writes[j] = Write{Key: benchKey((n*16 + j*613) % benchKeys), Value: benchValue}
		}
		if _, _, err := s.CoordinateBatch(writes, int64(n), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyCoveringBatch: batches of 16 versions that each supersede
// what the replica holds (a coordinator's blind writes, replicated), applied
// by ApplyCovering over keys that are already stored, as on the replicas
// other than the coordinating one.
func BenchmarkApplyCoveringBatch(b *testing.B) {
	s := openBenchStore(b, "b")
	counters := make([]uint64, benchKeys) // the coordinator a's counter per key
	next := func(i int) *version.Object {
		counters[i]++
		c := counters[i]
		return &version.Object{
			Context:  version.Clock{"a": c},
			Siblings: []version.Sibling{{Dot: version.Dot{Node: "a", Counter: c}, Value: benchValue, Timestamp: int64(c)}},
		}
	}
	for i := range benchKeys {
		if stored, _, err := s.ApplyCovering([][]byte{benchKey(i)}, []*version.Object{next(i)}); err != nil || !stored[0] {
			b.Fatal(stored, err)
		}
	}
	batchKeys := make([][]byte, 16)
	objs := make([]*version.Object, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for j := range batchKeys {
			i := (n*16 + j*613) % benchKeys
			batchKeys[j], objs[j] = benchKey(i), next(i)
		}
		stored, _, err := s.ApplyCovering(batchKeys, objs)
		if err != nil {
			b.Fatal(err)
		}
		for j, ok := range stored {
			if !ok {
				b.Fatalf("version %d of the batch was not stored", j)
			}
		}
	}
}
