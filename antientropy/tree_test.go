package antientropy

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
)

// model is the truth a tree summarises: token -> hash of the key stored
// there (tokens stand for keys: one key per token here).
type model map[uint64]uint64

// scan is a Rebuild's open: a snapshot of the model's partition p now.
func (m model) scan(p int, t *Trees) func() func(add func(token, hash uint64)) error {
	return func() func(add func(token, hash uint64)) error {
		first, last := t.PartitionRange(p)
		snap := model{}
		for tok, h := range m {
			if tok >= first && tok <= last {
				snap[tok] = h
			}
		}
		return func(add func(token, hash uint64)) error {
			for tok, h := range snap {
				add(tok, h)
			}
			return nil
		}
	}
}

func rebuildAll(t *testing.T, tr *Trees, m model) {
	t.Helper()
	for p := range tr.Partitions() {
		ok, err := tr.Rebuild(p, m.scan(p, tr))
		if err != nil || !ok {
			t.Fatalf("rebuild of partition %d: ok %v, err %v", p, ok, err)
		}
	}
}

// objectHash stands for replica.ObjectHash of version v of the key at
// token: a well-mixed 64-bit value, as the real one is.
func objectHash(token uint64, v int) uint64 {
	h := replica.ObjectHash([]byte(fmt.Sprint(token)), []byte(fmt.Sprint(v)))
	return h
}

func genPartitions(t *rapid.T) int {
	return 1 << rapid.IntRange(0, 6).Draw(t, "log2 partitions")
}

// Incremental updates, in any order and with failed commits, leave every
// trusted tree equal to one rebuilt from the data.
func TestIncrementalEqualsRebuild(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		q := genPartitions(rt)
		tr, err := NewTrees(q)
		if err != nil {
			rt.Fatal(err)
		}
		m := model{}
		// Some data before the build, some after.
		tokens := rapid.SliceOfNDistinct(rapid.Uint64(), 1, 60, rapid.ID[uint64]).Draw(rt, "tokens")
		for _, tok := range tokens[:len(tokens)/2] {
			m[tok] = objectHash(tok, rapid.IntRange(0, 3).Draw(rt, "version"))
		}
		for p := range q {
			if ok, err := tr.Rebuild(p, m.scan(p, tr)); !ok || err != nil {
				rt.Fatalf("build: %v %v", ok, err)
			}
		}
		failed := map[int]bool{}
		// A batch of changes announced together, finished in a random order.
		var inflight [][]replica.Change
		ops := rapid.IntRange(0, 80).Draw(rt, "ops")
		for range ops {
			tok := rapid.SampledFrom(tokens).Draw(rt, "token")
			var next uint64
			if !rapid.Bool().Draw(rt, "remove") {
				next = objectHash(tok, rapid.IntRange(0, 3).Draw(rt, "new version"))
			}
			ch := []replica.Change{{Token: tok, Old: m[tok], New: next}}
			if next == 0 {
				delete(m, tok)
			} else {
				m[tok] = next
			}
			tr.Changing(ch)
			inflight = append(inflight, ch)
			if rapid.Bool().Draw(rt, "finish some") {
				for len(inflight) > 0 {
					i := rapid.IntRange(0, len(inflight)-1).Draw(rt, "which")
					ok := rapid.IntRange(0, 9).Draw(rt, "commit fails") != 0
					if !ok {
						failed[tr.Partition(inflight[i][0].Token)] = true
					}
					tr.Changed(inflight[i], ok)
					inflight = slices.Delete(inflight, i, i+1)
				}
			}
		}
		for _, ch := range inflight {
			tr.Changed(ch, true)
		}
		want, _ := NewTrees(q)
		for p := range q {
			if ok, err := want.Rebuild(p, m.scan(p, want)); !ok || err != nil {
				rt.Fatalf("rebuild: %v %v", ok, err)
			}
			leaves, trusted := tr.LeafHashes(p)
			if failed[p] {
				if trusted {
					rt.Fatalf("partition %d saw a failed commit but is still trusted", p)
				}
				continue
			}
			if !trusted {
				rt.Fatalf("partition %d untrusted without a failed commit", p)
			}
			wantLeaves, _ := want.LeafHashes(p)
			if !slices.Equal(leaves, wantLeaves) {
				rt.Fatalf("partition %d: incremental leaves differ from a rebuild", p)
			}
			r1, _ := tr.Root(p)
			r2, _ := want.Root(p)
			if r1 != r2 {
				rt.Fatalf("partition %d: root %x, rebuilt %x", p, r1, r2)
			}
		}
	})
}

