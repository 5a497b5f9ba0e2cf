package bloom

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestMurmur3Reference checks the hash core against MurmurHash3 x86_32
// reference values, so Hash is known to be the documented algorithm and not
// merely self-consistent.
func TestMurmur3Reference(t *testing.T) {
	for _, tc := range []struct {
		key  string
		seed uint32
		want uint32
	}{
		{"", 0, 0},
		{"", 1, 0x514e28b7},
		{"", 0xffffffff, 0x81f16f39},
		{"\x00\x00\x00\x00", 0, 0x2362f9de},
		{"aaaa", 0x9747b28c, 0x5a97808a},
		{"abc", 0, 0xb3dd93fa},
		{"hello", 0, 0x248bfa47},
		{"Hello, world!", 0x9747b28c, 0x24884cba},
		{"The quick brown fox jumps over the lazy dog", 0x9747b28c, 0x2fa826cd},
	} {
		if got := murmur3([]byte(tc.key), tc.seed); got != tc.want {
			t.Errorf("murmur3(%q, %#x) = %#08x, want %#08x", tc.key, tc.seed, got, tc.want)
		}
	}
}

// TestHashGolden pins Hash forever: filters on disk were built with it.
// If this test fails, do not update the constants; fix the hash.
func TestHashGolden(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want uint32
	}{
		{"", 0x3f177186},
		{"a", 0x6dba6b55},
		{"ab", 0x424bf1b6},
		{"abc", 0x3445203e},
		{"abcd", 0x3bf97d00},
		{"abcde", 0xc27be836},
		{"hello world", 0xdeb0dc74},
		{"\xff\xfe\xfd\xfc\xfb\xfa\xf9", 0xcc3e4d0b},
		{"user/000000000042", 0x400fc6c9},
	} {
		if got := Hash([]byte(tc.key)); got != tc.want {
			t.Errorf("Hash(%q) = %#08x, want %#08x", tc.key, got, tc.want)
		}
	}
}

// TestFilterGolden pins the probe scheme and encoding: a filter built today
// must be byte-identical to one built by every future version.
func TestFilterGolden(t *testing.T) {
	hs := []uint32{Hash([]byte("a")), Hash([]byte("b")), Hash([]byte("c"))}
	f := Build(nil, hs, 10)
	if len(f) != BlockSize+1 || f[len(f)-1] != 6 {
		t.Fatalf("len=%d k=%d, want %d and 6", len(f), f[len(f)-1], BlockSize+1)
	}
	got := fmt.Sprintf("%x", f)
	const want = "0000002000000000000000000100001000000040800000000020490000088000000200200000000000400000000000000000010000001040000000000000020006"
	if got != want {
		t.Fatalf("filter bytes changed:\n got %s\nwant %s", got, want)
	}
}

func keyOf(i uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], i)
	return b[:]
}

func TestNoFalseNegatives(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 7, 63, 64, 100, 1000, 10000, 50000} {
		for _, bpk := range []int{-3, 0, 1, 2, 5, 10, 20, 64} {
			hs := make([]uint32, n)
			keys := make([][]byte, n)
			for i := range hs {
				k := make([]byte, rng.IntN(40))
				for j := range k {
					k[j] = byte(rng.Uint32())
				}
				keys[i] = k
				hs[i] = Hash(k)
			}
			prefix := []byte("prefix")
			f := Build(prefix, hs, bpk)
			if string(f[:len(prefix)]) != "prefix" {
				t.Fatalf("Build clobbered dst")
			}
			f = f[len(prefix):]
			for i, k := range keys {
				if !MayContain(f, Hash(k)) {
					t.Fatalf("n=%d bpk=%d: false negative for key %d (%x)", n, bpk, i, k)
				}
			}
		}
	}
}

func TestEmptyFilterRejects(t *testing.T) {
	f := Build(nil, nil, 10)
	for i := uint64(0); i < 1000; i++ {
		if MayContain(f, Hash(keyOf(i))) {
			t.Fatalf("empty filter claims key %d", i)
		}
	}
}

func TestFalsePositiveRate(t *testing.T) {
	for _, tc := range []struct {
		bpk   int
		limit float64
	}{
		{10, 0.02},
		{16, 0.003},
		{5, 0.12},
	} {
		const n, probes = 100_000, 400_000
		hs := make([]uint32, n)
		for i := range hs {
			hs[i] = Hash(keyOf(uint64(i)))
		}
		f := Build(nil, hs, tc.bpk)
		fp := 0
		for i := uint64(0); i < probes; i++ {
			if MayContain(f, Hash(keyOf(1<<40+i))) {
				fp++
			}
		}
		rate := float64(fp) / probes
		t.Logf("bitsPerKey=%d k=%d size=%dB: false-positive rate %.3f%%", tc.bpk, f[len(f)-1], len(f), rate*100)
		if rate > tc.limit {
			t.Errorf("bitsPerKey=%d: false-positive rate %.3f%% above %.3f%%", tc.bpk, rate*100, tc.limit*100)
		}
	}
}

