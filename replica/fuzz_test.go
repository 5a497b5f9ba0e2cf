package replica

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/version"
)

// FuzzApply feeds arbitrary bytes, as a replicate message would carry
// them, to a replica: whatever decodes is merged with Apply and ApplyBatch,
// then writes of the same key (blind, and with the incoming object's
// context) must each succeed or fail with a documented error, never panic
// or hang (a panic under a key lock used to lock the key forever), and the
// store must stay consistent: the key's stored object decodes, is valid,
// descends the incoming object and holds what each successful write
// returned.
func FuzzApply(f *testing.F) {
	actor := version.Actor("n1", 5)
	var a, b version.Object
	a.WriteBlind(actor, []byte("mine"), false, 1)
	b.WriteBlind(version.Actor("n2", 7), []byte("theirs"), false, 2)
	b.WriteBlind("n3", nil, true, 3)
	f.Add(version.Merge(&a, &b).Encode(nil))
	f.Add((*version.Object)(nil).Encode(nil))
	f.Add(maxCounterObject())
	var full version.Object
	full.Context = version.Clock{actor: version.MaxCounter}
	full.Siblings = []version.Sibling{{Dot: version.Dot{Node: actor, Counter: version.MaxCounter}, Value: []byte("x")}}
	f.Add(full.Encode(nil))

	db, err := storage.Open("db", &storage.Options{FS: vfs.NewMem()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	s := New(db, actor)
	run := 0
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := version.DecodeObject(data)
		if err != nil {
			return
		}
		run++
		key := fmt.Appendf(nil, "k%d", run)
		done := make(chan struct{})
		go func() {
			defer close(done)
			checkApply(t, s, key, in)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Fatalf("replica hangs on %v", in)
		}
	})
}

func checkApply(t *testing.T, s *Store, key []byte, in *version.Object) {
	if _, err := s.Coordinate(key, nil, []byte("before"), false, 0); err != nil {
		t.Errorf("first write: %v", err)
		return
	}
	if _, _, err := s.Apply(key, in); err != nil {
		t.Errorf("Apply: %v", err)
		return
	}
	if err := s.ApplyBatch([][]byte{key, key}, []*version.Object{in, in}); err != nil {
		t.Errorf("ApplyBatch: %v", err)
		return
	}
	var written []*version.Object
	for _, ctx := range []version.Clock{nil, in.Context, {}} {
		obj, err := s.Coordinate(key, ctx, []byte("after"), false, 10)
		switch {
		case err == nil:
			if verr := obj.Validate(); verr != nil {
				t.Errorf("write returned an invalid object %v: %v", obj, verr)
			}
			written = append(written, obj)
		case errors.Is(err, version.ErrCounterExhausted), errors.Is(err, ErrObjectTooLarge):
		default:
			t.Errorf("write with context %v: undocumented error %v", ctx, err)
		}
	}
	stored, err := s.Get(key)
	if err != nil {
		t.Errorf("stored object does not read back: %v", err)
		return
	}
	if err := stored.Validate(); err != nil {
		t.Errorf("stored object invalid: %v", err)
	}
	if !stored.Descends(in) {
		t.Errorf("stored %v does not descend the applied %v", stored, in)
	}
	for _, w := range written {
		if !stored.Context.Descends(w.Context) {
			t.Errorf("stored %v lost the write %v", stored, w)
		}
	}
}
