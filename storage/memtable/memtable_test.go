package memtable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/storage/base"
)

type entry struct {
	ikey  []byte
	value []byte
}

// model is the reference: entries kept sorted by base.Compare.
type model []entry

func (md model) seekGE(ikey []byte) int {
	return sort.Search(len(md), func(i int) bool { return base.Compare(md[i].ikey, ikey) >= 0 })
}

func (md model) get(userKey []byte, seq base.SeqNum) (entry, bool) {
	i := md.seekGE(base.MakeSeekKey(nil, userKey, seq))
	if i < len(md) && bytes.Equal(base.UserKey(md[i].ikey), userKey) {
		return md[i], true
	}
	return entry{}, false
}

// buildRandom fills a memtable and the model with n entries over a small key
// space so that most user keys have several versions.
func buildRandom(t *testing.T, rng *rand.Rand, n, keySpace int) (*MemTable, model, base.SeqNum) {
	t.Helper()
	m := New(8 << 20)
	seqs := rng.Perm(n) // unique seqnums, inserted in random order
	var md model
	for i := 0; i < n; i++ {
		uk := []byte(fmt.Sprintf("k%0*d", rng.IntN(3)+1, rng.IntN(keySpace)))
		if rng.IntN(20) == 0 {
			uk = []byte{} // empty user keys are legal
		}
		seq := base.SeqNum(seqs[i] + 1)
		kind := base.KindSet
		var val []byte
		if rng.IntN(4) == 0 {
			kind = base.KindDelete
		} else {
			val = []byte(fmt.Sprintf("v%d-%s", seq, bytes.Repeat([]byte("x"), rng.IntN(40))))
		}
		if err := m.Add(seq, kind, uk, val); err != nil {
			t.Fatalf("Add(%q, %d): %v", uk, seq, err)
		}
		md = append(md, entry{base.MakeInternalKey(nil, uk, seq, kind), val})
	}
	slices.SortFunc(md, func(a, b entry) int { return base.Compare(a.ikey, b.ikey) })
	return m, md, base.SeqNum(n)
}

func TestModel(t *testing.T) {
	for round := 0; round < 5; round++ {
		rng := rand.New(rand.NewPCG(uint64(round), 42))
		m, md, maxSeq := buildRandom(t, rng, 3000, 200+round*300)

		if m.Len() != len(md) || m.Empty() {
			t.Fatalf("Len = %d, Empty = %v, want %d", m.Len(), m.Empty(), len(md))
		}

		// Full iteration matches the sorted model.
		it := m.NewIter()
		i := 0
		for ok := it.First(); ok; ok = it.Next() {
			if i >= len(md) {
				t.Fatalf("iterator has more than %d entries", len(md))
			}
			if !bytes.Equal(it.Key(), md[i].ikey) || !bytes.Equal(it.Value(), md[i].value) {
				t.Fatalf("entry %d: got %s=%q, want %s=%q", i,
					base.Format(it.Key()), it.Value(), base.Format(md[i].ikey), md[i].value)
			}
			i++
		}
		if i != len(md) || it.Valid() {
			t.Fatalf("iterated %d entries (valid=%v), want %d", i, it.Valid(), len(md))
		}
		if err := it.Close(); err != nil {
			t.Fatal(err)
		}

		// Get at random snapshots, for present and absent keys.
		for q := 0; q < 5000; q++ {
			var uk []byte
			if q%2 == 0 {
				uk = base.UserKey(md[rng.IntN(len(md))].ikey)
			} else {
				uk = []byte(fmt.Sprintf("k%0*d", rng.IntN(4)+1, rng.IntN(2000)))
			}
			snap := base.SeqNum(rng.IntN(int(maxSeq) + 2))
			if q%97 == 0 {
				snap = base.SeqNumMax
			}
			want, wok := md.get(uk, snap)
			val, kind, ok := m.Get(uk, snap)
			if ok != wok {
				t.Fatalf("Get(%q, %d): found=%v, want %v", uk, snap, ok, wok)
			}
			if ok && (kind != base.KindOf(want.ikey) || !bytes.Equal(val, want.value)) {
				t.Fatalf("Get(%q, %d) = %s %q, want %s", uk, snap, kind, val, base.Format(want.ikey))
			}
		}
	}
}

