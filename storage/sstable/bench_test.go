package sstable

import (
	"encoding/binary"
	"math/rand"
	"testing"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/cache"
)

const benchEntries = 100000

// benchEntriesData returns benchEntries entries with 16-byte user keys and
// 100-byte values (half random, half repeated: compressible like real data).
func benchEntriesData() []entry {
	rng := rand.New(rand.NewSource(1))
	es := make([]entry, benchEntries)
	for i := range es {
		uk := make([]byte, 16)
		copy(uk, "bench-")
		binary.BigEndian.PutUint64(uk[8:], uint64(i)*7)
		v := make([]byte, 100)
		rng.Read(v[:50])
		for j := 50; j < 100; j++ {
			v[j] = 'x'
		}
		es[i] = entry{base.MakeInternalKey(nil, uk, base.SeqNum(i+1), base.KindSet), v}
	}
	return es
}

func BenchmarkWriter(b *testing.B) {
	es := benchEntriesData()
	for _, comp := range []struct {
		name string
		c    uint8
	}{{"snappy", SnappyCompression}, {"none", NoCompression}} {
		b.Run(comp.name, func(b *testing.B) {
			b.SetBytes(int64(benchEntries * (16 + 8 + 100)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				f := &memFile{data: make([]byte, 0, 16<<20)}
				w := NewWriter(f, WriterOptions{Compression: comp.c})
				for _, e := range es {
					if err := w.Add(e.key, e.value); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := w.Finish(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchReader(b *testing.B, c *cache.Cache) (*Reader, []entry) {
	es := benchEntriesData()
	f := &memFile{}
	w := NewWriter(f, WriterOptions{})
	for _, e := range es {
		if err := w.Add(e.key, e.value); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := w.Finish(); err != nil {
		b.Fatal(err)
	}
	r, err := Open(f, int64(len(f.data)), ReaderOptions{Cache: c, FileNum: 1})
	if err != nil {
		b.Fatal(err)
	}
	return r, es
}

func BenchmarkGet(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache *cache.Cache
	}{{"cached", cache.New(256 << 20)}, {"uncached", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			r, es := benchReader(b, bc.cache)
			// Warm the cache.
			for _, e := range es {
				r.Get(base.UserKey(e.key), base.SeqNumMax)
			}
			rng := rand.New(rand.NewSource(2))
			idx := make([]int, 1<<16)
			for i := range idx {
				idx[i] = rng.Intn(len(es))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				uk := base.UserKey(es[idx[i&(len(idx)-1)]].key)
				if _, _, ok, err := r.Get(uk, base.SeqNumMax); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
	b.Run("absent", func(b *testing.B) {
		r, _ := benchReader(b, cache.New(256<<20))
		uk := make([]byte, 16)
		copy(uk, "bench-")
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			binary.BigEndian.PutUint64(uk[8:], uint64(i)*7+3)
			if _, _, ok, err := r.Get(uk, base.SeqNumMax); ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}

func BenchmarkIter(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache *cache.Cache
	}{{"cached", cache.New(256 << 20)}, {"uncached", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			r, es := benchReader(b, bc.cache)
			b.SetBytes(int64(len(es) * (16 + 8 + 100)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				it := r.NewIter()
				n := 0
				for ok := it.First(); ok; ok = it.Next() {
					n++
				}
				if err := it.Close(); err != nil || n != len(es) {
					b.Fatal(n, err)
				}
			}
		})
	}
}
