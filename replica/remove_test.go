package replica

import (
	"fmt"
	"sync"
	"testing"
	"time"

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