func TestSeekGE(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	m, md, maxSeq := buildRandom(t, rng, 2000, 300)
	it := m.NewIter()
	defer it.Close()
	for q := 0; q < 5000; q++ {
		var seek []byte
		switch q % 3 {
		case 0: // exactly an existing key
			seek = slices.Clone(md[rng.IntN(len(md))].ikey)
		case 1: // existing user key, random snapshot
			seek = base.MakeSeekKey(nil, base.UserKey(md[rng.IntN(len(md))].ikey), base.SeqNum(rng.IntN(int(maxSeq)+2)))
		default: // arbitrary key, possibly past the end
			seek = base.MakeInternalKey(nil, []byte(fmt.Sprintf("k%0*d~", rng.IntN(4)+1, rng.IntN(400))),
				base.SeqNum(rng.IntN(int(maxSeq)+2)), base.Kind(rng.IntN(2)))
		}
		i := md.seekGE(seek)
		ok := it.SeekGE(seek)
		if ok != (i < len(md)) || ok != it.Valid() {
			t.Fatalf("SeekGE(%s) = %v, want %v", base.Format(seek), ok, i < len(md))
		}
		// Check the seek position and a few following steps.
		for step := 0; step < 3 && ok; step++ {
			if !bytes.Equal(it.Key(), md[i].ikey) {
				t.Fatalf("SeekGE(%s)+%d at %s, want %s", base.Format(seek), step,
					base.Format(it.Key()), base.Format(md[i].ikey))
			}
			i++
			ok = it.Next()
			if ok != (i < len(md)) {
				t.Fatalf("Next after SeekGE(%s)+%d = %v, want %v", base.Format(seek), step, ok, i < len(md))
			}
		}
	}
	// Boundaries: before everything, after everything.
	if !it.SeekGE(base.MakeSeekKey(nil, nil, base.SeqNumMax)) || !bytes.Equal(it.Key(), md[0].ikey) {
		t.Fatal("SeekGE(min) not at first entry")
	}
	if it.SeekGE(base.MakeInternalKey(nil, []byte{0xff}, 0, base.KindDelete)) || it.Valid() || it.Key() != nil {
		t.Fatal("SeekGE(past end) is valid")
	}
	if it.Next() {
		t.Fatal("Next on exhausted iterator returned true")
	}
	if it.Error() != nil {
		t.Fatal(it.Error())
	}
	// A malformed seek key is an error, not a panic.
	if it.SeekGE([]byte("abc")) || it.Error() == nil || it.Close() == nil {
		t.Fatal("short seek key not reported")
	}
}

func TestEmpty(t *testing.T) {
	m := New(0)
	if !m.Empty() || m.Len() != 0 {
		t.Fatal("new memtable not empty")
	}
	if _, _, ok := m.Get([]byte("a"), base.SeqNumMax); ok {
		t.Fatal("Get on empty memtable found something")
	}
	it := m.NewIter()
	if it.First() || it.SeekGE(base.MakeSeekKey(nil, nil, 1)) || it.Valid() {
		t.Fatal("iterator over empty memtable is valid")
	}
}

