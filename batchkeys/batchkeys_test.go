package batchkeys

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// previousByMap is the map-based Previous these functions replace.
func previousByMap(keys [][]byte) []int {
	last := map[string]int{}
	prev := make([]int, len(keys))
	for i, k := range keys {
		prev[i] = -1
		if j, ok := last[string(k)]; ok {
			prev[i] = j
		}
		last[string(k)] = i
	}
	return prev
}

func TestPropPreviousFindsEachKeysLastRepeat(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		// Few distinct keys, so that batches repeat them; sizes on both
		// sides of directBelow and of the stack buffer.
		alphabet := rapid.SliceOfN(rapid.SliceOfN(rapid.Byte(), 0, 6), 1, 20).Draw(t, "alphabet")
		// Every size up to well past stackKeys is as likely.
		n := rapid.IntRange(0, 3*stackKeys).Draw(t, "n")
		picks := rapid.SliceOfN(rapid.IntRange(0, len(alphabet)-1), n, n).Draw(t, "picks")
		keys := make([][]byte, len(picks))
		for i, p := range picks {
			keys[i] = alphabet[p]
		}
		key := func(i int) []byte { return keys[i] }
		want := previousByMap(keys)
		weak := rapid.IntRange(0, 2).Draw(t, "weakHash") // 0: the real hash
		hash := hashKey
		if weak > 0 {
			// Distinct keys collide: the bytes must decide.
			hash = func(k []byte) uint64 { return uint64(len(k) % (weak + 1)) }
		}
		prev := previous(len(keys), key, nil, hash)
		if fmt.Sprint(prev) != fmt.Sprint(want) {
			t.Fatalf("keys %q: previous %v, want %v", keys, prev, want)
		}
		first := First(prev, nil)
		inPlace := slices.Clone(prev)
		if inPlace = First(inPlace, inPlace); !slices.Equal(inPlace, first) {
			t.Fatalf("First in place %v, want %v", inPlace, first)
		}
		for i := range keys {
			f := i
			for f >= 0 && want[f] >= 0 {
				f = want[f]
			}
			if first[i] != f {
				t.Fatalf("keys %q: first[%d] = %d, want %d", keys, i, first[i], f)
			}
		}
	})
}

func TestPreviousReusesStorage(t *testing.T) {
	keys := [][]byte{[]byte("a"), []byte("b"), []byte("a")}
	buf := make([]int, 0, 8)
	prev := Previous(len(keys), func(i int) []byte { return keys[i] }, buf)
	if &prev[0] != &buf[:1][0] {
		t.Fatal("Previous allocated although its argument had room")
	}
	if fmt.Sprint(prev) != "[-1 -1 0]" {
		t.Fatalf("prev %v", prev)
	}
}

func TestPreviousAllocatesNothingPerKey(t *testing.T) {
	for _, n := range []int{4, 16, 64} {
		keys := make([][]byte, n)
		for i := range keys {
			keys[i] = fmt.Appendf(nil, "key:%012d", i%(n/2+1))
		}
		prev := make([]int, n)
		key := func(i int) []byte { return keys[i] }
		if a := testing.AllocsPerRun(100, func() { prev = Previous(n, key, prev) }); a != 0 {
			t.Errorf("%d keys: %.1f allocations, want none", n, a)
		}
	}
}

func BenchmarkPrevious(b *testing.B) {
	for _, n := range []int{8, 16, 64} {
		keys := make([][]byte, n)
		for i := range keys {
			keys[i] = fmt.Appendf(nil, "key:%012d", i*7919)
		}
		key := func(i int) []byte { return keys[i] }
		b.Run(fmt.Sprint("previous/", n), func(b *testing.B) {
			prev := make([]int, n)
			for range b.N {
				prev = Previous(n, key, prev)
			}
		})
		b.Run(fmt.Sprint("map/", n), func(b *testing.B) {
			for range b.N {
				m := make(map[string]int, n)
				for i, k := range keys {
					m[string(k)] = i
				}
			}
		})
	}
}
