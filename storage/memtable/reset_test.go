package memtable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/ringkv/ringkv/storage/base"
)

// A memtable emptied by Reset and filled again must answer exactly as a
// new memtable given the same entries: nothing of what it held before
// (nodes, index slots, filter bits, fingers) may show through.
func TestResetIsANewMemtable(t *testing.T) {
	const arena = 256 << 10
	for _, cfg := range []struct {
		name             string
		indexed, fingers bool
	}{{"plain", false, false}, {"indexed", true, false}, {"indexed+fingers", true, true}} {
		t.Run(cfg.name, func(t *testing.T) {
			fresh := func() *MemTable {
				m := New(arena)
				if cfg.indexed {
					m = NewIndexed(arena)
				}
				if cfg.fingers {
					m.UseFingers(1)
				}
				return m
			}
			// key is a prefix byte, a random 8-byte token (the fingers'
			// field) and a suffix; round picks disjoint prefixes.
			key := func(rng *rand.Rand, prefix byte) []byte {
				k := binary.BigEndian.AppendUint64([]byte{prefix}, rng.Uint64())
				return append(k, byte('a'+rng.IntN(3)))
			}
			type add struct {
				key, value []byte
				kind       base.Kind
			}
			fill := func(m *MemTable, rng *rand.Rand, prefix byte, limit int) []add {
				var adds []add
				for seq := base.SeqNum(1); len(adds) < limit; seq++ {
					a := add{key: key(rng, prefix), kind: base.KindSet}
					if len(adds) > 0 && rng.IntN(4) == 0 {
						a.key = adds[rng.IntN(len(adds))].key // a newer version
					}
					if rng.IntN(8) == 0 {
						a.kind = base.KindDelete
					} else {
						a.value = bytes.Repeat([]byte{prefix}, rng.IntN(60))
					}
					err := m.Add(seq, a.kind, a.key, a.value)
					if errors.Is(err, ErrArenaFull) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					adds = append(adds, a)
				}
				return adds
			}
			for round := range 4 {
				rng := rand.New(rand.NewPCG(uint64(round), 7))
				m := fresh()
				old := fill(m, rng, 'o', 1<<30) // until the arena is full
				if cfg.indexed && round == 0 && !m.indexFull.Load() {
					t.Logf("index not full after %d entries", len(old))
				}
				m.Reset()
				if !m.Empty() || m.Len() != 0 || m.ApproximateSize() != headOffset+headSize {
					t.Fatalf("after Reset: Empty %v, Len %d, size %d", m.Empty(), m.Len(), m.ApproximateSize())
				}
				// The second fill: sometimes small, sometimes to the full arena.
				limit := []int{1, 50, 1000, 1 << 30}[round]
				adds := fill(m, rng, 'n', limit)
				// The same entries in a new memtable (tower heights are
				// random, so a new one may take a few more or fewer).
				want := New(4 * arena)
				for i, a := range adds {
					if err := want.Add(base.SeqNum(i+1), a.kind, a.key, a.value); err != nil {
						t.Fatal(err)
					}
				}
				if m.Len() != want.Len() {
					t.Fatalf("round %d: Len %d, a new memtable %d", round, m.Len(), want.Len())
				}
				it, wit := m.NewIter(), want.NewIter()
				n := 0
				for ok, wok := it.First(), wit.First(); ok || wok; ok, wok = it.Next(), wit.Next() {
					if ok != wok || !bytes.Equal(it.Key(), wit.Key()) || !bytes.Equal(it.Value(), wit.Value()) {
						t.Fatalf("round %d, entry %d: %v %s=%q, a new memtable %v %s=%q", round, n,
							ok, base.Format(it.Key()), it.Value(), wok, base.Format(wit.Key()), wit.Value())
					}
					n++
				}
				if n != len(adds) {
					t.Fatalf("round %d: iterated %d entries, added %d", round, n, len(adds))
				}
				for _, set := range [][]add{old, adds} {
					for _, a := range set {
						v, k, ok := m.Get(a.key, base.SeqNumMax)
						wv, wk, wok := want.Get(a.key, base.SeqNumMax)
						if ok != wok || k != wk || !bytes.Equal(v, wv) {
							t.Fatalf("round %d: Get(%x) = %q %v %v, a new memtable %q %v %v", round, a.key, v, k, ok, wv, wk, wok)
						}
					}
				}
				if cfg.fingers && len(adds) > 100 && m.fingerHits < len(adds)/2 {
					t.Fatalf("round %d: %d of %d entries placed from fingers after Reset", round, m.fingerHits, len(adds))
				}
			}
		})
	}
}