// TestFalsePositiveRateSmallSets guards the rounding of tiny filters: a table
// with a handful of keys still gets a whole block and should not be worse.
func TestFalsePositiveRateSmallSets(t *testing.T) {
	for _, n := range []int{1, 10, 51, 52, 100} {
		hs := make([]uint32, n)
		for i := range hs {
			hs[i] = Hash(keyOf(uint64(i)))
		}
		f := Build(nil, hs, 10)
		fp := 0
		const probes = 100_000
		for i := uint64(0); i < probes; i++ {
			if MayContain(f, Hash(keyOf(1<<40+i))) {
				fp++
			}
		}
		if rate := float64(fp) / probes; rate > 0.03 {
			t.Errorf("n=%d: false-positive rate %.3f%%", n, rate*100)
		}
	}
}

func TestMalformedMayContain(t *testing.T) {
	good := Build(nil, []uint32{1, 2, 3}, 10)
	bad := [][]byte{
		nil,
		{},
		{6},
		make([]byte, BlockSize),              // no trailer
		make([]byte, BlockSize+2),            // length not 1 mod 64
		append(make([]byte, BlockSize), 0),   // k = 0
		append(make([]byte, BlockSize), 31),  // reserved k
		append(make([]byte, BlockSize), 255), // reserved k
		good[:len(good)-1],                   // truncated
		good[1:],                             // misaligned
	}
	for i, f := range bad {
		for _, h := range []uint32{0, 1, 0xdeadbeef, 0xffffffff} {
			if !MayContain(f, h) {
				t.Errorf("malformed filter %d (len %d) rejected hash %#x", i, len(f), h)
			}
		}
	}
	// Random garbage must not panic; the answer does not matter.
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 10000; i++ {
		f := make([]byte, rng.IntN(300))
		for j := range f {
			f[j] = byte(rng.Uint32())
		}
		MayContain(f, rng.Uint32())
	}
}

func TestBuildReusesCapacity(t *testing.T) {
	buf := make([]byte, 3, 1024)
	f := Build(buf, []uint32{1, 2, 3}, 10)
	if &f[0] != &buf[0] {
		t.Fatal("Build reallocated although dst had room")
	}
	if n := testing.AllocsPerRun(100, func() { Build(buf[:0], []uint32{1, 2, 3}, 10) }); n != 0 {
		t.Fatalf("Build with room allocated %v times", n)
	}
}

func TestProbes(t *testing.T) {
	for bpk, want := range map[int]int{-1: 1, 0: 1, 1: 1, 2: 1, 5: 3, 10: 6, 16: 10, 20: 13, 100: 30} {
		if got := Probes(bpk); got != want {
			t.Errorf("Probes(%d) = %d, want %d", bpk, got, want)
		}
	}
}

func FuzzMayContain(f *testing.F) {
	f.Add([]byte{}, uint32(0))
	f.Add(Build(nil, []uint32{1, 2, 3}, 10), uint32(2))
	f.Add(Build(nil, make([]uint32, 200), 7), uint32(0xffffffff))
	f.Add(append(make([]byte, BlockSize), 31), uint32(5))
	f.Fuzz(func(t *testing.T, filter []byte, h uint32) {
		MayContain(filter, h)
		// A well-formed filter built from h must contain it.
		if fb := Build(nil, []uint32{h, Hash(filter)}, len(filter)%24); !MayContain(fb, h) || !MayContain(fb, Hash(filter)) {
			t.Fatalf("false negative for %#x", h)
		}
	})
}

func BenchmarkHash(b *testing.B) {
	key := []byte("user/0000000000000042")
	b.SetBytes(int64(len(key)))
	for b.Loop() {
		Hash(key)
	}
}

func BenchmarkBuild(b *testing.B) {
	const n = 10_000
	hs := make([]uint32, n)
	for i := range hs {
		hs[i] = Hash(keyOf(uint64(i)))
	}
	buf := make([]byte, 0, n*2)
	b.ReportAllocs()
	for b.Loop() {
		buf = Build(buf[:0], hs, 10)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
}

func BenchmarkMayContain(b *testing.B) {
	for _, n := range []int{1_000, 1_000_000} {
		hs := make([]uint32, n)
		for i := range hs {
			hs[i] = Hash(keyOf(uint64(i)))
		}
		f := Build(nil, hs, 10)
		probe := make([]uint32, 4096)
		for i := range probe {
			if i%2 == 0 {
				probe[i] = hs[(i*7919)%n] // present
			} else {
				probe[i] = Hash(keyOf(1<<40 + uint64(i))) // absent
			}
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			i := 0
			for b.Loop() {
				MayContain(f, probe[i&4095])
				i++
			}
		})
	}
}
