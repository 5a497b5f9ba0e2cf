package replica

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/version"
	"pgregory.net/rapid"
)

// genStates draws the states a key takes on three replicas over a random
// history (writes with and without a read context, blind writes,
// tombstones, replication that may deliver an old state), and returns every
// state any replica had, in order. The first is nil (the key absent).
func genStates(t *rapid.T) []*version.Object {
	nodes := []string{"n1", "n2", "n3"}
	states := []*version.Object{{}, {}, {}}
	snapshots := []*version.Object{nil}
	var contexts []version.Clock
	steps := rapid.IntRange(1, 30).Draw(t, "steps")
	for step := range steps {
		i := rapid.IntRange(0, len(nodes)-1).Draw(t, "replica")
		st := states[i]
		ts := int64(step)
		switch rapid.IntRange(0, 4).Draw(t, "op") {
		case 0: // a write with a context a client read, or none
			var ctx version.Clock
			if len(contexts) > 0 && rapid.Bool().Draw(t, "withContext") {
				ctx = contexts[rapid.IntRange(0, len(contexts)-1).Draw(t, "context")]
			}
			del := rapid.IntRange(0, 3).Draw(t, "delete") == 0
			var val []byte
			if !del {
				val = fmt.Appendf(nil, "w%d", step)
			}
			if _, err := st.Write(nodes[i], ctx, val, del, ts); err != nil {
				t.Fatal(err)
			}
		case 1: // a blind write (Redis SET)
			if _, err := st.WriteBlind(nodes[i], fmt.Appendf(nil, "b%d", step), false, ts); err != nil {
				t.Fatal(err)
			}
		case 2, 3: // replication, sometimes of an old state
			from := states[rapid.IntRange(0, len(nodes)-1).Draw(t, "from")]
			if len(snapshots) > 1 && rapid.Bool().Draw(t, "old") {
				from = snapshots[rapid.IntRange(1, len(snapshots)-1).Draw(t, "snapshot")]
			}
			states[i] = version.Merge(st, from)
		case 4: // a client reads here
			contexts = append(contexts, st.Context.Clone())
		}
		snapshots = append(snapshots, states[i].Clone())
	}
	return snapshots
}

// Whatever a replica holds and whatever it is sent, applying a batch stores
// exactly what merging the versions one by one builds (version.Merge), and a
// covering apply stores exactly the versions that descend what is held: the
// shortcut that decodes only the held state's context when a version
// supersedes it must not change a single byte.
func TestPropApplyStoresWhatMergeBuilds(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		states := genStates(t)
		draw := func(label string) *version.Object {
			return states[rapid.IntRange(0, len(states)-1).Draw(t, label)]
		}
		keys := [][]byte{[]byte("k0"), []byte("k1"), []byte("k2")}
		held := make([]*version.Object, len(keys))
		for k := range keys {
			held[k] = draw("held")
		}
		n := rapid.IntRange(1, 6).Draw(t, "batch")
		batchKeys := make([][]byte, n)
		incoming := make([]*version.Object, n)
		at := make([]int, n)
		for i := range n {
			at[i] = rapid.IntRange(0, len(keys)-1).Draw(t, "key")
			batchKeys[i], incoming[i] = keys[at[i]], draw("incoming")
		}
		var dbs []*storage.DB
		defer func() {
			for _, db := range dbs {
				db.Close()
			}
		}()
		open := func(name string) *Store {
			db, err := storage.Open("db", &storage.Options{FS: vfs.NewMem(), MemTableSize: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			dbs = append(dbs, db)
			s := New(db, name)
			for k, obj := range held {
				if obj != nil {
					if err := s.db.Set(EncodeKey(nil, keys[k]), obj.Encode(nil)); err != nil {
						t.Fatal(err)
					}
				}
			}
			return s
		}
		check := func(what string, s *Store, want []*version.Object) {
			for k, key := range keys {
				raw, err := s.db.Get(EncodeKey(nil, key))
				found := err == nil
				if err != nil && !errors.Is(err, storage.ErrNotFound) {
					t.Fatal(err)
				}
				var wantRaw []byte
				if want[k] != nil {
					wantRaw = want[k].Encode(nil)
				}
				if found != (want[k] != nil) || !bytes.Equal(raw, wantRaw) {
					t.Fatalf("%s %s: stored %x, want %v (%x)", what, key, raw, want[k], wantRaw)
				}
			}
		}

		// ApplyBatchMerged: every version merged in.
		want := append([]*version.Object(nil), held...)
		for i, in := range incoming {
			if want[at[i]] == nil && (in == nil || in.Empty()) {
				continue
			}
			want[at[i]] = version.Merge(want[at[i]], in)
		}
		merged, err := open("merge").ApplyBatchMerged(batchKeys, incoming)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range merged {
			if w := want[at[i]]; (m == nil) != (w == nil) || m != nil && !bytes.Equal(m.Encode(nil), w.Encode(nil)) {
				t.Fatalf("ApplyBatchMerged answered %v for %s, want %v", m, batchKeys[i], w)
			}
		}
		s := open("merge2")
		if err := s.ApplyBatch(batchKeys, incoming); err != nil {
			t.Fatal(err)
		}
		check("ApplyBatch", s, want)

		// ApplyCovering: a version is stored only if it descends what is
		// held by then.
		want = append(want[:0], held...)
		wantStored := make([]bool, n)
		for i, in := range incoming {
			cur := want[at[i]]
			if !in.Descends(cur) || cur == nil && in.Empty() {
				continue
			}
			want[at[i]], wantStored[i] = version.Merge(cur, in), true
		}
		s = open("covering")
		stored, heldBack, err := s.ApplyCovering(batchKeys, incoming)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if stored[i] != wantStored[i] {
				t.Fatalf("ApplyCovering stored[%d] = %v, want %v (incoming %v)", i, stored[i], wantStored[i], incoming[i])
			}
			if !stored[i] {
				var got, w []byte
				if heldBack[i] != nil {
					got = heldBack[i].Encode(nil)
				}
				if want[at[i]] != nil {
					w = want[at[i]].Encode(nil)
				}
				if !bytes.Equal(got, w) {
					t.Fatalf("ApplyCovering did not store version %d and answered %v as held, want %v", i, heldBack[i], want[at[i]])
				}
			}
		}
		check("ApplyCovering", s, want)
	})
}

