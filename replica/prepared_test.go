package replica

import (
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/version"
)

// A prepared write holds its key: another write of the key on this store
// waits until it is committed, then builds on it (a later dot that
// supersedes it), and one dropped leaves nothing behind (the next write
// mints the dot the dropped one had, which no one ever saw).
func TestPreparedWriteHoldsItsKey(t *testing.T) {
	s := openStore(t, "a")
	key := []byte("k")
	p, err := s.Prepare([]Write{{Key: key, Value: []byte("first")}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Objects()[0].Siblings[0].Dot.Counter; got != 1 {
		t.Fatalf("first prepared dot counter %d, want 1", got)
	}
	if obj, _ := s.Get(key); obj != nil {
		t.Fatalf("prepared write visible before commit: %v", obj)
	}
	second := make(chan *version.Object, 1)
	go func() {
		obj, err := s.Coordinate(key, nil, []byte("second"), false, 2)
		if err != nil {
			t.Error(err)
		}
		second <- obj
	}()
	select {
	case obj := <-second:
		t.Fatalf("a write of the key went through while it was prepared: %v", obj)
	case <-time.After(50 * time.Millisecond):
	}
	if err := p.Commit(nil); err != nil {
		t.Fatal(err)
	}
	obj := <-second
	if fmt.Sprint(values(obj)) != "[second]" || obj.Context["a"] != 2 {
		t.Fatalf("after the prepared write's commit the next write is %v, want [second] at counter 2", obj)
	}
	p.Drop() // a no-op once committed
	if err := p.Commit(nil); err == nil {
		t.Fatal("a second Commit succeeded")
	}

	// Dropped: nothing stored, the key free again.
	other := []byte("dropped")
	p, err = s.Prepare([]Write{{Key: other, Value: []byte("never")}}, 3)
	if err != nil {
		t.Fatal(err)
	}
	p.Drop()
	if obj, _ := s.Get(other); obj != nil {
		t.Fatalf("dropped write stored: %v", obj)
	}
	obj, err = s.Coordinate(other, nil, []byte("later"), false, 4)
	if err != nil || fmt.Sprint(values(obj)) != "[later]" {
		t.Fatalf("write after a drop: %v, %v", obj, err)
	}
}

// Commit with keep stores only the writes kept, in one batch.
func TestPreparedCommitKeepsASubset(t *testing.T) {
	s := openStore(t, "a")
	p, err := s.Prepare([]Write{{Key: []byte("x"), Value: []byte("1")}, {Key: []byte("y"), Value: []byte("2")}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Commit([]bool{false, true}); err != nil {
		t.Fatal(err)
	}
	if obj, _ := s.Get([]byte("x")); obj != nil {
		t.Fatalf("x was not kept but is stored: %v", obj)
	}
	if obj, _ := s.Get([]byte("y")); obj == nil || fmt.Sprint(values(obj)) != "[2]" {
		t.Fatalf("y was kept, stored %v", obj)
	}
}

// ApplyCovering stores a version only where it descends the replica's
// state: one concurrent with it (a write this version's coordinator did
// not see) is not stored and the state is untouched; a key locked by a
// prepared write is not waited for.
func TestApplyCovering(t *testing.T) {
	s := openStore(t, "b")
	seen, concurrent, busy, fresh := []byte("seen"), []byte("concurrent"), []byte("busy"), []byte("fresh")
	old, err := s.Coordinate(seen, nil, []byte("old"), false, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Coordinate(concurrent, nil, []byte("theirs"), false, 1); err != nil {
		t.Fatal(err)
	}
	// Versions coordinated by "a": over what "b" holds for seen, blind on
	// nothing for the others.
	covering := old.Clone()
	if _, err := covering.WriteBlind("a", []byte("new"), false, 2); err != nil {
		t.Fatal(err)
	}
	blind := func(v string) *version.Object {
		o := &version.Object{}
		if _, err := o.WriteBlind("a", []byte(v), false, 2); err != nil {
			t.Fatal(err)
		}
		return o
	}
	p, err := s.Prepare([]Write{{Key: busy, Value: []byte("mine")}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Drop()
	done := make(chan struct{})
	var stored []bool
	var held []*version.Object // what it holds, per version not stored
	go func() {
		defer close(done)
		stored, held, err = s.ApplyCovering([][]byte{seen, concurrent, busy, fresh},
			[]*version.Object{covering, blind("lost"), blind("waits"), blind("first")})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ApplyCovering waited for a key held by a prepared write")
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(stored); got != "[true false false true]" {
		t.Fatalf("stored %s, want [true false false true] (seen, concurrent, busy, fresh)", got)
	}
	// What it holds, for each version it did not store (nil: busy).
	if held[0] != nil || held[3] != nil || held[2] != nil || held[1] == nil || fmt.Sprint(values(held[1])) != "[theirs]" {
		t.Fatalf("held states %v, want only the concurrent key's [theirs]", held)
	}
	for key, want := range map[string]string{"seen": "[new]", "concurrent": "[theirs]", "fresh": "[first]"} {
		obj, err := s.Get([]byte(key))
		if err != nil || obj == nil || fmt.Sprint(values(obj)) != want {
			t.Fatalf("%s: %v %v, want %s", key, obj, err, want)
		}
	}
	if obj, _ := s.Get(busy); obj != nil {
		t.Fatalf("busy key stored: %v", obj)
	}
}

// recordingObserver keeps every change it is told of.
type recordingObserver struct{ changes []Change }

func (r *recordingObserver) Changing(changes []Change) {}
func (r *recordingObserver) Changed(changes []Change, ok bool) {
	r.changes = append(r.changes, changes...)
}

// A blind write reads only the stored context (not the siblings): its
// result must be what a write carrying that whole context gives, which
// supersedes every sibling, and the Observer must hear the stored state's
// hash as the old one.
func TestBlindWriteSupersedesWhatAWriteWithTheStoredContextWould(t *testing.T) {
	var stored *version.Object
	for _, actor := range []string{"x", "y"} { // two concurrent siblings
		var o version.Object
		if _, err := o.Write(actor, nil, []byte("from "+actor), false, 5); err != nil {
			t.Fatal(err)
		}
		stored = version.Merge(stored, &o)
	}
	key := []byte("k")
	blind, full := openStore(t, "a"), openStore(t, "a")
	var seen recordingObserver
	blind.SetObserver(&seen)
	for _, s := range []*Store{blind, full} {
		if _, _, err := s.Apply(key, stored); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := blind.db.Get(EncodeKey(nil, key))
	if err != nil {
		t.Fatal(err)
	}
	seen.changes = nil
	// write stores writes on s as one batch (Prepare, then Commit) and
	// returns key's stored state.
	write := func(s *Store, ts int64, writes ...Write) *version.Object {
		t.Helper()
		_, errs, err := s.CoordinateBatch(writes, ts, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		obj, err := s.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}

	got := write(blind, 9, Write{Key: key, Value: []byte("new")})
	want := write(full, 9, Write{Key: key, Value: []byte("new"), Ctx: stored.Context.Clone()})
	if !got.Equal(want) || fmt.Sprint(values(got)) != "[new]" {
		t.Fatalf("blind write stored %v; a write with the stored context stored %v", got, want)
	}
	if len(seen.changes) != 1 || seen.changes[0].Old != ObjectHash(key, raw) {
		t.Fatalf("observer heard %+v; want one change from the stored state's hash %d", seen.changes, ObjectHash(key, raw))
	}

	// A second blind write of the key in the same batch builds on the first.
	got = write(blind, 10, Write{Key: key, Value: []byte("one")}, Write{Key: key, Value: []byte("two")})
	if fmt.Sprint(values(got)) != "[two]" || got.Context["a"] != 3 || got.Context["x"] != 1 || got.Context["y"] != 1 {
		t.Fatalf("after two blind writes in one batch: %v, want [two] at a:3 with x:1 y:1 kept in the context", got)
	}
}
