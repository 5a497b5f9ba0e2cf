package memtable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ringkv/ringkv/storage/base"
)

// fingerKey returns a key laid out like the replica's engine keys: a prefix
// byte, an 8-byte hash field drawn from a pool (so keys repeat and get
// several versions), then a suffix. With mixed, one key in seven breaks the
// layout: another prefix byte, too short to hold the field, or empty.
func fingerKey(rng *rand.Rand, pool []uint64, mixed bool) []byte {
	r := 20
	if mixed {
		r = rng.IntN(20)
	}
	switch r {
	case 0:
		return []byte{'d', byte(rng.IntN(256))} // shorter than the field
	case 1:
		return binary.BigEndian.AppendUint64([]byte{'a'}, pool[rng.IntN(len(pool))])
	case 2:
		return []byte{}
	}
	k := binary.BigEndian.AppendUint64([]byte{'d'}, pool[rng.IntN(len(pool))])
	return append(k, byte('a'+rng.IntN(3)))
}

// TestFingersModel checks that inserts placed from fingers keep the list
// exactly as the descent would: iteration and Get agree with a sorted model,
// duplicates are refused, and keys that break the layout stay correct.
func TestFingersModel(t *testing.T) {
	for round := range 6 {
		arena := []int{64 << 10, 1 << 20, 4 << 20}[round%3]
		mixed := round >= 3
		rng := rand.New(rand.NewPCG(uint64(round), 7))
		pool := make([]uint64, arena/64) // about two versions a key
		for i := range pool {
			pool[i] = rng.Uint64()
		}
		m := New(arena)
		m.UseFingers(1)
		var md model
		used := map[base.SeqNum]bool{}
		for i := 0; ; i++ {
			uk := fingerKey(rng, pool, mixed)
			seq := base.SeqNum(rng.IntN(1<<40) + 1)
			if used[seq] {
				continue
			}
			val := binary.AppendUvarint(nil, uint64(seq))
			err := m.Add(seq, base.KindSet, uk, val)
			if errors.Is(err, ErrArenaFull) {
				break
			}
			if err != nil {
				t.Fatalf("Add %d (%x, %d): %v", i, uk, seq, err)
			}
			used[seq] = true
			md = append(md, entry{base.MakeInternalKey(nil, uk, seq, base.KindSet), val})
			// Now and then the same internal key again: refused, nothing added.
			if i%50 == 0 {
				if err := m.Add(seq, base.KindSet, uk, []byte("dup")); !errors.Is(err, ErrDuplicateKey) {
					t.Fatalf("duplicate Add(%x, %d) = %v, want ErrDuplicateKey", uk, seq, err)
				}
			}
		}
		slices.SortFunc(md, func(a, b entry) int { return base.Compare(a.ikey, b.ikey) })
		if m.Len() != len(md) {
			t.Fatalf("arena %d: Len = %d, want %d", arena, m.Len(), len(md))
		}
		it := m.NewIter()
		i := 0
		for ok := it.First(); ok; ok = it.Next() {
			if i >= len(md) || !bytes.Equal(it.Key(), md[i].ikey) || !bytes.Equal(it.Value(), md[i].value) {
				t.Fatalf("arena %d: entry %d is %s, want %s", arena, i, base.Format(it.Key()), base.Format(md[i].ikey))
			}
			i++
		}
		it.Close()
		if i != len(md) {
			t.Fatalf("arena %d: iterated %d entries, want %d", arena, i, len(md))
		}
		for q := 0; q < 2000; q++ {
			uk := fingerKey(rng, pool, mixed)
			want, wok := md.get(uk, base.SeqNumMax)
			val, _, ok := m.Get(uk, base.SeqNumMax)
			if ok != wok || ok && !bytes.Equal(val, want.value) {
				t.Fatalf("arena %d: Get(%x) = %x, %v; want %x, %v", arena, uk, val, ok, want.value, wok)
			}
		}
		// With every key in the layout, fingers must place most entries (all
		// but the tallest and those first in an empty stretch), or they do
		// not do their job. Keys of other layouts make them fall back more,
		// never fail.
		if !mixed && m.fingerHits < len(md)*3/4 {
			t.Fatalf("arena %d: %d of %d entries placed from fingers, want at least three in four", arena, m.fingerHits, len(md))
		}
		t.Logf("arena %d, mixed layouts %v: %d entries, %d placed from fingers", arena, mixed, len(md), m.fingerHits)
	}
}
