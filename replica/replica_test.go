package replica

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/version"
)

func openStore(t *testing.T, node string) *Store {
	t.Helper()
	db, err := storage.Open("db", &storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return New(db, node)
}

func values(obj *version.Object) []string {
	var out []string
	for _, s := range obj.Live() {
		out = append(out, string(s.Value))
	}
	sort.Strings(out)
	return out
}

func TestKeyEncodingOrdersByToken(t *testing.T) {
	var keys [][]byte
	for i := 0; i < 200; i++ {
		keys = append(keys, []byte(fmt.Sprintf("key-%d", i)))
	}
	sort.Slice(keys, func(i, j int) bool {
		return bytes.Compare(EncodeKey(nil, keys[i]), EncodeKey(nil, keys[j])) < 0
	})
	for i := 1; i < len(keys); i++ {
		if ring.Token(keys[i-1]) > ring.Token(keys[i]) {
			t.Fatalf("engine order is not token order at %q, %q", keys[i-1], keys[i])
		}
	}
	k, tok, err := DecodeKey(EncodeKey(nil, []byte("abc")))
	if err != nil || string(k) != "abc" || tok != ring.Token([]byte("abc")) {
		t.Fatalf("DecodeKey: %q %d %v", k, tok, err)
	}
	if _, _, err := DecodeKey([]byte("x")); err == nil {
		t.Fatal("DecodeKey accepted a short key")
	}
}

// A blind write supersedes what this replica holds; a version from another
// replica that this one has not seen survives as a sibling.
func TestCoordinateAndApply(t *testing.T) {
	a, b := openStore(t, "a"), openStore(t, "b")
	key := []byte("k")
	objA, err := a.Coordinate(key, nil, []byte("1"), false, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Coordinate(key, nil, []byte("2"), false, 2); err != nil {
		t.Fatal(err)
	}
	got, _ := a.Get(key)
	if fmt.Sprint(values(got)) != "[2]" {
		t.Fatalf("blind write did not supersede: %v", values(got))
	}
	// b has not seen a's writes: its blind write is concurrent with them.
	objB, err := b.Coordinate(key, nil, []byte("x"), false, 3)
	if err != nil {
		t.Fatal(err)
	}
	_ = objA
	merged, changed, err := a.Apply(key, objB)
	if err != nil || !changed {
		t.Fatalf("apply: changed=%v err=%v", changed, err)
	}
	if fmt.Sprint(values(merged)) != "[2 x]" {
		t.Fatalf("after merge: %v, want [2 x]", values(merged))
	}
	// Applying the same version again changes nothing.
	if _, changed, _ := a.Apply(key, objB); changed {
		t.Fatal("re-applying a version changed the store")
	}
	// A write with the merged context collapses both siblings.
	if _, err := a.Coordinate(key, merged.Context, []byte("z"), false, 4); err != nil {
		t.Fatal(err)
	}
	got, _ = a.Get(key)
	if fmt.Sprint(values(got)) != "[z]" {
		t.Fatalf("write with context: %v, want [z]", values(got))
	}
	// Deleting leaves a tombstone that reads as no live value.
	if _, err := a.Coordinate(key, got.Context, nil, true, 5); err != nil {
		t.Fatal(err)
	}
	got, _ = a.Get(key)
	if got == nil || len(got.Live()) != 0 || !got.IsDeleted() {
		t.Fatalf("after delete: %v", got)
	}
	// Applying an empty object to a missing key stores nothing.
	if obj, changed, err := a.Apply([]byte("absent"), &version.Object{}); obj != nil || changed || err != nil {
		t.Fatalf("apply of an empty object: %v %v %v", obj, changed, err)
	}
	if obj, _ := a.Get([]byte("absent")); obj != nil {
		t.Fatalf("empty apply stored %v", obj)
	}
}

func TestScanTokenRange(t *testing.T) {
	s := openStore(t, "a")
	tokens := map[string]uint64{}
	for i := 0; i < 300; i++ {
		k := []byte(fmt.Sprintf("k%d", i))
		if _, err := s.Coordinate(k, nil, k, false, 1); err != nil {
			t.Fatal(err)
		}
		tokens[string(k)] = ring.Token(k)
	}
	lo, hi := uint64(1)<<62, uint64(3)<<62
	want := 0
	for _, tok := range tokens {
		if tok >= lo && tok <= hi {
			want++
		}
	}
	got, prev := 0, uint64(0)
	err := s.Scan(lo, hi, func(e Entry) bool {
		if e.Token < lo || e.Token > hi || e.Token < prev || tokens[string(e.Key)] != e.Token {
			t.Fatalf("scan returned %q token %x outside [%x, %x] or out of order", e.Key, e.Token, lo, hi)
		}
		if fmt.Sprint(values(e.Object)) != fmt.Sprintf("[%s]", e.Key) {
			t.Fatalf("scan value of %q: %v", e.Key, values(e.Object))
		}
		prev = e.Token
		got++
		return true
	})
	if err != nil || got != want {
		t.Fatalf("scan: %d entries (err %v), want %d", got, err, want)
	}
	// The whole space, ending at 2^64-1, sees every key.
	all := 0
	if err := s.Scan(0, ^uint64(0), func(Entry) bool { all++; return true }); err != nil || all != 300 {
		t.Fatalf("full scan: %d, %v", all, err)
	}
}

// CoordinateBatch stores every write with one engine batch, and a key
// written twice in a batch ends as it would after two CoordinateThen calls:
// one sibling, the later value, with a later dot.
func TestCoordinateBatchInOrder(t *testing.T) {
	s := openStore(t, "n1")
	if _, err := s.Coordinate([]byte("a"), nil, []byte("old"), false, 1); err != nil {
		t.Fatal(err)
	}
	writes := []Write{
		{Key: []byte("a"), Value: []byte("a1")},
		{Key: []byte("b"), Value: []byte("b1")},
		{Key: []byte("a"), Value: []byte("a2")},
	}
	var stampedAt []int
	objs, errs, err := s.CoordinateBatch(writes, 2, func(objs []*version.Object) {
		for i, o := range objs {
			if o != nil {
				stampedAt = append(stampedAt, i)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if fmt.Sprint(stampedAt) != "[0 1 2]" {
		t.Fatalf("stamped called for %v, want [0 1 2]", stampedAt)
	}
	if !objs[2].Descends(objs[0]) || objs[0].Descends(objs[2]) {
		t.Fatalf("the second write of a does not strictly descend the first: %v vs %v", objs[2].Context, objs[0].Context)
	}
	for key, want := range map[string]string{"a": "a2", "b": "b1"} {
		obj, err := s.Get([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		live := obj.Live()
		if len(live) != 1 || string(live[0].Value) != want {
			t.Fatalf("%s: got %d siblings (%v), want only %q", key, len(live), live, want)
		}
	}
	if got := objs[0].Live(); len(got) != 1 || string(got[0].Value) != "a1" {
		t.Fatalf("the first object of a was modified by the second write: %v", got)
	}
}

// A write of a batch that cannot be stored (here an object over
// version.MaxObjectSize) fails alone: it is not stamped, and the other
// writes of the batch are stored.
func TestCoordinateBatchFailsOneWriteAlone(t *testing.T) {
	s := openStore(t, "n1")
	writes := []Write{
		{Key: []byte("a"), Value: []byte("a1")},
		{Key: []byte("big"), Value: make([]byte, version.MaxObjectSize+1)},
		{Key: []byte("c"), Value: []byte("c1")},
	}
	var stampedAt []int
	_, errs, err := s.CoordinateBatch(writes, 1, func(objs []*version.Object) {
		for i, o := range objs {
			if o != nil {
				stampedAt = append(stampedAt, i)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || !errors.Is(errs[1], ErrObjectTooLarge) || errs[2] != nil {
		t.Fatalf("per-write errors %v: want only the oversized write to fail", errs)
	}
	if fmt.Sprint(stampedAt) != "[0 2]" {
		t.Fatalf("stamped %v, want [0 2]: a failed write must not be sent anywhere", stampedAt)
	}
	for key, want := range map[string]bool{"a": true, "big": false, "c": true} {
		obj, err := s.Get([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		if got := obj != nil; got != want {
			t.Fatalf("%s stored: %v, want %v", key, got, want)
		}
	}
}

// ApplyBatch merges every incoming version, a repeated key's versions
// included, exactly as Apply one by one would.
func TestApplyBatchMergesLikeApply(t *testing.T) {
	src1, src2 := openStore(t, "n1"), openStore(t, "n2")
	a1, _ := src1.Coordinate([]byte("a"), nil, []byte("a-from-n1"), false, 1)
	a2, _ := src2.Coordinate([]byte("a"), nil, []byte("a-from-n2"), false, 2)
	b1, _ := src1.Coordinate([]byte("b"), nil, []byte("b1"), false, 3)
	one, batch := openStore(t, "n3"), openStore(t, "n4")
	keys := [][]byte{[]byte("a"), []byte("b"), []byte("a")}
	objs := []*version.Object{a1, b1, a2}
	for i := range keys {
		if _, _, err := one.Apply(keys[i], objs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.ApplyBatch(keys, objs); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		want, _ := one.Get([]byte(k))
		got, _ := batch.Get([]byte(k))
		if got == nil || !got.Equal(want) {
			t.Fatalf("%s: ApplyBatch stored %v, Apply one by one %v", k, got, want)
		}
	}
	if got, _ := batch.Get([]byte("a")); len(got.Live()) != 2 {
		t.Fatalf("a: want the two concurrent writes as siblings, got %v", got.Live())
	}
}

// An ApplyBatch that cannot store one of its keys (a key over the engine's
// limit; merged objects are bounded by version.MaxObjectSize, far below the
// engine's value limit) returns the error instead of acknowledging writes
// it did not store.
func TestApplyBatchReportsAnUnstorableKey(t *testing.T) {
	src := openStore(t, "n1")
	ok, _ := src.Coordinate([]byte("ok"), nil, []byte("v"), false, 1)
	hugeKey := make([]byte, storage.MaxKeySize)
	other := &version.Object{}
	other.WriteBlind("n1", []byte("v"), false, 2)
	dst := openStore(t, "n2")
	if err := dst.ApplyBatch([][]byte{[]byte("ok"), hugeKey}, []*version.Object{ok, other}); err == nil {
		t.Fatal("ApplyBatch with a key over the engine's limit returned nil")
	}
	if obj, _ := dst.Get([]byte("ok")); obj != nil {
		t.Fatalf("a failed batch stored part of itself: %v", obj.Live())
	}
}

// Writes to one key from many goroutines, through every read-modify-write
// path, each build on the previous one although a write releases the key's
// lock before its fsync (the next writer reads the staged state): every
// coordinated write gets its own counter (a stale read would reuse one),
// and the final object descends every version applied from another node.
func TestConcurrentWritesToOneKeyBuildOnEachOther(t *testing.T) {
	db, err := storage.Open(t.TempDir(), &storage.Options{Sync: storage.SyncBatch})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := New(db, "n1")
	other := openStore(t, "n2")
	key := []byte("hot")
	const writers, perWriter, appliers, perApplier = 6, 30, 2, 15
	var mu sync.Mutex
	var applied []*version.Object
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				v := []byte(fmt.Sprintf("w%d-%d", w, i))
				var err error
				if w%2 == 0 {
					_, err = s.Coordinate(key, nil, v, false, int64(i))
				} else {
					// A batch that writes the key twice and another key once.
					var errs []error
					_, errs, err = s.CoordinateBatch([]Write{{Key: key, Value: v}, {Key: []byte("cold"), Value: v}, {Key: key, Value: v}}, int64(i), nil)
					for _, e := range errs {
						if e != nil {
							err = e
						}
					}
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for a := range appliers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perApplier {
				mu.Lock()
				obj, err := other.Coordinate(key, nil, []byte(fmt.Sprintf("n2-%d-%d", a, i)), false, int64(i))
				mu.Unlock()
				if err != nil {
					t.Error(err)
					return
				}
				if a == 0 {
					_, _, err = s.Apply(key, obj)
				} else {
					err = s.ApplyBatch([][]byte{key}, []*version.Object{obj})
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				applied = append(applied, obj)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	obj, err := s.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	// Even writers: one write each; odd writers: two writes of the key each.
	want := uint64(writers/2*perWriter + writers/2*perWriter*2)
	if got := obj.Context["n1"]; got != want {
		t.Fatalf("n1's counter is %d after %d coordinated writes: a write built on a stale state", got, want)
	}
	for _, a := range applied {
		if !obj.Descends(a) {
			t.Fatalf("the final object %v lost an applied version %v", obj.Context, a.Context)
		}
	}
}

// An Apply (or ApplyBatch) whose version is already covered by a write
// that is staged but not yet committed writes nothing, and must not report
// success before that write is stored: it waits for it, and fails if it
// fails.
func TestApplyWaitsForTheStagedWriteItReliesOn(t *testing.T) {
	key := []byte("k")
	src := openStore(t, "n1")
	obj, err := src.Coordinate(key, nil, []byte("v"), false, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		batch     bool
		commitErr error
	}{{"apply, commit ok", false, nil}, {"apply, commit failed", false, errors.New("fsync failed")},
		{"apply batch, commit ok", true, nil}, {"apply batch, commit failed", true, errors.New("fsync failed")}} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, "n2")
			// Stage obj as a writer would, holding the lock's reference.
			held := s.locks.lockAll([][]byte{key})
			st := held.locks[0].stage(EncodeKey(nil, key), obj, 0)
			held.locks[0].mu.Unlock()
			res := make(chan error, 1)
			go func() {
				if tc.batch {
					res <- s.ApplyBatch([][]byte{key}, []*version.Object{obj})
					return
				}
				_, _, err := s.Apply(key, obj)
				res <- err
			}()
			select {
			case err := <-res:
				t.Fatalf("returned (%v) before the staged write it relies on was committed", err)
			case <-time.After(50 * time.Millisecond):
			}
			st.err = tc.commitErr
			close(st.done)
			if err := <-res; (err != nil) != (tc.commitErr != nil) {
				t.Fatalf("returned %v; the staged write's commit returned %v", err, tc.commitErr)
			}
			held.locks[0].mu.Lock()
			held.locks[0].unstage(st)
			held.unlock()
		})
	}
}

// A read of a usual key allocates only its answer (the engine's copy of
// the stored bytes): the engine key is built on the reader's stack. It
// was not, silently, while an error path formatted the key (the key then
// escaped, and the buffer meant to hold it moved to the heap).
func TestAReadAllocatesOnlyItsAnswer(t *testing.T) {
	s := openStore(t, "a")
	key := []byte("user:000123456")
	if _, err := s.Coordinate(key, nil, []byte("value"), false, 1); err != nil {
		t.Fatal(err)
	}
	for name, read := range map[string]func(){
		"GetRaw": func() {
			if _, _, found, err := s.GetRaw(key); err != nil || !found {
				t.Fatalf("GetRaw: found %v, %v", found, err)
			}
		},
		"GetLive": func() {
			if v, found, err := s.GetLive(key); err != nil || !found || string(v) != "value" {
				t.Fatalf("GetLive: %q %v %v", v, found, err)
			}
		},
	} {
		if n := testing.AllocsPerRun(100, read); n > 1 {
			t.Errorf("%s: %v allocations per read, want at most 1 (the answer)", name, n)
		}
	}
}
