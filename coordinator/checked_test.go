package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// checkedStats is a node's checked-write counters.
func checkedStats(n *testcluster.Node) [3]uint64 {
	st := n.Coord.Stats()
	return [3]uint64{st.CheckedStored, st.CheckedReadFirst, st.CheckedUnknown}
}

// replicasAgree waits until every node's store holds the same object for
// key, and returns it.
func replicasAgree(t *testing.T, c *testcluster.Cluster, key []byte) *version.Object {
	t.Helper()
	return storesAgree(t, c.Nodes, key, 5*time.Second, nil)
}

// storesAgree waits up to wait until the stores of nodes hold the same
// object for key, calling poke (if not nil) before each look, and returns
// it.
func storesAgree(t *testing.T, nodes []*testcluster.Node, key []byte, wait time.Duration, poke func()) *version.Object {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		if poke != nil {
			poke()
		}
		var first *version.Object
		same := true
		for i, n := range nodes {
			obj, err := n.Store.Get(key)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				first = obj
			} else if !first.Equal(obj) {
				same = false
			}
		}
		if same && first != nil {
			return first
		}
		if time.Now().After(deadline) {
			for _, n := range nodes {
				obj, _ := n.Store.Get(key)
				t.Logf("%s holds %v", n.ID, obj)
			}
			t.Fatalf("replicas of %q still disagree", key)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A blind write at W = 2 on three replicas is checked inside the write
// (checked.go). Each outcome: confirmed by the other replicas; given back
// to the read-first path when this replica is behind; stored beside a
// version only one other replica holds (kept as a sibling, never lost);
// and, when no other replica's answer comes back, stored here with its
// outcome unknown, so that its dot is never minted again for another value.
func TestCheckedBlindWrites(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 41,
		Coordinator: coordinator.Options{ReadRepairChance: -1}})
	ctx := ctxT(t)
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]

	t.Run("confirmed", func(t *testing.T) {
		key := []byte("checked-fresh")
		before := checkedStats(n1)
		if _, err := n1.Coord.Put(ctx, key, []byte("v1"), nil, coordinator.Quorum); err != nil {
			t.Fatal(err)
		}
		if got := checkedStats(n1); got[0] != before[0]+1 {
			t.Fatalf("checked counters %v -> %v: the write was not confirmed as a checked write", before, got)
		}
		obj := replicasAgree(t, c, key)
		if fmt.Sprint(liveValues(obj)) != "[v1]" || len(obj.Siblings) != 1 {
			t.Fatalf("replicas hold %v, want the one sibling v1", obj)
		}
		// Over a state every replica holds: confirmed again, superseding it.
		if _, err := n2.Coord.Put(ctx, key, []byte("v2"), nil, coordinator.Quorum); err != nil {
			t.Fatal(err)
		}
		if obj := replicasAgree(t, c, key); fmt.Sprint(liveValues(obj)) != "[v2]" || len(obj.Siblings) != 1 {
			t.Fatalf("replicas hold %v, want the one sibling v2", obj)
		}
	})

	t.Run("behind", func(t *testing.T) {
		key := []byte("checked-behind")
		c.Net.Isolate(n3.ID)
		if _, err := n1.Coord.Put(ctx, key, []byte("old"), nil, coordinator.Quorum); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		c.Net.Heal()
		if obj, _ := n3.Store.Get(key); obj != nil {
			t.Fatalf("n3 was cut off but holds %v", obj)
		}
		before := checkedStats(n3)
		if _, err := n3.Coord.Put(ctx, key, []byte("new"), nil, coordinator.Quorum); err != nil {
			t.Fatal(err)
		}
		if got := checkedStats(n3); got[1] != before[1]+1 {
			t.Fatalf("checked counters %v -> %v: the stale coordinator's write was not given back to the read-first path", before, got)
		}
		obj, err := n2.Coord.Get(ctx, key, coordinator.All)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(liveValues(obj)) != "[new]" {
			t.Fatalf("after a blind write by the stale replica, a read at ALL gives %v, want [new] alone", obj)
		}
	})

	t.Run("one ahead", func(t *testing.T) {
		key := []byte("checked-one-ahead")
		// A write at ONE that only n2 took.
		c.Net.Isolate(n2.ID)
		if _, err := n2.Coord.Put(ctx, key, []byte("only-n2"), nil, coordinator.One); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		c.Net.Heal()
		before := checkedStats(n1)
		if _, err := n1.Coord.Put(ctx, key, []byte("blind"), nil, coordinator.Quorum); err != nil {
			t.Fatal(err)
		}
		if got := checkedStats(n1); got[0] != before[0]+1 {
			t.Fatalf("checked counters %v -> %v: n3 should have confirmed the write", before, got)
		}
		// n2 gets the write as an ordinary replication: its own version
		// stays beside it.
		obj := replicasAgreeOn(t, c, key, n2)
		if fmt.Sprint(liveValues(obj)) != "[blind only-n2]" && fmt.Sprint(liveValues(obj)) != "[only-n2 blind]" {
			t.Fatalf("n2 holds %v, want both its own version and the blind write", obj)
		}
		// n1 learns what n2 holds from its answer (once it comes: the
		// write was decided by n3's).
		if mine := replicasAgreeOn(t, c, key, n1); len(liveValues(mine)) != 2 {
			t.Fatalf("n1 holds %v, want both versions (learned from n2's refusal)", mine)
		}
		all, err := n1.Coord.Get(ctx, key, coordinator.All)
		if err != nil {
			t.Fatal(err)
		}
		if len(liveValues(all)) != 2 {
			t.Fatalf("a read at ALL gives %v, want both versions (nothing lost)", all)
		}
	})

	t.Run("no answer", func(t *testing.T) {
		key := []byte("checked-no-answer")
		// Requests reach n2 and n3, their answers do not come back.
		c.Net.Cut(n2.ID, n1.ID)
		c.Net.Cut(n3.ID, n1.ID)
		before := checkedStats(n1)
		_, err := n1.Coord.Put(ctx, key, []byte("first"), nil, coordinator.Quorum)
		c.Net.Heal()
		var qe *coordinator.QuorumError
		if !errors.As(err, &qe) || !errors.Is(err, coordinator.ErrUnknownOutcome) {
			t.Fatalf("write with no answer: %v, want a QuorumError with ErrUnknownOutcome", err)
		}
		if got := checkedStats(n1); got[2] != before[2]+1 {
			t.Fatalf("checked counters %v -> %v: want one unknown outcome", before, got)
		}
		mine, _ := n1.Store.Get(key)
		if fmt.Sprint(liveValues(mine)) != "[first]" {
			t.Fatalf("n1 holds %v: a write of unknown outcome must be stored where its dot was minted", mine)
		}
		// The next write mints a later dot: it supersedes the first on
		// every replica (the same dot for another value would not).
		if _, err := n1.Coord.Put(ctx, key, []byte("second"), nil, coordinator.Quorum); err != nil {
			t.Fatal(err)
		}
		obj := replicasAgree(t, c, key)
		if fmt.Sprint(liveValues(obj)) != "[second]" {
			t.Fatalf("replicas hold %v, want [second] alone", obj)
		}
		if d := obj.Siblings[0].Dot; d.Counter != 2 {
			t.Fatalf("the second write has dot %v, want counter 2", d)
		}
	})

	t.Run("behind, one silent", func(t *testing.T) {
		// n1 misses a write; then n2's answers to n1 are lost. n3 refuses
		// (it holds more) and n2 may have stored the write: its outcome is
		// unknown, and n1 keeps it. Reading first would have succeeded
		// here (n1 and n3), but giving the write back to that path could
		// mint its dot again while n2 holds it. n1 learns what n3 holds, so
		// the client's retry succeeds and supersedes everything.
		key := []byte("checked-behind-silent")
		c.Net.Isolate(n1.ID)
		if _, err := n2.Coord.Put(ctx, key, []byte("old"), nil, coordinator.Quorum); err != nil {
			t.Fatal(err)
		}
		c.Net.Heal()
		c.Net.Cut(n2.ID, n1.ID)
		before := checkedStats(n1)
		_, err := n1.Coord.Put(ctx, key, []byte("new"), nil, coordinator.Quorum)
		if !errors.Is(err, coordinator.ErrUnknownOutcome) {
			t.Fatalf("write by a stale coordinator with one target silent: %v, want ErrUnknownOutcome", err)
		}
		if got := checkedStats(n1); got[2] != before[2]+1 {
			t.Fatalf("checked counters %v -> %v: want one unknown outcome", before, got)
		}
		// The client retries once the write's follow-up (the version, sent
		// to n3 in the background) has landed. A covering write that finds
		// its key busy at a target is refused there without a read
		// (replica.ApplyCovering does not wait for the key's lock), so a
		// retry that met the follow-up at n3 would be refused and, with n2
		// silent, be of unknown outcome again: true, but not the case this
		// test is about.
		replicasAgreeOn(t, c, key, n3)
		if _, err := n1.Coord.Put(ctx, key, []byte("retry"), nil, coordinator.Quorum); err != nil {
			t.Fatalf("retry: %v", err)
		}
		c.Net.Heal()
		obj, err := n3.Coord.Get(ctx, key, coordinator.All)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(liveValues(obj)) != "[retry]" {
			t.Fatalf("after the retry a read at ALL gives %v, want [retry] alone", obj)
		}
	})

	t.Run("batch", func(t *testing.T) {
		keys := [][]byte{[]byte("cb-1"), []byte("cb-2"), []byte("cb-1"), []byte("cb-3")}
		values := [][]byte{[]byte("a"), []byte("b"), []byte("c"), []byte("d")}
		before := checkedStats(n1)
		if err := errors.Join(n1.Coord.PutBatch(ctx, keys, values, coordinator.Quorum)...); err != nil {
			t.Fatal(err)
		}
		// cb-1 is written twice in the batch: it reads first.
		if got := checkedStats(n1); got[0] != before[0]+2 {
			t.Fatalf("checked counters %v -> %v: want two confirmed (cb-2, cb-3)", before, got)
		}
		for key, want := range map[string]string{"cb-1": "[c]", "cb-2": "[b]", "cb-3": "[d]"} {
			if obj := replicasAgree(t, c, []byte(key)); fmt.Sprint(liveValues(obj)) != want {
				t.Fatalf("%s: replicas hold %v, want %s", key, obj, want)
			}
		}
	})
}

