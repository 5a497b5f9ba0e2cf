package memtable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ringkv/ringkv/storage/base"
)

// The point-lookup index must agree with the skiplist, also once it is full
// and new keys are only in the skiplist, and for snapshots older than a
// key's newest entry.
func TestIndexAgreesWithSkiplist(t *testing.T) {
	m := NewIndexed(64 << 10)
	type entry struct {
		seq base.SeqNum
		val string
	}
	hist := map[string][]entry{}
	seq := base.SeqNum(1)
	for i := 0; ; i++ {
		k := fmt.Sprintf("k%d", i%1000) // rewrite keys so the index replaces slots
		v := fmt.Sprintf("%d", i%10)
		err := m.Add(seq, base.KindSet, []byte(k), []byte(v))
		if errors.Is(err, ErrArenaFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		hist[k] = append(hist[k], entry{seq, v})
		seq++
	}
	if !m.indexFull.Load() {
		t.Fatalf("test did not fill the index (%d of %d slots)", m.indexed, len(m.index))
	}
	for k, es := range hist {
		for _, snap := range []base.SeqNum{base.SeqNumMax, es[0].seq, es[len(es)-1].seq - 1, 0} {
			var want *entry
			for i := range es {
				if es[i].seq <= snap {
					want = &es[i]
				}
			}
			v, kind, found := m.Get([]byte(k), snap)
			if (want != nil) != found || (found && (string(v) != want.val || kind != base.KindSet)) {
				t.Fatalf("Get(%q, %d) = %q %v %v, want %+v", k, snap, v, kind, found, want)
			}
		}
	}
	if _, _, found := m.Get([]byte("absent"), base.SeqNumMax); found {
		t.Fatal("found a key never added")
	}
}

// The filter must let through every key added (whatever the index's fill)
// and stop most keys never added, so that their lookups skip the index.
func TestFilterStopsMostAbsentKeys(t *testing.T) {
	m := NewIndexed(8 << 20)
	rng := rand.New(rand.NewPCG(7, 7))
	val := make([]byte, 150)
	var keys [][]byte
	for m.ApproximateSize() < 6<<20 {
		k := binary.BigEndian.AppendUint64(nil, rng.Uint64())
		if err := m.Add(base.SeqNum(len(keys)+1), base.KindSet, k, val); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	passes := func(k []byte) bool {
		w, mask := m.filterBits(m.keyHash(k))
		return m.filter[w].Load()&mask == mask
	}
	for _, k := range keys {
		if !passes(k) {
			t.Fatalf("the filter stops key %x, which was added", k)
		}
	}
	const probes = 100000
	through := 0
	for range probes {
		if passes(binary.BigEndian.AppendUint64(nil, rng.Uint64())) {
			through++
		}
	}
	// Four filter bits per index slot: at this fill about 1% of absent
	// keys pass.
	if rate := float64(through) / probes; rate > 0.03 {
		t.Fatalf("%.1f%% of absent keys pass the filter (%d keys in %d slots, %d filter words), want under 3%%",
			100*rate, len(keys), len(m.index), len(m.filter))
	}
}

// Readers running beside the writer must find every key whose Add has
// returned, through the filter and the index, and never a key not added.
func TestIndexedConcurrentReadersFindEveryAddedKey(t *testing.T) {
	n := 50000
	if testing.Short() {
		n = 10000
	}
	keys := make([][]byte, n)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range keys {
		keys[i] = binary.BigEndian.AppendUint64(nil, rng.Uint64()|1) // odd: absent probes are even
	}
	m := NewIndexed(n * 80)
	var added atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rr := rand.New(rand.NewPCG(uint64(r), 9))
			for added.Load() < int64(n) {
				if k := added.Load(); k > 0 {
					i := rr.IntN(int(k))
					if _, _, ok := m.Get(keys[i], base.SeqNumMax); !ok {
						errs <- fmt.Errorf("key %d of %d added not found", i, k)
						return
					}
				}
				absent := binary.BigEndian.AppendUint64(nil, rr.Uint64()&^1)
				if _, _, ok := m.Get(absent, base.SeqNumMax); ok {
					errs <- fmt.Errorf("found %x, never added", absent)
					return
				}
			}
		}()
	}
	for i, k := range keys {
		if err := m.Add(base.SeqNum(i+1), base.KindSet, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
		added.Store(int64(i + 1))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