// Comparing two trees, then the keys of the leaves that differ, finds
// exactly the keys that differ.
func TestDiffFindsExactlyTheDifferingKeys(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		q := genPartitions(rt)
		a, b := model{}, model{}
		tokens := rapid.SliceOfNDistinct(rapid.Uint64(), 0, 200, rapid.ID[uint64]).Draw(rt, "tokens")
		for _, tok := range tokens {
			h := objectHash(tok, 0)
			switch rapid.IntRange(0, 9).Draw(rt, "where") {
			case 0:
				a[tok] = h
			case 1:
				b[tok] = h
			case 2:
				a[tok], b[tok] = h, objectHash(tok, rapid.IntRange(1, 3).Draw(rt, "other version"))
			default:
				a[tok], b[tok] = h, h
			}
		}
		ta, _ := NewTrees(q)
		tb, _ := NewTrees(q)
		for p := range q {
			ta.Rebuild(p, a.scan(p, ta))
			tb.Rebuild(p, b.scan(p, tb))
		}
		var found []uint64
		for p := range q {
			ra, _ := ta.Root(p)
			rb, _ := tb.Root(p)
			if ra == rb {
				continue
			}
			la, _ := ta.LeafHashes(p)
			lb, _ := tb.LeafHashes(p)
			for l := range Leaves {
				if la[l] == lb[l] {
					continue
				}
				first, last := ta.LeafRange(p, l)
				for _, tok := range tokens {
					if tok >= first && tok <= last && a[tok] != b[tok] {
						found = append(found, tok)
					}
				}
			}
		}
		var want []uint64
		for _, tok := range tokens {
			if a[tok] != b[tok] {
				want = append(want, tok)
			}
		}
		slices.Sort(found)
		slices.Sort(want)
		if !slices.Equal(found, want) {
			rt.Fatalf("found %d differing keys, want %d", len(found), len(want))
		}
	})
}

// A rebuild cannot start while a write is in flight in the partition; a
// write that begins and ends during its scan (of a snapshot taken before
// it) is folded in; a failed commit or a Distrust during the scan makes it
// install nothing.
func TestRebuildAroundWritesInFlight(t *testing.T) {
	tr, _ := NewTrees(4)
	m := model{}
	ch := []replica.Change{{Token: 1 << 62, New: 7}}
	tr.Changing(ch)
	if ok, _ := tr.Rebuild(1, m.scan(1, tr)); ok {
		t.Fatal("rebuild started with a write in flight")
	}
	m[1<<62] = 7
	tr.Changed(ch, true)

	during := func(p int, c []replica.Change, ok bool, also func()) func() func(add func(token, hash uint64)) error {
		return func() func(add func(token, hash uint64)) error {
			scan := m.scan(p, tr)() // the snapshot, before the change
			return func(add func(token, hash uint64)) error {
				tr.Changing(c)
				if ok {
					m[c[0].Token] = c[0].New
				}
				tr.Changed(c, ok)
				if also != nil {
					also()
				}
				return scan(add)
			}
		}
	}
	c2 := []replica.Change{{Token: 2 << 62, New: 9}}
	if ok, err := tr.Rebuild(2, during(2, c2, true, nil)); !ok || err != nil {
		t.Fatalf("a write during the scan kept the rebuild from installing: %v %v", ok, err)
	}
	if root, ok := tr.Root(2); !ok || root != 9 {
		t.Fatalf("root %d trusted %v: the write made during the scan was not folded in", root, ok)
	}
	c3 := []replica.Change{{Token: 3 << 62, New: 5}}
	if ok, _ := tr.Rebuild(3, during(3, c3, false, nil)); ok {
		t.Fatal("rebuild installed although a commit failed during its scan")
	}
	if ok, _ := tr.Rebuild(0, during(0, []replica.Change{{Token: 1, New: 4}}, true, func() { tr.Distrust(0) })); ok {
		t.Fatal("rebuild installed although the tree was distrusted during its scan")
	}
	rebuildAll(t, tr, m)
	if root, ok := tr.Root(1); !ok || root != 7 {
		t.Fatalf("root %d trusted %v, want 7 true", root, ok)
	}
}

// Leaves tile each partition, and partitions are the ring's.
func TestRangesMatchTheRing(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		q := 1 << rapid.IntRange(0, 12).Draw(rt, "log2 partitions")
		tr, err := NewTrees(q)
		if err != nil {
			rt.Fatal(err)
		}
		rg, err := ring.New(ring.Config{Partitions: q, Replicas: 1}, []ring.Member{{ID: "a", State: ring.StateNormal}})
		if err != nil {
			rt.Fatal(err)
		}
		tok := rapid.Uint64().Draw(rt, "token")
		p, l := tr.Partition(tok), tr.Leaf(tok)
		if p != rg.Partition(tok) {
			rt.Fatalf("partition %d, ring says %d", p, rg.Partition(tok))
		}
		first, last := tr.LeafRange(p, l)
		if tok < first || tok > last {
			rt.Fatalf("token %x outside its leaf [%x, %x]", tok, first, last)
		}
		pf, pl := tr.PartitionRange(p)
		rf, rl := rg.PartitionRange(p)
		if pf != rf || pl != rl {
			rt.Fatalf("partition range [%x,%x], ring [%x,%x]", pf, pl, rf, rl)
		}
		if l+1 < Leaves {
			next, _ := tr.LeafRange(p, l+1)
			if next != last+1 {
				rt.Fatalf("leaf %d ends at %x, next starts at %x", l, last, next)
			}
		}
	})
	if _, err := NewTrees(3); err == nil {
		t.Fatal("3 partitions accepted")
	}
}
