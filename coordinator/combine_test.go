package coordinator_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/transport"
)

// coveringCounter counts the kindReplicateCovering messages (11) a node
// handles and the writes in them.
type coveringCounter struct {
	messages, writes, largest atomic.Int64
}

func (cc *coveringCounter) wrap(h transport.Handler) transport.Handler {
	return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
		if kind == 11 {
			n, _ := binary.Uvarint(payload) // the message's entry count
			cc.messages.Add(1)
			cc.writes.Add(int64(n))
			for {
				old := cc.largest.Load()
				if int64(n) <= old || cc.largest.CompareAndSwap(old, int64(n)) {
					break
				}
			}
		}
		return h.Handle(ctx, from, kind, payload)
	})
}

// Concurrent blind writes through one coordinator, each from its own
// caller, go to the other replicas combined (combine.go): fewer messages
// than writes, each write with its own outcome, every value stored on
// every replica as the only sibling of its key. Writes of one key are
// never combined into one call: they still supersede each other in turn.
func TestConcurrentCheckedWritesAreCombined(t *testing.T) {
	var n2 coveringCounter
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 61,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 2 * time.Second},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			if id == "n2" {
				return n2.wrap(h)
			}
			return h
		}})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	// A slow link makes the writes queue behind the ones in flight.
	c.Net.SetDelay(n1.ID, "n2", 20*time.Millisecond)
	c.Net.SetDelay(n1.ID, "n3", 20*time.Millisecond)

	const writers = 48
	before := checkedStats(n1)
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			_, errs[i] = n1.Coord.Put(ctx, []byte(fmt.Sprintf("combined-%d", i)), []byte(fmt.Sprintf("v%d", i)), nil, coordinator.Quorum)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if got := checkedStats(n1); got[0] != before[0]+writers {
		t.Fatalf("checked counters %v -> %v: want %d confirmed checked writes", before, got, writers)
	}
	// n2's messages may still be on the slow link (n3's answers were
	// enough): wait for all of them.
	for deadline := time.Now().Add(5 * time.Second); n2.writes.Load() < writers && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	msgs, ws := n2.messages.Load(), n2.writes.Load()
	if ws != writers || msgs >= writers/2 || n2.largest.Load() < 4 {
		t.Fatalf("n2 got %d writes in %d messages (largest %d): want %d writes combined into fewer than %d messages",
			ws, msgs, n2.largest.Load(), writers, writers/2)
	}
	t.Logf("%d writes in %d messages, largest %d", ws, msgs, n2.largest.Load())
	c.Net.Heal()
	for i := range writers {
		key := []byte(fmt.Sprintf("combined-%d", i))
		obj := replicasAgree(t, c, key)
		if got := fmt.Sprint(liveValues(obj)); got != fmt.Sprintf("[v%d]", i) || len(obj.Siblings) != 1 {
			t.Fatalf("replicas of %s hold %v, want the one sibling v%d", key, obj, i)
		}
	}

	// One key, many writers: each write supersedes the one before it, so
	// one sibling is left, one of the values written.
	c.Net.SetDelay(n1.ID, "n2", 20*time.Millisecond)
	key := []byte("combined-hot")
	const hot = 12
	for i := range hot {
		wg.Go(func() {
			_, errs[i] = n1.Coord.Put(ctx, key, []byte(fmt.Sprintf("h%d", i)), nil, coordinator.Quorum)
		})
	}
	wg.Wait()
	for i, err := range errs[:hot] {
		if err != nil {
			t.Fatalf("hot write %d: %v", i, err)
		}
	}
	c.Net.Heal()
	obj := replicasAgree(t, c, key)
	if len(obj.Siblings) != 1 || len(obj.Live()) != 1 {
		t.Fatalf("after %d blind writes of one key in turn, replicas hold %v: want one sibling", hot, obj)
	}
}

// A write still queued when its caller's context ends is taken out
// unsent: the caller gets the context's error and the key is never
// written, while the writes on their way complete.
func TestQueuedCheckedWriteLeavesWhenItsContextEnds(t *testing.T) {
	release := make(chan struct{})
	var held atomic.Int32
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 62,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 5 * time.Second},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
				if kind == 11 && from == "n1" {
					held.Add(1)
					<-release // the in-flight calls wait here
				}
				return h.Handle(ctx, from, kind, payload)
			})
		}})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 { // fill the in-flight calls
		wg.Go(func() {
			_, errs[i] = n1.Coord.Put(ctx, []byte(fmt.Sprintf("inflight-%d", i)), []byte("v"), nil, coordinator.Quorum)
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for held.Load() < 4 { // two calls, each at n2 and n3
		if time.Now().After(deadline) {
			t.Fatalf("%d covering messages held, want 4", held.Load())
		}
		time.Sleep(time.Millisecond)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := n1.Coord.Put(short, []byte("queued"), []byte("never"), nil, coordinator.Quorum)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued write whose context ended: %v, want its deadline", err)
	}
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("in-flight write %d: %v", i, err)
		}
	}
	obj, err := n1.Coord.Get(ctx, []byte("queued"), coordinator.All)
	if err != nil || obj != nil && len(obj.Siblings) > 0 {
		t.Fatalf("the write taken out of the queue was stored: %v %v", obj, err)
	}
}
