package coordinator_test

// Regression tests for loss modes of the data path: each failed before its
// fix (see the commit that added it).

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/version"
)

// Levels count against N, not against the replicas the ring happens to
// place: on one node of an N=3 cluster, ALL and QUORUM are refused with an
// error that names both numbers, and nothing is written; ONE is accepted.
// (Before: W and R resolved against the one placed replica, so a write at
// ALL was acknowledged with a single copy.)
func TestLevelsCountAgainstNNotPlacedReplicas(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 1, Replicas: 3, Seed: 21})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	for _, tc := range []struct {
		level  int
		needed int
	}{{coordinator.All, 3}, {coordinator.Quorum, 2}, {2, 2}} {
		key := []byte(fmt.Sprintf("lone-%d", tc.level))
		_, err := n1.Coord.Put(ctx, key, []byte("v"), nil, tc.level)
		var qe *coordinator.QuorumError
		if !errors.Is(err, coordinator.ErrTooFewReplicas) || !errors.As(err, &qe) {
			t.Fatalf("put at level %d on a lone node of N=3: err = %v, want ErrTooFewReplicas", tc.level, err)
		}
		if qe.Needed != tc.needed || qe.Replicas != 1 || qe.N != 3 {
			t.Fatalf("put at level %d: error says needed %d, placed %d, N %d; want %d, 1, 3 (%v)", tc.level, qe.Needed, qe.Replicas, qe.N, tc.needed, err)
		}
		if obj, err := n1.Store.Get(key); err != nil || obj != nil {
			t.Fatalf("a refused write stored %v (%v)", obj, err)
		}
		if _, err := n1.Coord.Get(ctx, key, tc.level); !errors.Is(err, coordinator.ErrTooFewReplicas) {
			t.Fatalf("get at level %d on a lone node: err = %v, want ErrTooFewReplicas", tc.level, err)
		}
		errs := n1.Coord.PutBatch(ctx, [][]byte{key, []byte("other")}, [][]byte{[]byte("a"), []byte("b")}, tc.level)
		for i, err := range errs {
			if !errors.Is(err, coordinator.ErrTooFewReplicas) {
				t.Fatalf("batch put %d at level %d: err = %v, want ErrTooFewReplicas", i, tc.level, err)
			}
		}
	}
	if _, err := n1.Coord.Put(ctx, []byte("one"), []byte("v"), nil, coordinator.One); err != nil {
		t.Fatalf("put at ONE on a lone node: %v", err)
	}
	if r, w := n1.Coord.Defaults(3); r != 2 || w != 2 {
		t.Fatalf("Defaults(3) = %d, %d; want 2, 2", r, w)
	}
}

// skewedClock is a coordinator clock that tests can move: every node of a
// testcluster shares it, so moving it for one write is a node whose clock
// is ahead for that write.
type skewedClock struct{ offset atomic.Int64 }

func (s *skewedClock) now() time.Time { return time.Now().Add(time.Duration(s.offset.Load())) }

// A blind write (no context, as Redis SET and a plain HTTP DELETE)
// coordinated by a replica that missed an earlier acknowledged write
// supersedes it: with R + W > N, a later read sees only the blind write,
// whatever the coordinators' clocks say. (Before: the stale coordinator
// stamped a sibling concurrent with the earlier write, and Redis GET picked
// the earlier value by its later wall-clock time; a blind delete left the
// deleted value live.)
func TestBlindWriteByStaleReplicaSupersedesAcknowledgedWrites(t *testing.T) {
	clock := &skewedClock{}
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 22,
		Coordinator: coordinator.Options{Now: clock.now, ReadRepairChance: -1}})
	ctx := ctxT(t)
	n1, n3 := c.Nodes[0], c.Nodes[2]
	for i, op := range []string{"put", "delete", "batch"} {
		key := []byte(fmt.Sprintf("stale-%s", op))
		// The first write reaches n1 and n2 only, with n1's clock a
		// second ahead of n3's.
		c.Net.Isolate(n3.ID)
		clock.offset.Store(int64(time.Second))
		if _, err := n1.Coord.Put(ctx, key, []byte("old"), nil, coordinator.Quorum); err != nil {
			t.Fatal(err)
		}
		clock.offset.Store(0)
		time.Sleep(50 * time.Millisecond) // the copy for n3 leaves, and is lost
		c.Net.Heal()
		if obj, _ := n3.Store.Get(key); obj != nil {
			t.Fatalf("%s: n3 was cut off but holds %v", op, obj)
		}
		var err error
		switch op {
		case "put":
			_, err = n3.Coord.Put(ctx, key, []byte("new"), nil, coordinator.Quorum)
		case "delete":
			_, err = n3.Coord.Delete(ctx, key, nil, coordinator.Quorum)
		case "batch":
			other := []byte(fmt.Sprintf("other-%d", i))
			errs := n3.Coord.PutBatch(ctx, [][]byte{key, other}, [][]byte{[]byte("new"), []byte("x")}, coordinator.Quorum)
			err = errors.Join(errs...)
		}
		if err != nil {
			t.Fatalf("%s by the stale replica: %v", op, err)
		}
		for _, via := range c.Nodes {
			obj, err := via.Coord.Get(ctx, key, coordinator.Quorum)
			if err != nil {
				t.Fatal(err)
			}
			want := "[new]"
			if op == "delete" {
				want = "[]"
			}
			if got := fmt.Sprint(liveValues(obj)); got != want {
				t.Fatalf("%s by a stale replica, read via %s: live values %s, want %s (object %v)", op, via.ID, got, want, obj)
			}
			value, found, err := via.Coord.GetLive(ctx, key, coordinator.Quorum)
			if err != nil {
				t.Fatal(err)
			}
			if op == "delete" && found || op != "delete" && string(value) != "new" {
				t.Fatalf("%s by a stale replica: single-value read via %s answers %q (found %v)", op, via.ID, value, found)
			}
		}
	}
}

