package memtable

import (
	"errors"
	"fmt"
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
