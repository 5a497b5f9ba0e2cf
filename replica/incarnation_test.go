package replica

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/version"
)

func openDB(t *testing.T, fs *vfs.MemFS) *storage.DB {
	t.Helper()
	db, err := storage.Open("db", &storage.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func openNode(t *testing.T, db *storage.DB, node string) *Store {
	t.Helper()
	s, err := Open(db, node)
	if err != nil {
		t.Fatal(err)
	}
	if got, inc, ok := version.SplitActor(s.Actor()); !ok || got != node || inc != s.Incarnation() || s.Node() != node {
		t.Fatalf("actor %q: node %q incarnation %d, store says %q %d", s.Actor(), got, inc, s.Node(), s.Incarnation())
	}
	if s.Incarnation() == 0 || s.Incarnation() > version.MaxIncarnation {
		t.Fatalf("incarnation %d", s.Incarnation())
	}
	return s
}

// A store reopened after a clean Close keeps its incarnation; one reopened
// after a crash (the engine closed, or lost, without Store.Close) and one
// on a wiped directory get a new one.
func TestIncarnationAcrossRestarts(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	s := openNode(t, db, "n1")
	if s.Minted() != "new data directory" {
		t.Fatalf("first open: minted %q", s.Minted())
	}
	first := s.Incarnation()
	if _, err := s.Coordinate([]byte("k"), nil, []byte("v"), false, 1); err != nil {
		t.Fatal(err)
	}

	// Clean restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Coordinate([]byte("k"), nil, []byte("late"), false, 2); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Close: %v", err)
	}
	db.Close()
	db = openDB(t, fs)
	s = openNode(t, db, "n1")
	if s.Incarnation() != first || s.Minted() != "" {
		t.Fatalf("after a clean Close: incarnation %d (minted %q), want %d kept", s.Incarnation(), s.Minted(), first)
	}

	// Crash: the engine closed without Store.Close.
	db.Close()
	db = openDB(t, fs)
	s = openNode(t, db, "n1")
	second := s.Incarnation()
	if second == first || !strings.Contains(s.Minted(), "did not shut down cleanly") {
		t.Fatalf("after a crash: incarnation %d (minted %q), first was %d", second, s.Minted(), first)
	}

	// Crash that loses what was not synced: the open record was synced.
	crashed := fs.CrashClone()
	db.Close()
	db2 := openDB(t, crashed)
	s2 := openNode(t, db2, "n1")
	if s2.Incarnation() == second || s2.Incarnation() == first {
		t.Fatalf("after a power loss: incarnation %d reused", s2.Incarnation())
	}
	s2.Close()
	db2.Close()

	// Wiped directory, data-less: a new incarnation.
	db3 := openDB(t, vfs.NewMem())
	defer db3.Close()
	s3 := openNode(t, db3, "n1")
	if s3.Incarnation() == first || s3.Incarnation() == second || s3.Minted() != "new data directory" {
		t.Fatalf("wiped: incarnation %d (minted %q)", s3.Incarnation(), s3.Minted())
	}

	if _, err := Open(db3, "bad~id"); err == nil {
		t.Fatal("Open accepted a node ID with ~")
	}
}

// Data from a release without incarnations: a new incarnation, and the
// legacy actor's writes stay as they are.
func TestOpenOnLegacyData(t *testing.T) {
	db := openDB(t, vfs.NewMem())
	defer db.Close()
	legacy := New(db, "n1")
	if _, err := legacy.Coordinate([]byte("k"), nil, []byte("old"), false, 1); err != nil {
		t.Fatal(err)
	}
	s := openNode(t, db, "n1")
	if !strings.Contains(s.Minted(), "older release") {
		t.Fatalf("minted %q", s.Minted())
	}
	obj, err := s.Coordinate([]byte("k"), nil, []byte("new"), false, 2)
	if err != nil {
		t.Fatal(err)
	}
	if obj.Context["n1"] != 1 || obj.Context[s.Actor()] != 1 || len(obj.Siblings) != 1 {
		t.Fatalf("object %v", obj)
	}
}

// Issue 2: a node rebuilt with the same ID on an empty data directory
// stamped dots its peers had already seen (n1:1 again), and they dropped
// its new writes. With incarnations its first write after the rebuild is
// a new actor's and survives on the peer.
//
// Checked: with New(db, "n1") in place of Open(db, "n1") for both lives,
// this test fails (the peer keeps only v5).
func TestRebuiltNodeWritesAreNotDropped(t *testing.T) {
	key := []byte("k")
	dbA := openDB(t, vfs.NewMem())
	a := openNode(t, dbA, "n1")
	peer := openStore(t, "n2")
	for i := 1; i <= 5; i++ {
		obj, err := a.Coordinate(key, nil, fmt.Appendf(nil, "v%d", i), false, int64(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := peer.Apply(key, obj); err != nil {
			t.Fatal(err)
		}
	}
	dbA.Close() // the disk is lost

	dbA = openDB(t, vfs.NewMem()) // rebuilt: same node ID, empty directory
	defer dbA.Close()
	rebuilt := openNode(t, dbA, "n1")
	obj, err := rebuilt.Coordinate(key, nil, []byte("v6"), false, 6)
	if err != nil {
		t.Fatal(err)
	}
	merged, changed, err := peer.Apply(key, obj)
	if err != nil {
		t.Fatal(err)
	}
	if got := values(merged); !changed || !slices.Equal(got, []string{"v5", "v6"}) {
		t.Fatalf("peer after the rebuilt node's write: %q (changed %v), want [v5 v6]", got, changed)
	}
}

// hangGuard fails the test if fn does not return in time (a key left
// locked).
func hangGuard(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s hangs: the key was left locked", what)
	}
}

// maxCounterObject is the encoding of an object whose only dot is n1's
// 2^64-1-th write, as a forged or corrupted replicate message could carry.
func maxCounterObject() []byte {
	b := []byte{1, 1, 2, 'n', '1'} // format, one context entry "n1"
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	b = append(b, 1, 0) // one sibling, node index 0
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	return append(b, 0, 0, 1, 'x') // flags, timestamp, value "x"
}

// Issue 4: a replicate of an object whose counter is 2^64-1 made the next
// write of the key panic with its lock held, locking the key forever. The
// object is refused with an error, and the key can still be written.
func TestReplicateOfMaxCounterIsRefused(t *testing.T) {
	s := openStore(t, "n1")
	key := []byte("k")
	raw := maxCounterObject()
	if _, err := version.DecodeObject(raw); !errors.Is(err, version.ErrMalformed) {
		t.Fatalf("DecodeObject of a 2^64-1 counter: %v", err)
	}
	// The same object built by hand, past the decoder.
	forged := &version.Object{
		Context:  version.Clock{"n1": math.MaxUint64},
		Siblings: []version.Sibling{{Dot: version.Dot{Node: "n1", Counter: math.MaxUint64}, Value: []byte("x")}},
	}
	if _, _, err := s.Apply(key, forged); err == nil {
		t.Fatal("Apply stored an object with a counter above MaxCounter")
	}
	if err := s.ApplyBatch([][]byte{key}, []*version.Object{forged}); err == nil {
		t.Fatal("ApplyBatch stored an object with a counter above MaxCounter")
	}
	hangGuard(t, "a write after the refused replicate", func() {
		obj, err := s.Coordinate(key, nil, []byte("v"), false, 1)
		if err != nil || values(obj)[0] != "v" {
			t.Errorf("write after the refused replicate: %v %v", obj, err)
		}
	})
	// At MaxCounter (valid, decodes) a write fails with an error, and the
	// key stays usable.
	if _, _, err := s.Apply(key, &version.Object{
		Context:  version.Clock{"n1": version.MaxCounter},
		Siblings: []version.Sibling{{Dot: version.Dot{Node: "n1", Counter: version.MaxCounter}, Value: []byte("y"), Timestamp: 2}},
	}); err != nil {
		t.Fatal(err)
	}
	hangGuard(t, "a write at MaxCounter", func() {
		if _, err := s.Coordinate(key, nil, []byte("w"), false, 3); !errors.Is(err, version.ErrCounterExhausted) {
			t.Errorf("write at MaxCounter: %v", err)
		}
		if _, err := New(s.DB(), "n2").Coordinate(key, nil, []byte("w"), false, 3); err != nil {
			t.Errorf("another actor's write: %v", err)
		}
	})
}

// A panic while a write holds its keys' locks (here in the caller's hook)
// does not leave them locked.
func TestPanicReleasesKeyLocks(t *testing.T) {
	s := openStore(t, "n1")
	key := []byte("k")
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		s.CoordinateThen(Write{Key: key, Value: []byte("v")}, 1, func(*version.Object) { panic("hook") })
	}()
	hangGuard(t, "a write after a panic", func() {
		if _, err := s.Coordinate(key, nil, []byte("v2"), false, 2); err != nil {
			t.Error(err)
		}
		if _, _, err := s.Apply(key, nil); err != nil {
			t.Error(err)
		}
	})
}

// Issue 5: a client context naming an actor the key never had is refused;
// one ahead of the stored counters is clamped.
func TestClientContextIsCheckedAgainstTheKey(t *testing.T) {
	s := openStore(t, "n1")
	key := []byte("k")
	obj, err := s.Coordinate(key, nil, []byte("v1"), false, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, ctx := range []version.Clock{{"n9": 1}, {"n1": 1, "forged~1": 3}} {
		if _, err := s.Coordinate(key, ctx, []byte("x"), false, 2); !errors.Is(err, ErrUnknownContext) {
			t.Fatalf("context %v: %v", ctx, err)
		}
		if _, err := s.Coordinate([]byte("never-written"), ctx, []byte("x"), false, 2); !errors.Is(err, ErrUnknownContext) {
			t.Fatalf("context %v on a new key: %v", ctx, err)
		}
	}
	// Ahead of the key: clamped, so the counter does not jump and the
	// stored context claims nothing that was not written.
	obj, err = s.Coordinate(key, version.Clock{"n1": 1 << 40}, []byte("v2"), false, 3)
	if err != nil {
		t.Fatal(err)
	}
	if obj.Context["n1"] != 2 || !slices.Equal(values(obj), []string{"v2"}) {
		t.Fatalf("after a write with a counter ahead: %v", obj)
	}
	// An empty context names nothing and is admitted anywhere.
	if _, err := s.Coordinate([]byte("fresh"), version.Clock{}, []byte("v"), false, 4); err != nil {
		t.Fatal(err)
	}
}

// Issue 5: a write that would make the key's object larger than
// version.MaxObjectSize is refused with a clear error; a blind write (or
// one with a context covering the siblings) still goes through.
func TestCoordinateRefusesObjectTooLarge(t *testing.T) {
	s := openStore(t, "n1")
	key := []byte("k")
	big := bytes.Repeat([]byte{'v'}, 1<<20)
	var err error
	n := 0
	for ; n < 20 && err == nil; n++ {
		_, err = s.Coordinate(key, version.Clock{}, big, false, int64(n)) // sees nothing: a new sibling each time
	}
	if !errors.Is(err, ErrObjectTooLarge) || !strings.Contains(err.Error(), "resolve the siblings") {
		t.Fatalf("write %d: %v", n, err)
	}
	obj, _ := s.Get(key)
	if len(obj.Siblings) != n-1 {
		t.Fatalf("%d siblings stored after %d writes", len(obj.Siblings), n)
	}
	if _, err := s.Coordinate(key, obj.Context, big, false, 100); err != nil {
		t.Fatalf("resolving write: %v", err)
	}
}

// A merge of concurrent versions that would exceed MaxObjectSize is refused
// (the replicate is not acknowledged) and the stored state is unchanged:
// no sibling is dropped to make it fit, which would lose a write another
// replica acknowledged.
func TestApplyRefusesMergeOverSizeLimit(t *testing.T) {
	s := openStore(t, "n1")
	key := []byte("big")
	big := bytes.Repeat([]byte{'a'}, 3<<20)
	mine, err := s.Coordinate(key, nil, big, false, 1)
	if err != nil {
		t.Fatal(err)
	}
	var other version.Object
	for i, actor := range []string{"n2~1", "n3~1"} {
		if _, err := other.Write(actor, nil, bytes.Repeat([]byte{byte('b' + i)}, 3<<20), false, int64(10+i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Apply(key, &other); !errors.Is(err, ErrObjectTooLarge) {
		t.Fatalf("apply of a merge over the size limit: %v", err)
	}
	if got, _ := s.Get(key); !got.Equal(mine) {
		t.Fatalf("a refused apply changed the stored object: %v", got)
	}
	one := &version.Object{Context: version.Clock{"n2~1": 1}, Siblings: other.Siblings[:1]}
	if _, _, err := s.Apply(key, one); err != nil {
		t.Fatalf("apply of one concurrent 3 MiB version: %v", err)
	}
	if got, _ := s.Get(key); len(got.Siblings) != 2 {
		t.Fatalf("after a fitting merge: %d siblings", len(got.Siblings))
	}
}