// replicasAgreeOn waits until n's store holds the merge of every node's
// state of key (the follow-ups of a checked write have arrived), and
// returns it.
func replicasAgreeOn(t *testing.T, c *testcluster.Cluster, key []byte, n *testcluster.Node) *version.Object {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var merged *version.Object
		for _, m := range c.Nodes {
			obj, err := m.Store.Get(key)
			if err != nil {
				t.Fatal(err)
			}
			merged = version.Merge(merged, obj)
		}
		obj, err := n.Store.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		if obj.Equal(merged) {
			return obj
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %v, want the merge %v", n.ID, obj, merged)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A peer that predates checked writes refuses the message as an unknown
// kind, having stored nothing: the write goes ahead with the others' answer
// (or reads first), the old peer gets it as an ordinary replication, and the
// coordinator reads first for writes the old peer is a target of from then
// on.
func TestCheckedWriteWithAnOlderNode(t *testing.T) {
	var mu sync.Mutex
	refused := 0
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 43,
		Coordinator: coordinator.Options{ReadRepairChance: -1},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			if id != "n2" {
				return h
			}
			return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
				if kind == 11 {
					mu.Lock()
					refused++
					mu.Unlock()
					return nil, fmt.Errorf("unknown peer message kind %d", kind)
				}
				return h.Handle(ctx, from, kind, payload)
			})
		}})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	for i := range 3 {
		key := []byte(fmt.Sprintf("older-checked-%d", i))
		if _, err := n1.Coord.Put(ctx, key, []byte("v"), nil, coordinator.Quorum); err != nil {
			t.Fatal(err)
		}
		if obj := replicasAgree(t, c, key); fmt.Sprint(liveValues(obj)) != "[v]" {
			t.Fatalf("replicas hold %v, want [v]", obj)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if refused != 1 {
		t.Fatalf("the older node was sent %d checked writes, want 1 (then none: the coordinator remembers)", refused)
	}
	if got := checkedStats(n1); got[0] != 1 {
		t.Fatalf("checked counters %v: want the first write confirmed by n3, the others read first", got)
	}
}

// ReadBeforeBlindWrite turns checked writes off.
func TestReadBeforeBlindWrite(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 47,
		Coordinator: coordinator.Options{ReadRepairChance: -1, ReadBeforeBlindWrite: true}})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	if _, err := n1.Coord.Put(ctx, []byte("k"), []byte("v"), nil, coordinator.Quorum); err != nil {
		t.Fatal(err)
	}
	if got := checkedStats(n1); got != [3]uint64{} {
		t.Fatalf("checked counters %v with ReadBeforeBlindWrite", got)
	}
}

