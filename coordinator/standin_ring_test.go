package coordinator

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/version"
)

// flipCluster is a Cluster whose ring a test replaces, counting the calls
// to Ring.
type flipCluster struct {
	mu    sync.Mutex
	rg    *ring.Ring
	calls atomic.Int32
}

func (f *flipCluster) Ring() *ring.Ring {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rg
}
func (f *flipCluster) set(rg *ring.Ring) {
	f.mu.Lock()
	f.rg = rg
	f.mu.Unlock()
}
func (f *flipCluster) Addr(string) (string, bool) { return "", false }
func (f *flipCluster) Alive(string) bool          { return true }

func testRing(t *testing.T, ids ...string) *ring.Ring {
	t.Helper()
	var members []ring.Member
	for _, id := range ids {
		members = append(members, ring.Member{ID: id, Weight: 1, State: ring.StateNormal})
	}
	rg, err := ring.New(ring.Config{Partitions: 16, Replicas: 3}, members)
	if err != nil {
		t.Fatal(err)
	}
	return rg
}

// A fallback that becomes a primary of a key while it is about to remove
// its copy (the ring changed after it checked) keeps the copy: the
// removal re-checks the current ring under the store's key lock. (Before:
// it removed a primary's copy on the strength of the ring it read before.)
func TestStandInCopyIsKeptByANodeThatJustBecameAPrimary(t *testing.T) {
	old := testRing(t, "n1", "n2", "n3", "n4", "n5")
	var key []byte
	for i := 0; key == nil; i++ {
		k := fmt.Appendf(nil, "k-%d", i)
		if !slices.Contains(old.PreferenceForKey(k), "n5") {
			key = k
		}
	}
	now := testRing(t, "n5", "n1", "n2") // n5 is a primary of every key
	db, err := storage.Open(t.TempDir(), &storage.Options{Sync: storage.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := replica.New(db, version.Actor("n5", 1))
	cl := &flipCluster{rg: old}
	c := New("n5", cl, st, nil, Options{})
	obj := &version.Object{}
	if _, err := obj.WriteBlind(version.Actor("n1", 1), []byte("v"), false, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Apply(key, obj); err != nil {
		t.Fatal(err)
	}
	// Hold the key's stand-in lock until the removal has read the ring
	// (twice: the batch, then the key) and waits for the lock; then the
	// ring changes.
	stripe := &c.standIns[ring.Token(key)%standInStripes]
	stripe.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.dropStandIns("n1", [][]byte{key}, []*version.Object{obj})
	}()
	for cl.calls.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	cl.set(now)
	stripe.Unlock()
	<-done
	if got, err := st.Get(key); err != nil || got == nil {
		t.Fatalf("a node that just became a primary of %q removed its copy (%v, %v)", key, got, err)
	}
}

// A node that has left the ring refuses replication and stand-in writes:
// it is about to be stopped, and a write it acknowledged would leave with
// it. It took them while leaving.
func TestLeftNodeRefusesWrites(t *testing.T) {
	members := []ring.Member{
		{ID: "n1", Weight: 1, State: ring.StateNormal},
		{ID: "n2", Weight: 1, State: ring.StateNormal},
		{ID: "n3", Weight: 1, State: ring.StateNormal},
		{ID: "n4", Weight: 1, State: ring.StateLeaving},
	}
	leaving, err := ring.New(ring.Config{Partitions: 16, Replicas: 3}, members)
	if err != nil {
		t.Fatal(err)
	}
	members[3].State = ring.StateLeft
	left, err := ring.New(ring.Config{Partitions: 16, Replicas: 3}, members)
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(t.TempDir(), &storage.Options{Sync: storage.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := replica.New(db, version.Actor("n4", 1))
	cl := &flipCluster{rg: leaving}
	c := New("n4", cl, st, nil, Options{})
	obj := &version.Object{}
	if _, err := obj.WriteBlind(version.Actor("n1", 1), []byte("v"), false, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Handle(t.Context(), "n1", kindReplicate, encodeReplicate([]byte("a"), obj)); err != nil {
		t.Fatalf("leaving: replicate refused: %v", err)
	}
	cl.set(left)
	if _, err := c.Handle(t.Context(), "n1", kindReplicate, encodeReplicate([]byte("b"), obj)); !errors.Is(err, errLeft) {
		t.Fatalf("left: replicate answered %v, want errLeft", err)
	}
	if _, err := c.Handle(t.Context(), "n1", kindReplicateBatch, encodeReplicateBatch([][]byte{[]byte("c")}, [][]byte{obj.Encode(nil)})); !errors.Is(err, errLeft) {
		t.Fatalf("left: replicate batch answered %v, want errLeft", err)
	}
	if got, _ := st.Get([]byte("b")); got != nil {
		t.Fatal("the left node stored a refused write")
	}
}
