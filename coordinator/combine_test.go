package coordinator_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
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

// slowLinkCluster is a three-node cluster whose n2 counts the covering
// messages it handles, with slow links from n1 to the others, so that
// writes through n1 queue behind the call in flight (less slow than
// maxCheckedQueueWait, after which a queued write goes alone).
func slowLinkCluster(t *testing.T, seed int64) (*testcluster.Cluster, *coveringCounter) {
	n2 := &coveringCounter{}
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: seed,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 2 * time.Second},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			if id == "n2" {
				return n2.wrap(h)
			}
			return h
		}})
	c.Net.SetDelay(c.Nodes[0].ID, "n2", 5*time.Millisecond)
	c.Net.SetDelay(c.Nodes[0].ID, "n3", 5*time.Millisecond)
	return c, n2
}

// Concurrent blind writes through one coordinator, each from its own
// caller, go to the other replicas combined (combine.go): fewer messages
// than writes, each write with its own outcome, every value stored on
// every replica as the only sibling of its key. Writes of one key are
// never combined into one call: they still supersede each other in turn.
func TestConcurrentCheckedWritesAreCombined(t *testing.T) {
	c, n2 := slowLinkCluster(t, 61)
	ctx := ctxT(t)
	n1 := c.Nodes[0]

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
	c.Net.SetDelay(n1.ID, "n2", 5*time.Millisecond)
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

// firstKey returns the first key of a kindReplicateCovering payload.
func firstKey(payload []byte) string {
	_, w := binary.Uvarint(payload)
	l, w2 := binary.Uvarint(payload[w:])
	return string(payload[w+w2 : w+w2+int(l)])
}

// heldCluster starts three nodes (N=3, Timeout 5 s) where every node
// holds the kindReplicateCovering messages from n1 whose first key has one
// of releases' prefixes until that prefix's channel is closed, counting
// them in the returned counter.
func heldCluster(t *testing.T, seed int64, releases map[string]chan struct{}) (*testcluster.Cluster, *atomic.Int32) {
	held := new(atomic.Int32)
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: seed,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 5 * time.Second},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
				if kind == 11 && from == "n1" {
					for prefix, release := range releases {
						if strings.HasPrefix(firstKey(payload), prefix) {
							held.Add(1)
							<-release
						}
					}
				}
				return h.Handle(ctx, from, kind, payload)
			})
		}})
	return c, held
}

// waitHeld waits until n messages are held.
func waitHeld(t *testing.T, held *atomic.Int32, n int32) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); held.Load() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d covering messages held, want %d", held.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// A write queued behind a call in flight for its own key stays queued
// (it would wait for the key anyway); when its caller's context ends
// there, it is taken out unsent: an error saying so, and the key keeps
// the value of the write in flight.
func TestQueuedCheckedWriteLeavesWhenItsContextEnds(t *testing.T) {
	release := make(chan struct{})
	c, held := heldCluster(t, 62, map[string]chan struct{}{"inflight": release})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	key := []byte("inflight-0")
	var wg sync.WaitGroup
	var inflightErr error
	wg.Go(func() {
		_, inflightErr = n1.Coord.Put(ctx, key, []byte("v"), nil, coordinator.Quorum)
	})
	waitHeld(t, held, 2) // at n2 and n3
	short, cancel := context.WithTimeout(ctx, 60*time.Millisecond)
	_, err := n1.Coord.Put(short, key, []byte("never"), nil, coordinator.Quorum)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not sent") {
		t.Fatalf("queued write whose context ended: %v, want its deadline, not sent", err)
	}
	close(release)
	wg.Wait()
	if inflightErr != nil {
		t.Fatalf("in-flight write: %v", inflightErr)
	}
	c.Net.Heal()
	obj := replicasAgree(t, c, key)
	if got := fmt.Sprint(liveValues(obj)); got != "[v]" || len(obj.Siblings) != 1 {
		t.Fatalf("replicas hold %v, want v alone: the write taken out of the queue was stored", obj)
	}
}