// A forwarded write whose replica may have received it is not retried on
// another replica: the first could still apply it, and the write would
// then exist twice (two siblings for one context write). Here the request
// to the first replica is delayed past half the deadline; the write either
// succeeds or fails with ErrUnknownOutcome, and in the end the key holds
// the value once. (Before: it was retried on the next replica and applied
// by both.)
func TestForwardedWriteIsNotAppliedTwice(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 23,
		Coordinator: coordinator.Options{Timeout: 400 * time.Millisecond, ReadRepairChance: -1}})
	for i := 0; i < 3; i++ {
		key := []byte(fmt.Sprintf("slow-%d", i))
		replicas := c.Replicas(key)
		via := c.NonReplica(key)
		base, err := via.Coord.Put(ctxT(t), key, []byte("base"), nil, coordinator.All)
		if err != nil {
			t.Fatal(err)
		}
		c.Net.SetDelay(via.ID, replicas[0].ID, 300*time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
		_, err = via.Coord.Put(ctx, key, []byte("once"), base.Context, coordinator.Quorum)
		cancel()
		if err != nil && !errors.Is(err, coordinator.ErrUnknownOutcome) {
			t.Fatalf("delayed forward: err = %v, want success or ErrUnknownOutcome", err)
		}
		time.Sleep(600 * time.Millisecond) // the delayed request arrives and runs
		c.Net.Heal()
		obj, err := replicas[1].Coord.Get(ctxT(t), key, coordinator.All)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(liveValues(obj)); got != "[once]" {
			t.Fatalf("one context write forwarded once: live values %s, want [once] (object %v)", got, obj)
		}
	}
}

// A client context is checked against what the key's replicas hold: a
// context read from an up-to-date replica is accepted by a coordinator
// that missed the write it names (it learns from a read quorum first) and
// supersedes that write; a context naming writes no replica has seen is
// refused, and stores nothing.
func TestClientContextsAreCheckedAgainstAReadQuorum(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 24,
		Coordinator: coordinator.Options{ReadRepairChance: -1}})
	ctx := ctxT(t)
	n1, n3 := c.Nodes[0], c.Nodes[2]
	key := []byte("ctx-check")
	c.Net.Isolate(n3.ID)
	if _, err := n1.Coord.Put(ctx, key, []byte("v1"), nil, coordinator.Quorum); err != nil {
		t.Fatal(err)
	}
	c.Net.Heal()
	read, err := n1.Coord.Get(ctx, key, coordinator.One)
	if err != nil || read == nil {
		t.Fatalf("read at n1: %v, %v", read, err)
	}
	if _, err := n3.Coord.Put(ctx, key, []byte("v2"), read.Context, coordinator.Quorum); err != nil {
		t.Fatalf("context write through the replica that missed v1: %v", err)
	}
	obj, err := n1.Coord.Get(ctx, key, coordinator.All)
	if err != nil || fmt.Sprint(liveValues(obj)) != "[v2]" {
		t.Fatalf("after a context write that saw v1: %v, %v; want [v2] alone", obj, err)
	}

	forged := obj.Context.Clone()
	forged["nobody~1"] = 7
	_, err = n3.Coord.Put(ctx, key, []byte("v3"), forged, coordinator.Quorum)
	if !errors.Is(err, version.ErrUnknownContext) {
		t.Fatalf("write with a context naming an actor that never wrote the key: err = %v, want ErrUnknownContext", err)
	}
	after, err := n1.Coord.Get(ctx, key, coordinator.All)
	if err != nil || !after.Equal(obj) {
		t.Fatalf("a refused write changed the key: %v -> %v (%v)", obj, after, err)
	}
}

