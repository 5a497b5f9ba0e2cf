package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// check verifies the internal invariants of every shard: map, clock ring and
// file rings agree, and size is the sum of charges within capacity.
func (c *Cache) check(t testing.TB) {
	t.Helper()
	var total int64
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		var size int64
		n := 0
		if s.hand != nil {
			e := s.hand
			for {
				n++
				size += e.charge
				if s.entries[e.key] != e {
					t.Fatalf("shard %d: ring entry %v not in map", i, e.key)
				}
				if e.next.prev != e {
					t.Fatalf("shard %d: broken ring at %v", i, e.key)
				}
				e = e.next
				if e == s.hand {
					break
				}
				if n > len(s.entries) {
					t.Fatalf("shard %d: ring longer than map (%d)", i, len(s.entries))
				}
			}
		}
		if n != len(s.entries) || size != s.size {
			t.Fatalf("shard %d: ring has %d entries / %d bytes, map %d / size %d", i, n, size, len(s.entries), s.size)
		}
		if s.size > s.capacity {
			t.Fatalf("shard %d: size %d > capacity %d", i, s.size, s.capacity)
		}
		fn := 0
		for f, head := range s.files {
			e := head
			for {
				fn++
				if e.key.fileNum != f || s.entries[e.key] != e || e.fileNext.filePrev != e {
					t.Fatalf("shard %d: bad file ring for %d", i, f)
				}
				e = e.fileNext
				if e == head {
					break
				}
			}
		}
		if fn != n {
			t.Fatalf("shard %d: file rings hold %d entries, ring %d", i, fn, n)
		}
		total += s.capacity
		s.mu.RUnlock()
	}
	if total != c.capacity {
		t.Fatalf("shard capacities sum to %d, want %d", total, c.capacity)
	}
}

func val(fileNum, offset uint64, n int) []byte {
	v := make([]byte, max(n, 16))
	binary.LittleEndian.PutUint64(v, fileNum)
	binary.LittleEndian.PutUint64(v[8:], offset)
	return v
}

func TestCapacityBoundRandomized(t *testing.T) {
	for _, capacity := range []int64{0, 1, 1000, 64 << 10, 3<<20 + 7, 128 << 20} {
		t.Run(fmt.Sprint(capacity), func(t *testing.T) {
			c := New(capacity)
			rng := rand.New(rand.NewPCG(uint64(capacity), 9))
			last := map[key][]byte{}
			for i := 0; i < 20000; i++ {
				f, off := uint64(rng.IntN(20)), uint64(rng.IntN(300))*4096
				switch r := rng.IntN(100); {
				case r < 50:
					v := val(f, off, rng.IntN(40000))
					c.Set(f, off, v)
					last[key{f, off}] = v
				case r < 98:
					if v, ok := c.Get(f, off); ok && !bytes.Equal(v, last[key{f, off}]) {
						t.Fatalf("Get(%d, %d) returned a stale or foreign value", f, off)
					}
				default:
					c.EvictFile(f)
					for o := uint64(0); o < 300*4096; o += 4096 {
						if _, ok := c.Get(f, o); ok {
							t.Fatalf("block (%d, %d) survived EvictFile", f, o)
						}
					}
				}
				if m := c.Metrics(); m.Size > m.Capacity || m.Capacity != capacity {
					t.Fatalf("op %d: size %d, capacity %d (want %d)", i, m.Size, m.Capacity, capacity)
				}
				if i%500 == 0 {
					c.check(t)
				}
			}
			c.check(t)
			if m := c.Metrics(); capacity >= 3<<20 && m.Count == 0 {
				t.Fatalf("nothing cached: %+v", m)
			}
		})
	}
}

func TestSetGetReplace(t *testing.T) {
	c := New(1 << 20)
	if _, ok := c.Get(1, 0); ok {
		t.Fatal("hit on empty cache")
	}
	c.Set(1, 0, []byte("one"))
	c.Set(1, 4096, []byte("two"))
	c.Set(2, 0, []byte("three"))
	for _, tc := range []struct {
		f, off uint64
		want   string
	}{{1, 0, "one"}, {1, 4096, "two"}, {2, 0, "three"}} {
		if v, ok := c.Get(tc.f, tc.off); !ok || string(v) != tc.want {
			t.Fatalf("Get(%d, %d) = %q, %v", tc.f, tc.off, v, ok)
		}
	}
	c.Set(1, 0, []byte("uno"))
	if v, _ := c.Get(1, 0); string(v) != "uno" {
		t.Fatalf("replace: got %q", v)
	}
	m := c.Metrics()
	if m.Count != 3 || m.Size != 3*EntryOverhead+3+3+5 {
		t.Fatalf("metrics after replace: %+v", m)
	}
	c.check(t)
}