// Calls held up by a slow target do not hold up unrelated writes: with
// two calls stuck (the one in flight, and one a queued write started after
// maxCheckedQueueWait), a write that waited maxCheckedQueueWait starts a
// call of its own.
func TestStuckCheckedCallsDoNotHoldUpOtherWrites(t *testing.T) {
	release := make(chan struct{})
	c, held := heldCluster(t, 63, map[string]chan struct{}{"slow": release})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	var wg sync.WaitGroup
	for i := range 2 { // two calls, stuck
		wg.Go(func() {
			if _, err := n1.Coord.Put(ctx, []byte(fmt.Sprintf("slow-%d", i)), []byte("v"), nil, coordinator.Quorum); err != nil {
				t.Errorf("slow write %d: %v", i, err)
			}
		})
	}
	waitHeld(t, held, 4)
	const others = 10
	errs := make([]error, others)
	var fast sync.WaitGroup
	for i := range others {
		fast.Go(func() {
			// Shorter than the stuck calls' Timeout: without their own
			// calls, these writes would still be queued when it ends.
			short, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			_, errs[i] = n1.Coord.Put(short, []byte(fmt.Sprintf("other-%d", i)), []byte("w"), nil, coordinator.Quorum)
		})
	}
	fast.Wait()
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d behind the stuck calls: %v", i, err)
		}
	}
}

// A write queued behind a call for its own key, while other calls are
// stuck, goes as soon as that key is free, not when the stuck calls end.
func TestQueuedCheckedWriteGoesOnceItsKeyIsFree(t *testing.T) {
	slow, mid := make(chan struct{}), make(chan struct{})
	c, held := heldCluster(t, 64, map[string]chan struct{}{"slow": slow, "mid": mid})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	var wg sync.WaitGroup
	put := func(key, value string, within time.Duration, err *error) {
		wg.Go(func() {
			short, cancel := context.WithTimeout(ctx, within)
			defer cancel()
			_, *err = n1.Coord.Put(short, []byte(key), []byte(value), nil, coordinator.Quorum)
		})
	}
	var slowErrs [2]error
	put("slow-0", "v", 10*time.Second, &slowErrs[0])
	put("slow-1", "v", 10*time.Second, &slowErrs[1])
	waitHeld(t, held, 4) // two calls, stuck
	var first, second error
	put("mid-0", "first", 10*time.Second, &first)
	waitHeld(t, held, 6) // its own call, after the queue wait
	secondDone := make(chan struct{})
	go func() {
		defer close(secondDone)
		short, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, second = n1.Coord.Put(short, []byte("mid-0"), []byte("second"), nil, coordinator.Quorum)
	}()
	time.Sleep(50 * time.Millisecond) // queued behind the call for its key
	close(mid)
	<-secondDone
	close(slow)
	wg.Wait()
	if first != nil || second != nil || slowErrs[0] != nil || slowErrs[1] != nil {
		t.Fatalf("writes: mid-0 %v, then %v; slow %v, %v", first, second, slowErrs[0], slowErrs[1])
	}
	c.Net.Heal()
	if obj := replicasAgree(t, c, []byte("mid-0")); fmt.Sprint(liveValues(obj)) != "[second]" {
		t.Fatalf("replicas hold %v, want the second write alone", obj)
	}
}

