package replica

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/storage/vfs"
	"github.com/ringkv/ringkv/version"
)

// sumObserver keeps the sum of the hashes of every stored key, as
// anti-entropy's trees do, and counts failed commits.
type sumObserver struct {
	mu     sync.Mutex
	sum    uint64
	failed int
}

func (o *sumObserver) Changing([]Change) {}
func (o *sumObserver) Changed(cs []Change, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !ok {
		o.failed++
		return
	}
	for _, c := range cs {
		o.sum += c.New - c.Old
	}
}

func scanSum(t *testing.T, s *Store) uint64 {
	t.Helper()
	var sum uint64
	if err := s.ScanHashes(0, ^uint64(0), func(kh KeyHash) bool {
		sum += kh.Hash
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return sum
}

func TestRemoveIfCovered(t *testing.T) {
	s := openStore(t, "n1")
	obs := &sumObserver{}
	s.SetObserver(obs)
	key := []byte("k")
	first, err := s.Coordinate(key, nil, []byte("a"), false, 1)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Coordinate(key, first.Context, []byte("b"), false, 2)
	if err != nil {
		t.Fatal(err)
	}
	if removed, err := s.RemoveIfCovered(key, first); err != nil || removed {
		t.Fatalf("removed by an older version: %v %v", removed, err)
	}
	if obj, _ := s.Get(key); obj == nil {
		t.Fatal("key gone after a refused removal")
	}
	if removed, err := s.RemoveIfCovered(key, second); err != nil || !removed {
		t.Fatalf("not removed by the version it is: %v %v", removed, err)
	}
	if obj, _ := s.Get(key); obj != nil {
		t.Fatalf("key still there: %v", obj)
	}
	if removed, err := s.RemoveIfCovered(key, second); err != nil || removed {
		t.Fatalf("absent key removed: %v %v", removed, err)
	}
	if obs.sum != 0 || scanSum(t, s) != 0 {
		t.Fatalf("observer sum %x, scan %x: want 0", obs.sum, scanSum(t, s))
	}
}

// Removals racing with writes of the same keys leave the observer's sum
// equal to a scan's: no removal is counted against a state a writer
// replaced meanwhile.
func TestRemoveRacingWritesKeepsObserverExact(t *testing.T) {
	s := openStore(t, "n1")
	obs := &sumObserver{}
	s.SetObserver(obs)
	var wg sync.WaitGroup
	deadline := time.Now().Add(time.Second)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				key := []byte(fmt.Sprintf("k%d", i%8))
				if w%2 == 0 {
					if _, err := s.Coordinate(key, nil, []byte(fmt.Sprint(i)), false, int64(i)); err != nil {
						t.Error(err)
						return
					}
				} else if _, err := s.RemoveIf(key, func(*version.Object) bool { return i%3 == 0 }); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if obs.failed != 0 {
		t.Fatalf("%d failed commits", obs.failed)
	}
	if got, want := obs.sum, scanSum(t, s); got != want {
		t.Fatalf("observer sum %x, scan %x", got, want)
	}
}

// A key whose tombstone was purged here but is still held by another
// replica: the next write of the key here must not reuse a counter the
// tombstone's context covers, or that replica (and then anti-entropy
// everywhere) would drop it as an old, superseded write. The floor that
// prevents it survives a clean restart.
func TestRemovedKeyDoesNotReuseCounters(t *testing.T) {
	fs := vfs.NewStrictMem()
	db := openDB(t, fs)
	s := openNode(t, db, "n1")
	key := []byte("k")
	written, err := s.Coordinate(key, nil, []byte("old"), false, 1)
	if err != nil {
		t.Fatal(err)
	}
	tomb, err := s.Coordinate(key, written.Context, nil, true, 2)
	if err != nil {
		t.Fatal(err)
	}
	if removed, err := s.RemoveIf(key, func(o *version.Object) bool { return o.IsDeleted() }); err != nil || !removed {
		t.Fatalf("purge: %v %v", removed, err)
	}
	check := func(s *Store, value string) {
		t.Helper()
		obj, err := s.Coordinate(key, nil, []byte(value), false, 3)
		if err != nil {
			t.Fatal(err)
		}
		merged := version.Merge(tomb.Clone(), obj)
		if live := merged.Live(); len(live) != 1 || string(live[0].Value) != value {
			t.Fatalf("a replica still holding the tombstone %v drops the new write %v: merge is %v", tomb, obj, merged)
		}
		if _, err := s.RemoveIf(key, func(*version.Object) bool { return true }); err != nil {
			t.Fatal(err)
		}
	}
	check(s, "new")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openNode(t, db, "n1")
	if s2.Actor() != s.Actor() {
		t.Fatalf("clean restart changed the actor: %s, %s", s.Actor(), s2.Actor())
	}
	if s2.CounterFloor() < tomb.Context[s.Actor()] {
		t.Fatalf("counter floor %d after the restart, want at least %d", s2.CounterFloor(), tomb.Context[s.Actor()])
	}
	check(s2, "after restart")
}