// A version whose context descends the held state's may still carry a
// sibling the held state overwrote (no history of well-behaved replicas
// builds one, but a peer may send it): the merge drops that sibling, so the
// version does not supersede the held state and must not be stored as it
// came.
func TestApplyDropsASiblingTheHeldStateOverwrote(t *testing.T) {
	held := &version.Object{
		Context:  version.Clock{"a": 2},
		Siblings: []version.Sibling{{Dot: version.Dot{Node: "a", Counter: 2}, Value: []byte("y"), Timestamp: 2}},
	}
	in := &version.Object{
		Context: version.Clock{"a": 2, "b": 1},
		Siblings: []version.Sibling{
			{Dot: version.Dot{Node: "a", Counter: 1}, Value: []byte("x"), Timestamp: 1},
			{Dot: version.Dot{Node: "b", Counter: 1}, Value: []byte("z"), Timestamp: 3},
		},
	}
	want := version.Merge(held, in)
	if len(want.Siblings) != 1 || string(want.Siblings[0].Value) != "z" {
		t.Fatalf("the merge keeps %v, want only z", want)
	}
	for _, covering := range []bool{false, true} {
		s := openStore(t, "n3")
		if err := s.db.Set(EncodeKey(nil, []byte("k")), held.Encode(nil)); err != nil {
			t.Fatal(err)
		}
		var err error
		if covering {
			var stored []bool
			stored, _, err = s.ApplyCovering([][]byte{[]byte("k")}, []*version.Object{in})
			if err == nil && stored[0] {
				t.Fatal("ApplyCovering stored a version that does not descend the held state")
			}
			want = held
		} else {
			err = s.ApplyBatch([][]byte{[]byte("k")}, []*version.Object{in})
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Get([]byte("k"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Encode(nil), want.Encode(nil)) {
			t.Fatalf("covering %v: stored %v, want %v", covering, got, want)
		}
	}
}

// A version with more than version.MaxSiblings siblings is capped by the
// merge even where nothing is held: it is stored as version.Merge builds
// it, not as it came.
func TestApplyCapsSiblingsAsMergeDoes(t *testing.T) {
	in := &version.Object{Context: version.Clock{"a": version.MaxSiblings + 1}}
	for c := uint64(1); c <= version.MaxSiblings+1; c++ {
		in.Siblings = append(in.Siblings, version.Sibling{Dot: version.Dot{Node: "a", Counter: c}, Value: []byte{byte(c)}, Timestamp: int64(c)})
	}
	want := version.Merge(nil, in)
	if len(want.Siblings) != version.MaxSiblings {
		t.Fatalf("the merge keeps %d siblings, want %d", len(want.Siblings), version.MaxSiblings)
	}
	s := openStore(t, "n2")
	if err := s.ApplyBatch([][]byte{[]byte("k")}, []*version.Object{in}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get([]byte("k"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Encode(nil), want.Encode(nil)) {
		t.Fatalf("stored %d siblings, want the merge's %d", len(got.Siblings), len(want.Siblings))
	}
}