// Pipelines from several clients (PutBatch, as Redis pipelines of SETs
// arrive) go to the other replicas combined with each other: fewer
// messages than pipelines, every write with its own outcome and stored on
// every replica as the only sibling of its key.
func TestConcurrentPipelinesAreCombined(t *testing.T) {
	c, n2 := slowLinkCluster(t, 65)
	ctx := ctxT(t)
	n1 := c.Nodes[0]

	const pipelines, depth = 16, 8
	before := checkedStats(n1)
	var wg sync.WaitGroup
	errs := make([][]error, pipelines)
	for p := range pipelines {
		wg.Go(func() {
			keys, values := make([][]byte, depth), make([][]byte, depth)
			for j := range depth {
				keys[j] = []byte(fmt.Sprintf("pipe-%d-%d", p, j))
				values[j] = []byte(fmt.Sprintf("v%d-%d", p, j))
			}
			errs[p] = n1.Coord.PutBatch(ctx, keys, values, coordinator.Quorum)
		})
	}
	wg.Wait()
	for p := range pipelines {
		if err := errors.Join(errs[p]...); err != nil {
			t.Fatalf("pipeline %d: %v", p, err)
		}
	}
	if got := checkedStats(n1); got[0] != before[0]+pipelines*depth {
		t.Fatalf("checked counters %v -> %v: want %d confirmed checked writes", before, got, pipelines*depth)
	}
	for deadline := time.Now().Add(5 * time.Second); n2.writes.Load() < pipelines*depth && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	msgs, ws := n2.messages.Load(), n2.writes.Load()
	if ws != pipelines*depth || msgs >= pipelines/2 || n2.largest.Load() < 2*depth {
		t.Fatalf("n2 got %d writes in %d messages (largest %d): want %d writes in fewer than %d messages, some holding several pipelines",
			ws, msgs, n2.largest.Load(), pipelines*depth, pipelines/2)
	}
	t.Logf("%d writes in %d messages, largest %d", ws, msgs, n2.largest.Load())
	c.Net.Heal()
	for p := range pipelines {
		for j := range depth {
			key := []byte(fmt.Sprintf("pipe-%d-%d", p, j))
			obj := replicasAgree(t, c, key)
			if got := fmt.Sprint(liveValues(obj)); got != fmt.Sprintf("[v%d-%d]", p, j) || len(obj.Siblings) != 1 {
				t.Fatalf("replicas of %s hold %v, want the one sibling v%d-%d", key, obj, p, j)
			}
		}
	}
}

// A pipeline whose first key is in a stuck call does not hold up its other
// keys: after maxCheckedQueueWait they start a call of their own, as a
// single write would, and are stored while the stuck call still waits. A
// pipeline whose context ends while its writes are queued gets them back
// unsent, and none is stored.
func TestAPipelineBehindABusyKeyIsNotHeldUp(t *testing.T) {
	release := make(chan struct{})
	var releaseOnce sync.Once
	stopHolding := func() { releaseOnce.Do(func() { close(release) }) }
	c, held := heldCluster(t, 66, map[string]chan struct{}{"stuck": release})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	var wg sync.WaitGroup
	t.Cleanup(func() { stopHolding(); wg.Wait() }) // a failure below must not leave the call stuck
	wg.Go(func() {
		if _, err := n1.Coord.Put(ctx, []byte("stuck-0"), []byte("v"), nil, coordinator.Quorum); err != nil {
			t.Errorf("stuck write: %v", err)
		}
	})
	waitHeld(t, held, 2) // at n2 and n3
	keys := [][]byte{[]byte("stuck-0"), []byte("free-1"), []byte("free-2")}
	values := [][]byte{[]byte("w"), []byte("w"), []byte("w")}

	// Its context ends before maxCheckedQueueWait: nothing is sent.
	short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	errs := n1.Coord.PutBatch(short, keys, values, coordinator.Quorum)
	cancel()
	for i, err := range errs {
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not sent") {
			t.Fatalf("write %d of a pipeline whose context ended in the queue: %v, want it back unsent", i, err)
		}
	}
	for _, k := range keys[1:] {
		if obj, err := n1.Store.Get(k); err != nil || obj != nil {
			t.Fatalf("%s was stored (%v, %v) by a write given back unsent", k, obj, err)
		}
	}

	var pipeErrs []error
	wg.Go(func() { pipeErrs = n1.Coord.PutBatch(ctx, keys, values, coordinator.Quorum) })
	for _, k := range keys[1:] {
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
			if obj, err := n1.Store.Get(k); err == nil && obj != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s of the pipeline not stored while the call holding stuck-0 waits", k)
			}
		}
	}
	stopHolding()
	wg.Wait()
	if err := errors.Join(pipeErrs...); err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	c.Net.Heal()
	for _, k := range keys {
		if obj := replicasAgree(t, c, k); fmt.Sprint(liveValues(obj)) != "[w]" {
			t.Fatalf("replicas of %s hold %v, want w alone", k, obj)
		}
	}
}