func TestOversizedNotCached(t *testing.T) {
	c := New(1000)
	c.Set(1, 0, make([]byte, 100))
	c.Set(1, 1, make([]byte, 1000)) // charge exceeds capacity
	if _, ok := c.Get(1, 1); ok {
		t.Fatal("oversized value cached")
	}
	if _, ok := c.Get(1, 0); !ok {
		t.Fatal("oversized Set evicted an unrelated entry")
	}
	// Replacing a cached value with an oversized one must drop the old one,
	// not leave it to be served.
	c.Set(1, 0, make([]byte, 2000))
	if _, ok := c.Get(1, 0); ok {
		t.Fatal("stale value served after oversized replace")
	}
	c.check(t)
}

// TestRecentlyUsedSurvives fills one shard exactly, touches one entry and
// inserts more: CLOCK must evict untouched entries first.
func TestRecentlyUsedSurvives(t *testing.T) {
	const n, size = 16, 1000
	c := New(n * (size + EntryOverhead))
	if len(c.shards) != 1 {
		t.Fatalf("want one shard for a small cache, got %d", len(c.shards))
	}
	for i := uint64(0); i < n; i++ {
		c.Set(1, i, make([]byte, size))
	}
	if m := c.Metrics(); m.Count != n {
		t.Fatalf("count %d, want %d", m.Count, n)
	}
	c.Get(1, 0)
	c.Get(1, 5)
	for i := uint64(n); i < n+5; i++ {
		c.Set(1, i, make([]byte, size))
	}
	for _, hot := range []uint64{0, 5} {
		if _, ok := c.Get(1, hot); !ok {
			t.Fatalf("recently used entry %d was evicted", hot)
		}
	}
	// The oldest untouched entries go first.
	for _, cold := range []uint64{1, 2, 3, 4, 6} {
		if _, ok := c.Get(1, cold); ok {
			t.Fatalf("cold entry %d survived ahead of newer ones", cold)
		}
	}
	// A hot working set that keeps being read survives a long stream of
	// one-off inserts.
	for i := uint64(100); i < 1000; i++ {
		c.Get(1, 0)
		c.Get(1, 5)
		c.Set(1, i, make([]byte, size))
	}
	for _, hot := range []uint64{0, 5} {
		if _, ok := c.Get(1, hot); !ok {
			t.Fatalf("hot entry %d evicted by a scan", hot)
		}
	}
	c.check(t)
}

func TestEvictFile(t *testing.T) {
	c := New(64 << 20)
	for f := uint64(1); f <= 5; f++ {
		for off := uint64(0); off < 500; off++ {
			c.Set(f, off*4096, val(f, off, 100))
		}
	}
	before := c.Metrics()
	c.EvictFile(3)
	c.EvictFile(42) // unknown file: no-op
	c.check(t)
	after := c.Metrics()
	if before.Count != 2500 || after.Count != 2000 {
		t.Fatalf("count before %d after %d", before.Count, after.Count)
	}
	if after.Size != before.Size-500*(100+EntryOverhead) {
		t.Fatalf("size before %d after %d", before.Size, after.Size)
	}
	for f := uint64(1); f <= 5; f++ {
		for off := uint64(0); off < 500; off++ {
			_, ok := c.Get(f, off*4096)
			if ok != (f != 3) {
				t.Fatalf("Get(%d, %d) hit=%v after EvictFile(3)", f, off, ok)
			}
		}
	}
	// The file can be cached again (file numbers are not reused in
	// practice, but the structure must not be left in a bad state).
	c.Set(3, 0, []byte("x"))
	if v, ok := c.Get(3, 0); !ok || string(v) != "x" {
		t.Fatal("re-Set after EvictFile failed")
	}
	c.check(t)
}

func TestMetricsCounting(t *testing.T) {
	c := New(1 << 20)
	if r := c.Metrics().HitRate(); r != 0 {
		t.Fatalf("hit rate before any Get = %v", r)
	}
	c.Set(1, 1, []byte("a"))
	for i := 0; i < 3; i++ {
		c.Get(1, 1)
	}
	c.Get(1, 2)
	m := c.Metrics()
	if m.Hits != 3 || m.Misses != 1 || m.Count != 1 || m.Capacity != 1<<20 || m.Size != 1+EntryOverhead {
		t.Fatalf("metrics %+v", m)
	}
	if r := m.HitRate(); r != 0.75 {
		t.Fatalf("hit rate %v", r)
	}
}

