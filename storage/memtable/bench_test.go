package memtable

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/ringkv/ringkv/storage/base"
)

const benchArena = 64 << 20

func randKey(rng *rand.Rand, dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst[:0], rng.Uint64())
	return binary.BigEndian.AppendUint64(dst, rng.Uint64())
}

// BenchmarkAdd inserts 16-byte random keys with 100-byte values, rotating to
// a fresh 64 MiB memtable (outside the timer) whenever one fills, as the
// engine would: with a descent from the head for every entry, and with
// fingers (UseFingers) on the keys' random first 8 bytes.
func BenchmarkAdd(b *testing.B) {
	for _, fingers := range []bool{false, true} {
		name := "descent"
		if fingers {
			name = "fingers"
		}
		b.Run(name, func(b *testing.B) {
			fresh := func() *MemTable {
				m := New(benchArena)
				if fingers {
					m.UseFingers(0)
				}
				return m
			}
			rng := rand.New(rand.NewPCG(1, 1))
			val := make([]byte, 100)
			key := make([]byte, 0, 16)
			m := fresh()
			b.SetBytes(16 + 100)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				key = randKey(rng, key)
				err := m.Add(base.SeqNum(i+1), base.KindSet, key, val)
				if err == ErrArenaFull {
					b.StopTimer()
					m = fresh()
					b.StartTimer()
					err = m.Add(base.SeqNum(i+1), base.KindSet, key, val)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fillBench builds a memtable of n random entries and returns their keys.
func fillBench(b *testing.B, n int) (*MemTable, [][]byte) {
	rng := rand.New(rand.NewPCG(2, 2))
	val := make([]byte, 100)
	m := New(benchArena)
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = randKey(rng, nil)
		if err := m.Add(base.SeqNum(i+1), base.KindSet, keys[i], val); err != nil {
			b.Fatal(err)
		}
	}
	return m, keys
}

const benchEntries = 300_000 // ~45 MiB of a 64 MiB memtable

func BenchmarkGet(b *testing.B) {
	m, keys := fillBench(b, benchEntries)
	rng := rand.New(rand.NewPCG(3, 3))
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, _, ok := m.Get(keys[rng.IntN(len(keys))], base.SeqNumMax); !ok {
				b.Fatal("missing key")
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		key := make([]byte, 0, 16)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			key = randKey(rng, key)
			m.Get(key, base.SeqNumMax)
		}
	})
}

func BenchmarkIterate(b *testing.B) {
	m, _ := fillBench(b, benchEntries)
	it := m.NewIter()
	b.ReportAllocs()
	b.ResetTimer()
	var n int
	for i := 0; i < b.N; i++ {
		for ok := it.First(); ok; ok = it.Next() {
			n += len(it.Key()) + len(it.Value())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchEntries), "ns/entry")
	_ = n
}

func BenchmarkSeekGE(b *testing.B) {
	m, keys := fillBench(b, benchEntries)
	rng := rand.New(rand.NewPCG(4, 4))
	seeks := make([][]byte, 4096)
	for i := range seeks {
		seeks[i] = base.MakeSeekKey(nil, keys[rng.IntN(len(keys))], base.SeqNumMax)
	}
	it := m.NewIter()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if !it.SeekGE(seeks[i&4095]) {
			b.Fatal("seek failed")
		}
	}
}