// A coordinator behind on a key it holds nothing for, whose counter floor
// is above zero (it removed another key physically), redoes a checked
// write every target refused with the context it learned: that context is
// built from its own state as merged by the learn, so it names no write
// of this node the key never had (which AdmitContext would refuse).
func TestCheckedWriteBehindWithACounterFloor(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 53,
		Coordinator: coordinator.Options{ReadRepairChance: -1}})
	ctx := ctxT(t)
	n1, n3 := c.Nodes[0], c.Nodes[2]
	other := []byte("floor-other")
	if _, err := n3.Coord.Put(ctx, other, []byte("x"), nil, coordinator.Quorum); err != nil {
		t.Fatal(err)
	}
	if _, err := n3.Store.RemoveIf(other, func(*version.Object) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if f := n3.Store.CounterFloor(); f == 0 {
		t.Fatalf("n3's counter floor is 0 after a removal")
	}
	keys := [][]byte{[]byte("floor-single"), []byte("floor-batch-1"), []byte("floor-batch-2")}
	c.Net.Isolate(n3.ID)
	for _, k := range keys {
		if _, err := n1.Coord.Put(ctx, k, []byte("old"), nil, coordinator.Quorum); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	c.Net.Heal()
	before := checkedStats(n3)
	if _, err := n3.Coord.Put(ctx, keys[0], []byte("new"), nil, coordinator.Quorum); err != nil {
		t.Fatalf("blind write by a coordinator that is behind and has a counter floor: %v", err)
	}
	if err := errors.Join(n3.Coord.PutBatch(ctx, keys[1:], [][]byte{[]byte("new"), []byte("new")}, coordinator.Quorum)...); err != nil {
		t.Fatalf("the same in a batch: %v", err)
	}
	if got := checkedStats(n3); got[1] != before[1]+3 {
		t.Fatalf("checked counters %v -> %v: want three writes given back", before, got)
	}
	for _, k := range keys {
		obj, err := n1.Coord.Get(ctx, k, coordinator.All)
		if err != nil || fmt.Sprint(liveValues(obj)) != "[new]" {
			t.Fatalf("%s at ALL: %v %v, want [new] alone", k, obj, err)
		}
	}
}

// In a batch, a write given back with a learned context keeps its own
// outcome: another key's failed read (here A, written twice so read
// first, while the other replicas fail every read) is not its error.
func TestCheckedBatchLearnedWriteKeepsItsOwnOutcome(t *testing.T) {
	var failReads atomic.Bool
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 59,
		Coordinator: coordinator.Options{ReadRepairChance: -1},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
				// Reads: kindRead 1, kindReadBatch 5, the digest reads 9 and 10.
				if failReads.Load() && id != "n1" && (kind == 1 || kind == 5 || kind == 9 || kind == 10) {
					return nil, errors.New("planted read failure")
				}
				return h.Handle(ctx, from, kind, p)
			})
		}})
	ctx := ctxT(t)
	n1, n2 := c.Nodes[0], c.Nodes[1]
	a, b := []byte("learned-a"), []byte("learned-b")
	c.Net.Isolate(n1.ID)
	if _, err := n2.Coord.Put(ctx, b, []byte("old"), nil, coordinator.Quorum); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	c.Net.Heal()
	failReads.Store(true)
	errs := n1.Coord.PutBatch(ctx, [][]byte{a, a, b}, [][]byte{[]byte("a1"), []byte("a2"), []byte("new")}, coordinator.Quorum)
	if errs[0] == nil || errs[1] == nil {
		t.Fatalf("A's writes succeeded although every read of the others failed: %v", errs)
	}
	if errs[2] != nil {
		t.Fatalf("B's write (learned context, no read needed) failed: %v", errs[2])
	}
	failReads.Store(false)
	obj, err := n2.Coord.Get(ctx, b, coordinator.All)
	if err != nil || fmt.Sprint(liveValues(obj)) != "[new]" {
		t.Fatalf("B at ALL: %v %v, want [new] alone", obj, err)
	}
}