func TestArenaFull(t *testing.T) {
	const arena = 64 << 10
	m := New(arena)
	val := bytes.Repeat([]byte("v"), 100)
	var added int
	for i := 0; ; i++ {
		key := []byte(fmt.Sprintf("key%06d", i))
		before := m.ApproximateSize()
		err := m.Add(base.SeqNum(i+1), base.KindSet, key, val)
		if errors.Is(err, ErrArenaFull) {
			if m.ApproximateSize() != before || m.Len() != added {
				t.Fatal("failed Add changed the memtable")
			}
			if before+m.EntrySize(len(key), len(val)) <= arena {
				t.Fatalf("ErrArenaFull with %d of %d used, though EntrySize = %d",
					before, arena, m.EntrySize(len(key), len(val)))
			}
			if _, _, ok := m.Get(key, base.SeqNumMax); ok {
				t.Fatal("entry rejected with ErrArenaFull is visible")
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if d := m.ApproximateSize() - before; d <= 0 || d > m.EntrySize(len(key), len(val)) {
			t.Fatalf("Add used %d bytes, EntrySize bound %d", d, m.EntrySize(len(key), len(val)))
		}
		if m.ApproximateSize() > arena {
			t.Fatalf("ApproximateSize %d > arena %d", m.ApproximateSize(), arena)
		}
		added++
	}
	if added < 300 {
		t.Fatalf("only %d entries fit in %d bytes", added, arena)
	}
	// Everything accepted before the failure is intact.
	for i := 0; i < added; i++ {
		key := []byte(fmt.Sprintf("key%06d", i))
		if v, k, ok := m.Get(key, base.SeqNumMax); !ok || k != base.KindSet || !bytes.Equal(v, val) {
			t.Fatalf("entry %d lost after arena filled", i)
		}
	}
	n := 0
	it := m.NewIter()
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if n != added {
		t.Fatalf("iterated %d entries, want %d", n, added)
	}
}

func TestEntryTooLarge(t *testing.T) {
	m := New(4096)
	big := make([]byte, 8192)
	if err := m.Add(1, base.KindSet, []byte("k"), big); !errors.Is(err, ErrEntryTooLarge) || errors.Is(err, ErrArenaFull) {
		t.Fatalf("Add(too large) = %v, want ErrEntryTooLarge", err)
	}
	if !m.Empty() {
		t.Fatal("rejected entry was added")
	}
	// A dedicated memtable sized with ArenaSizeFor always accepts it, even at
	// the maximum tower height; try many times since height is random.
	for i := 0; i < 200; i++ {
		d := New(ArenaSizeFor(1, len(big)))
		if err := d.Add(1, base.KindSet, []byte("k"), big); err != nil {
			t.Fatalf("dedicated memtable: %v", err)
		}
		if v, _, ok := d.Get([]byte("k"), 1); !ok || len(v) != len(big) {
			t.Fatal("dedicated memtable lost the entry")
		}
	}
	// An entry exactly at the limit is accepted by an empty memtable.
	m2 := New(4096)
	maxVal := 4096 - minArenaSize - m2.EntrySize(1, 0)
	if err := m2.Add(1, base.KindSet, []byte("k"), make([]byte, maxVal)); err != nil {
		t.Fatalf("entry at the limit: %v", err)
	}
	if err := New(4096).Add(1, base.KindSet, []byte("k"), make([]byte, maxVal+1)); !errors.Is(err, ErrEntryTooLarge) {
		t.Fatalf("entry one past the limit: %v", err)
	}
}

func TestDuplicate(t *testing.T) {
	m := New(1 << 16)
	if err := m.Add(5, base.KindSet, []byte("a"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	size := m.ApproximateSize()
	if err := m.Add(5, base.KindSet, []byte("a"), []byte("2")); !errors.Is(err, ErrDuplicateKey) {
		t.Fatalf("duplicate Add = %v", err)
	}
	if m.Len() != 1 || m.ApproximateSize() != size {
		t.Fatal("duplicate Add changed the memtable")
	}
	if v, _, _ := m.Get([]byte("a"), 5); string(v) != "1" {
		t.Fatalf("Get = %q, want the first value", v)
	}
	// Same user key and seq but another kind is a distinct internal key.
	if err := m.Add(5, base.KindDelete, []byte("a"), nil); err != nil {
		t.Fatal(err)
	}
	if err := m.Add(base.SeqNumMax+1, base.KindSet, []byte("a"), nil); err == nil {
		t.Fatal("seqnum beyond SeqNumMax accepted")
	}
}

// TestReturnedSlicesCapped checks that appending to a returned key or value
// cannot scribble over the neighbouring arena bytes.
func TestReturnedSlicesCapped(t *testing.T) {
	m := New(1 << 16)
	m.Add(1, base.KindSet, []byte("a"), []byte("1"))
	m.Add(2, base.KindSet, []byte("b"), []byte("2"))
	v, _, _ := m.Get([]byte("a"), 1)
	_ = append(v, 'X')
	it := m.NewIter()
	it.First()
	_ = append(it.Key(), 'Y')
	if v, _, _ := m.Get([]byte("b"), 2); string(v) != "2" {
		t.Fatal("append to returned slice corrupted the arena")
	}
	it.First()
	if base.Format(it.Key()) != `"a"#1,SET` || string(it.Value()) != "1" {
		t.Fatal("append to returned slice corrupted the arena")
	}
}

func TestHeightDistribution(t *testing.T) {
	m := New(0)
	var counts [maxHeight + 1]int
	const n = 1 << 20
	for i := 0; i < n; i++ {
		counts[m.randomHeight()]++
	}
	// Roughly 3/4 at height 1, 3/16 at height 2.
	if f := float64(counts[1]) / n; f < 0.74 || f > 0.76 {
		t.Fatalf("height 1 fraction %.3f", f)
	}
	if f := float64(counts[2]) / n; f < 0.18 || f > 0.195 {
		t.Fatalf("height 2 fraction %.3f", f)
	}
}

// valueFor derives a value from a key so readers can check they never see a
// node whose value does not belong to its key (a half-written node).
func valueFor(dst, key []byte) []byte {
	dst = dst[:0]
	for i := 0; i < 4; i++ {
		dst = append(dst, key...)
	}
	return dst
}

func TestConcurrentReadersOneWriter(t *testing.T) {
	t.Run("descent", func(t *testing.T) { testConcurrentReadersOneWriter(t, false) })
	t.Run("fingers", func(t *testing.T) { testConcurrentReadersOneWriter(t, true) })
}

func testConcurrentReadersOneWriter(t *testing.T, fingers bool) {
	n := 20000
	if testing.Short() {
		n = 5000
	}
	keys := make([][]byte, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		keys[i] = binary.BigEndian.AppendUint64(nil, rng.Uint64())
	}
	m := New(n * 200)
	if fingers {
		m.UseFingers(0)
	}
	var published atomic.Int64 // keys[:published] are all in the memtable
	var done atomic.Bool
	var reads atomic.Int64
	deadline := time.Now().Add(2 * time.Second)
	// The readers must run while the writer inserts, but on a busy machine
	// they may not be scheduled at all during its few tens of milliseconds.
	// So at a few checkpoints the writer waits (within waitLimit overall)
	// until the readers have read more since the previous one.
	const checkpoints = 4
	waitLimit := time.Now().Add(10 * time.Second)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the single writer
		defer wg.Done()
		defer done.Store(true)
		var buf []byte
		var readsAt int64
		for i, k := range keys {
			if i > 0 && i%(len(keys)/checkpoints) == 0 {
				for reads.Load() == readsAt && time.Now().Before(waitLimit) {
					time.Sleep(100 * time.Microsecond)
				}
				readsAt = reads.Load()
			}
			if time.Now().After(deadline) {
				return
			}
			buf = valueFor(buf, k)
			if err := m.Add(base.SeqNum(i+1), base.KindSet, k, buf); err != nil {
				t.Error(err)
				return
			}
			published.Store(int64(i + 1))
		}
	}()

	for r := 0; r < 3; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 99))
			var want []byte
			it := m.NewIter()
			defer it.Close()
			for !done.Load() {
				p := int(published.Load())
				// Point reads of entries known to be published.
				for q := 0; q < 50 && p > 0; q++ {
					i := rng.IntN(p)
					v, kind, ok := m.Get(keys[i], base.SeqNumMax)
					if !ok || kind != base.KindSet || !bytes.Equal(v, valueFor(want, keys[i])) {
						t.Errorf("Get(published key %d) = %q, %v, %v", i, v, kind, ok)
						return
					}
					// At a snapshot before its seqnum it is invisible.
					if _, _, ok := m.Get(keys[i], base.SeqNum(i)); ok {
						t.Errorf("Get(key %d) visible before its seqnum", i)
						return
					}
					reads.Add(1)
				}
				// Ordered scan from a random point; must see at least the
				// entries published before it began, all well-formed.
				count := 0
				var prev []byte
				var ok bool
				if r == 0 {
					ok = it.First()
				} else {
					ok = it.SeekGE(base.MakeSeekKey(nil, binary.BigEndian.AppendUint64(nil, rng.Uint64()), base.SeqNumMax))
				}
				for ; ok; ok = it.Next() {
					k := it.Key()
					if prev != nil && base.Compare(prev, k) >= 0 {
						t.Errorf("iterator out of order: %s then %s", base.Format(prev), base.Format(k))
						return
					}
					if !bytes.Equal(it.Value(), valueFor(want, base.UserKey(k))) {
						t.Errorf("half-written node at %s", base.Format(k))
						return
					}
					prev = k // stays valid: arena slices live as long as m
					count++
				}
				if r == 0 && count < p {
					t.Errorf("full scan saw %d entries, %d were published", count, p)
					return
				}
			}
		}(r)
	}
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("readers did no work")
	}
	t.Logf("writer inserted %d entries, readers did %d point reads", published.Load(), reads.Load())
}

func TestAllocs(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation may allocate")
	}
	const runs = 2000
	keys := make([][]byte, runs+1)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range keys {
		keys[i] = binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, rng.Uint64()), rng.Uint64())
	}
	val := make([]byte, 100)
	m := New(1 << 20)
	i := 0
	if a := testing.AllocsPerRun(runs, func() {
		if err := m.Add(base.SeqNum(i+1), base.KindSet, keys[i], val); err != nil {
			t.Fatal(err)
		}
		i++
	}); a != 0 {
		t.Fatalf("Add allocates %.2f times per call", a)
	}
	if a := testing.AllocsPerRun(runs, func() {
		m.Get(keys[rng.IntN(runs)], base.SeqNumMax)
	}); a != 0 {
		t.Fatalf("Get allocates %.2f times per call", a)
	}
	it := m.NewIter()
	seek := base.MakeSeekKey(nil, keys[7], base.SeqNumMax)
	if a := testing.AllocsPerRun(100, func() {
		it.SeekGE(seek)
		for ok := it.First(); ok; ok = it.Next() {
			_ = it.Key()
			_ = it.Value()
		}
	}); a != 0 {
		t.Fatalf("iteration allocates %.2f times per pass", a)
	}
}