// A context write or delete coordinated by a replica that is behind the
// one the client read from supersedes what the client read: the replica
// learns from a read quorum before it admits the context, instead of
// lowering the context's counters to its own (which made an acknowledged
// delete leave the value it deleted live).
func TestContextWriteThroughStaleReplicaSupersedesWhatItSaw(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 25,
		Coordinator: coordinator.Options{ReadRepairChance: -1}})
	ctx := ctxT(t)
	n1, n3 := c.Nodes[0], c.Nodes[2]
	for _, op := range []string{"delete", "put"} {
		key := []byte("behind-" + op)
		v1, err := n1.Coord.Put(ctx, key, []byte("v1"), nil, coordinator.All)
		if err != nil {
			t.Fatal(err)
		}
		c.Net.Isolate(n3.ID)
		if _, err := n1.Coord.Put(ctx, key, []byte("v2"), v1.Context, coordinator.Quorum); err != nil {
			t.Fatal(err)
		}
		c.Net.Heal()
		read, err := n1.Coord.Get(ctx, key, coordinator.One)
		if err != nil || fmt.Sprint(liveValues(read)) != "[v2]" {
			t.Fatalf("read at n1: %v, %v", read, err)
		}
		want := "[]"
		if op == "delete" {
			_, err = n3.Coord.Delete(ctx, key, read.Context, coordinator.Quorum)
		} else {
			_, err = n3.Coord.Put(ctx, key, []byte("v3"), read.Context, coordinator.Quorum)
			want = "[v3]"
		}
		if err != nil {
			t.Fatalf("%s through the replica that missed v2: %v", op, err)
		}
		obj, err := n1.Coord.Get(ctx, key, coordinator.All)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(liveValues(obj)); got != want {
			t.Fatalf("%s with a context that saw v2, through a replica that missed it: live %s, want %s (%v)", op, got, want, obj)
		}
	}
}

// In a pipeline of SETs, a later SET of a key supersedes an earlier one in
// the same batch, also when the key already exists (the blind writes read
// the replicas' context first: only the first write to a key takes it).
func TestPutBatchRepeatedKeyKeepsTheLastValue(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 26,
		Coordinator: coordinator.Options{ReadRepairChance: -1}})
	ctx := ctxT(t)
	key := []byte("twice")
	n1 := c.Replicas(key)[0]
	if _, err := n1.Coord.Put(ctx, key, []byte("old"), nil, coordinator.All); err != nil {
		t.Fatal(err)
	}
	errs := n1.Coord.PutBatch(ctx, [][]byte{key, []byte("other"), key}, [][]byte{[]byte("a"), []byte("x"), []byte("b")}, coordinator.Quorum)
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	obj, err := n1.Coord.Get(ctx, key, coordinator.All)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(liveValues(obj)); got != "[b]" {
		t.Fatalf("SET k a; SET k b in one batch: live %s, want [b] (%v)", got, obj)
	}
}

// A delete whose context saw a write that reached only one replica (its
// quorum failed, but a client read it there) removes that write, even when
// the delete's coordinator and its read quorum never had it: before it
// admits a context that a read quorum cannot account for, the coordinator
// reads every replica, and refuses the write while one does not answer.
// (Before: the context was lowered to what the quorum held, the delete was
// acknowledged, and the deleted value came back.)
func TestDeleteOfAMinorityWriteDoesNotComeBack(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 27,
		Coordinator: coordinator.Options{ReadRepairChance: -1}})
	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		key := []byte(fmt.Sprintf("minority-%d", i))
		pref := c.Replicas(key)
		holder, via := pref[1], pref[0]
		if _, err := holder.Coord.Put(ctx, key, []byte("base"), nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
		c.Net.Isolate(holder.ID)
		if _, err := holder.Coord.Put(ctx, key, []byte("minority"), nil, coordinator.One); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // its replication messages leave, and are lost
		c.Net.Heal()
		read, err := holder.Coord.Get(ctx, key, coordinator.One)
		if err != nil || fmt.Sprint(liveValues(read)) != "[minority]" {
			t.Fatalf("read at the holder: %v, %v", read, err)
		}
		// via cannot reach the holder: its read quorum is itself and the
		// third replica, which never had the minority write.
		c.Net.Cut(via.ID, holder.ID)
		_, err = via.Coord.Delete(ctx, key, read.Context, coordinator.Quorum)
		c.Net.Heal()
		if err != nil {
			// Refused while the holder was unreachable; it goes through
			// once every replica answers.
			if _, err = via.Coord.Delete(ctx, key, read.Context, coordinator.Quorum); err != nil {
				t.Fatalf("delete through %s after healing: %v", via.ID, err)
			}
		}
		obj, err := pref[2].Coord.Get(ctx, key, coordinator.All)
		if err != nil {
			t.Fatal(err)
		}
		if live := liveValues(obj); len(live) != 0 {
			t.Fatalf("deleted with a context that saw %q, the key still reads %q (%v)", "minority", live, obj)
		}
	}
}