func TestNilAndZero(t *testing.T) {
	var nc *Cache
	nc.Set(1, 1, []byte("a"))
	if _, ok := nc.Get(1, 1); ok {
		t.Fatal("nil cache hit")
	}
	nc.EvictFile(1)
	if m := nc.Metrics(); m != (Metrics{}) {
		t.Fatalf("nil metrics %+v", m)
	}
	for _, capacity := range []int64{0, -5} {
		c := New(capacity)
		c.Set(1, 1, nil)
		if _, ok := c.Get(1, 1); ok {
			t.Fatal("zero-capacity cache hit")
		}
		if m := c.Metrics(); m.Size != 0 || m.Count != 0 || m.Misses != 1 {
			t.Fatalf("metrics %+v", m)
		}
	}
}

func TestShardCount(t *testing.T) {
	for capacity, want := range map[int64]int{0: 1, 1 << 20: 1, 4 << 20: 4, 63 << 20: 32, 64 << 20: 64, 8 << 30: 64} {
		if got := len(New(capacity).shards); got != want {
			t.Errorf("New(%d): %d shards, want %d", capacity, got, want)
		}
	}
}

func TestGetDoesNotAllocate(t *testing.T) {
	c := New(1 << 20)
	c.Set(7, 4096, make([]byte, 100))
	if n := testing.AllocsPerRun(1000, func() {
		c.Get(7, 4096)
		c.Get(7, 8192)
	}); n != 0 {
		t.Fatalf("Get allocated %v times", n)
	}
}

// TestConcurrent hammers one cache from many goroutines (run it with -race).
// Values encode their key, so a reader detects a block served for the wrong
// key or torn by a concurrent writer.
func TestConcurrent(t *testing.T) {
	c := New(2 << 20)
	const workers, ops = 8, 20000
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for i := 0; i < ops; i++ {
				f, off := uint64(rng.IntN(8)), uint64(rng.IntN(200))*4096
				switch r := rng.IntN(100); {
				case r < 30:
					c.Set(f, off, val(f, off, rng.IntN(8192)))
				case r < 98:
					if v, ok := c.Get(f, off); ok {
						if binary.LittleEndian.Uint64(v) != f || binary.LittleEndian.Uint64(v[8:]) != off {
							t.Errorf("Get(%d, %d) returned the block of another key", f, off)
							return
						}
					}
				case r < 99:
					c.EvictFile(f)
				default:
					if m := c.Metrics(); m.Size > m.Capacity {
						t.Errorf("size %d > capacity %d", m.Size, m.Capacity)
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	c.check(t)
	if m := c.Metrics(); m.Hits+m.Misses == 0 || m.Hits == 0 {
		t.Fatalf("metrics %+v", m)
	}
}

func BenchmarkGetHitParallel(b *testing.B) {
	const blocks = 4096
	c := New(64 << 20)
	for i := uint64(0); i < blocks; i++ {
		c.Set(i%16, i*4096, make([]byte, 4096))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := rand.Uint64()
		for pb.Next() {
			i++
			n := i % blocks
			if _, ok := c.Get(n%16, n*4096); !ok {
				b.Fatal("miss")
			}
		}
	})
}

// BenchmarkGetHitParallelHot has every goroutine read the same block: the
// worst case for shard contention.
func BenchmarkGetHitParallelHot(b *testing.B) {
	c := New(64 << 20)
	c.Set(1, 0, make([]byte, 4096))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Get(1, 0)
		}
	})
}

func BenchmarkSetEvict(b *testing.B) {
	c := New(16 << 20)
	v := make([]byte, 4096)
	b.ReportAllocs()
	i := uint64(0)
	for b.Loop() {
		c.Set(i%64, i*4096, v)
		i++
	}
}

func BenchmarkMixedParallel(b *testing.B) {
	c := New(16 << 20)
	v := make([]byte, 4096)
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
		for pb.Next() {
			n := rng.Uint64N(8192) // ~2x what fits: a realistic miss rate
			if _, ok := c.Get(n%16, n*4096); !ok {
				c.Set(n%16, n*4096, v)
			}
		}
	})
	b.ReportMetric(c.Metrics().HitRate(), "hitrate")
}
