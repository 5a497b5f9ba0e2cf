package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/version"
)

func liveValues(obj *version.Object) []string {
	var out []string
	if obj == nil {
		return nil
	}
	for _, s := range obj.Live() {
		out = append(out, string(s.Value))
	}
	sort.Strings(out)
	return out
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// With R + W > N, a read that starts after a write was acknowledged returns
// that write (or a later one), even while a minority of each key's replicas
// is cut off from everyone.
func TestReadYourWritesWithMinorityCutOff(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 1})
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := ctxT(t)
	for i := 0; i < 40; i++ {
		key := []byte(fmt.Sprintf("key-%d", i))
		replicas := c.Replicas(key)
		cut := replicas[rng.IntN(len(replicas))]
		c.Net.Isolate(cut.ID)
		c.View.SetAlive(cut.ID, false)
		var ctxClock version.Clock
		for v := 0; v < 3; v++ {
			writer := c.Nodes[rng.IntN(len(c.Nodes))]
			for writer == cut {
				writer = c.Nodes[rng.IntN(len(c.Nodes))]
			}
			val := fmt.Sprintf("v%d-%d", i, v)
			if _, err := writer.Coord.Put(ctx, key, []byte(val), ctxClock, 2); err != nil {
				t.Fatalf("put %s via %s (cut %s): %v", key, writer.ID, cut.ID, err)
			}
			reader := c.Nodes[rng.IntN(len(c.Nodes))]
			for reader == cut {
				reader = c.Nodes[rng.IntN(len(c.Nodes))]
			}
			obj, err := reader.Coord.Get(ctx, key, 2)
			if err != nil {
				t.Fatalf("get %s via %s (cut %s): %v", key, reader.ID, cut.ID, err)
			}
			if got := liveValues(obj); len(got) != 1 || got[0] != val {
				t.Fatalf("get %s via %s after writing %q: got %q", key, reader.ID, val, got)
			}
			ctxClock = obj.Context
		}
		c.Net.Heal()
		c.View.SetAlive(cut.ID, true)
	}
}

// Concurrent writers produce siblings and none is lost; a write with the
// context of a read collapses them.
func TestConcurrentWritersKeepSiblings(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 2})
	ctx := ctxT(t)
	key := []byte("contended")
	var wg sync.WaitGroup
	want := []string{}
	for i, n := range c.Nodes {
		val := fmt.Sprintf("from-%s", n.ID)
		want = append(want, val)
		wg.Add(1)
		go func(i int, n *testcluster.Node) {
			defer wg.Done()
			// An empty context: the writer has seen nothing.
			if _, err := n.Coord.Put(ctx, key, []byte(val), version.Clock{}, 2); err != nil {
				t.Errorf("put via %s: %v", n.ID, err)
			}
		}(i, n)
	}
	wg.Wait()
	sort.Strings(want)
	obj, err := c.Nodes[0].Coord.Get(ctx, key, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := liveValues(obj); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("siblings after concurrent writes: got %q, want %q", got, want)
	}
	if _, err := c.Nodes[1].Coord.Put(ctx, key, []byte("resolved"), obj.Context, 2); err != nil {
		t.Fatal(err)
	}
	obj, err = c.Nodes[2].Coord.Get(ctx, key, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := liveValues(obj); len(got) != 1 || got[0] != "resolved" {
		t.Fatalf("after a write with the read's context: got %q, want [resolved]", got)
	}
}

// Blind writes on the two sides of a partition are both kept once it heals.
func TestPartitionedBlindWritesBecomeSiblings(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 3})
	ctx := ctxT(t)
	key := []byte("split")
	a, b := c.Nodes[0], c.Nodes[1]
	if _, err := a.Coord.Put(ctx, key, []byte("base"), nil, coordinator.All); err != nil {
		t.Fatal(err)
	}
	c.Net.Partition([]string{a.ID}, []string{b.ID, c.Nodes[2].ID})
	if _, err := a.Coord.Put(ctx, key, []byte("left"), nil, coordinator.One); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Coord.Put(ctx, key, []byte("right"), nil, coordinator.One); err != nil {
		t.Fatal(err)
	}
	c.Net.Heal()
	obj, err := c.Nodes[2].Coord.Get(ctx, key, coordinator.All)
	if err != nil {
		t.Fatal(err)
	}
	if got := liveValues(obj); fmt.Sprint(got) != "[left right]" {
		t.Fatalf("after healing: got %q, want [left right] (base superseded on both sides)", got)
	}
}

// A read repairs a replica that missed a write.
func TestReadRepairUpdatesStaleReplica(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 4, Replicas: 3, Seed: 4,
		Coordinator: coordinator.Options{ReadRepairChance: 1}})
	ctx := ctxT(t)
	key := []byte("repair-me")
	replicas := c.Replicas(key)
	stale := replicas[2]
	c.Net.Isolate(stale.ID)
	c.View.SetAlive(stale.ID, false)
	if _, err := replicas[0].Coord.Put(ctx, key, []byte("fresh"), nil, 2); err != nil {
		t.Fatal(err)
	}
	if obj, _ := stale.Store.Get(key); obj != nil {
		t.Fatalf("isolated replica got the write: %v", obj)
	}
	c.Net.Heal()
	c.View.SetAlive(stale.ID, true)
	if _, err := replicas[1].Coord.Get(ctx, key, 2); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		obj, err := stale.Store.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		if got := liveValues(obj); len(got) == 1 && got[0] == "fresh" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("read repair did not reach %s: it holds %v", stale.ID, obj)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A write through a node that is not a replica is coordinated by a replica:
// every dot names a replica.
func TestForwardedWritesAreStampedByReplicas(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 5})
	ctx := ctxT(t)
	for i := 0; i < 20; i++ {
		key := []byte(fmt.Sprintf("fwd-%d", i))
		via := c.NonReplica(key)
		obj, err := via.Coord.Put(ctx, key, []byte("v"), nil, 2)
		if err != nil {
			t.Fatal(err)
		}
		isReplica := map[string]bool{}
		for _, r := range c.Replicas(key) {
			isReplica[r.ID] = true
		}
		for actor := range obj.Context {
			node, _, ok := version.SplitActor(actor)
			if !ok || !isReplica[node] {
				t.Fatalf("key %s written via %s: clock names non-replica %s (%v)", key, via.ID, actor, obj.Context)
			}
		}
	}
}

// When too few replicas answer, the error says how many did.
func TestQuorumErrorCountsReplicas(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 6,
		Coordinator: coordinator.Options{Timeout: 200 * time.Millisecond}})
	ctx := ctxT(t)
	key := []byte("lonely")
	replicas := c.Replicas(key)
	c.Net.Isolate(replicas[1].ID)
	c.Net.Isolate(replicas[2].ID)
	_, err := replicas[0].Coord.Put(ctx, key, []byte("v"), nil, 2)
	var qe *coordinator.QuorumError
	if !errors.As(err, &qe) || qe.Answered != 1 || qe.Needed != 2 || qe.Replicas != 3 {
		t.Fatalf("write with 2 of 3 replicas cut off: got %v, want a QuorumError 1 of 2 (3 replicas)", err)
	}
	_, err = replicas[0].Coord.Get(ctx, key, 2)
	if !errors.As(err, &qe) || qe.Answered != 1 || qe.Needed != 2 {
		t.Fatalf("read with 2 of 3 replicas cut off: got %v", err)
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]int{"": coordinator.Default, "one": coordinator.One, "QUORUM": coordinator.Quorum, "All": coordinator.All, "2": 2} {
		got, err := coordinator.ParseLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "-1", "most", "2.5"} {
		if _, err := coordinator.ParseLevel(bad); err == nil {
			t.Errorf("ParseLevel(%q) accepted", bad)
		}
	}
}

// Reading a key that was never written stores nothing anywhere (read repair
// has nothing to repair).
func TestReadOfMissingKeyWritesNothing(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 7})
	ctx := ctxT(t)
	key := []byte("never-written")
	before := map[string]uint64{} // opening a store writes its incarnation record
	for _, n := range c.Nodes {
		before[n.ID] = n.DB.Metrics().Writes
	}
	obj, err := c.Nodes[0].Coord.Get(ctx, key, coordinator.All)
	if err != nil || obj != nil {
		t.Fatalf("get of a missing key: %v, %v", obj, err)
	}
	time.Sleep(100 * time.Millisecond) // let background repair run
	for _, n := range c.Nodes {
		if m := n.DB.Metrics(); m.Writes != before[n.ID] {
			t.Fatalf("%s wrote %d records after a read of a missing key", n.ID, m.Writes-before[n.ID])
		}
	}
}

// A write through a non-replica succeeds even when the first replica it
// forwards to is dead (its connections are refused) but not yet marked
// down: a request that was never sent is safe to send to another replica.
// (One that may have arrived is not: TestForwardedWriteIsNotAppliedTwice.)
func TestForwardingSkipsAnUndetectedDeadReplica(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 8,
		Coordinator: coordinator.Options{Timeout: time.Second}})
	c.Net.SetFailFast(true)
	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		key := []byte(fmt.Sprintf("undetected-%d", i))
		replicas := c.Replicas(key)
		c.Net.Isolate(replicas[0].ID) // the failure detector has not noticed
		via := c.NonReplica(key)
		if _, err := via.Coord.Put(ctx, key, []byte("v"), nil, 2); err != nil {
			t.Fatalf("put %s via %s with %s silently dead: %v", key, via.ID, replicas[0].ID, err)
		}
		obj, err := replicas[1].Coord.Get(ctx, key, 2)
		if err != nil || fmt.Sprint(liveValues(obj)) != "[v]" {
			t.Fatalf("get %s: %v, %v", key, obj, err)
		}
		c.Net.Heal()
	}
}

// A read whose first-choice replica died without being marked down still
// answers, well before the request timeout: it asks another replica.
func TestReadSpeculatesPastAnUndetectedDeadReplica(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 9,
		Coordinator: coordinator.Options{Timeout: 2 * time.Second, ReadRepairChance: -1}})
	ctx := ctxT(t)
	for i := 0; i < 10; i++ {
		key := []byte(fmt.Sprintf("spec-%d", i))
		if _, err := c.Nodes[0].Coord.Put(ctx, key, []byte("v"), nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
	}
	c.Net.Isolate(c.Nodes[1].ID) // not marked down
	for i := 0; i < 10; i++ {
		key := []byte(fmt.Sprintf("spec-%d", i))
		start := time.Now()
		obj, err := c.Nodes[0].Coord.Get(ctx, key, 2)
		if err != nil || fmt.Sprint(liveValues(obj)) != "[v]" {
			t.Fatalf("get %s with n2 silently dead: %v, %v", key, obj, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("get %s took %s: it waited for the dead replica", key, d)
		}
	}
}

// GetLive answers what a single-value read of Get's object answers, on
// every node (replicas take the local path at R=1, the others ask), for
// siblings, a deleted key and a key never written.
func TestGetLiveAgreesWithGet(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 4})
	ctx := ctxT(t)
	check := func(key []byte, wantFound bool) {
		t.Helper()
		obj, err := c.Nodes[0].Coord.Get(ctx, key, 3)
		if err != nil {
			t.Fatal(err)
		}
		want, found := version.LiveValue(obj)
		if found != wantFound {
			t.Fatalf("%s: Get's live value found=%v, want %v", key, found, wantFound)
		}
		for _, n := range c.Nodes {
			for r := 1; r <= 3; r++ {
				got, gfound, err := n.Coord.GetLive(ctx, key, r)
				if err != nil {
					t.Fatalf("GetLive(%s) via %s at R=%d: %v", key, n.ID, r, err)
				}
				if gfound != found || string(got) != string(want) {
					t.Fatalf("GetLive(%s) via %s at R=%d = %q, %v; Get's object gives %q, %v", key, n.ID, r, got, gfound, want, found)
				}
			}
		}
	}
	key := []byte("siblings")
	for i, n := range c.Nodes[:3] {
		if _, err := n.Coord.Put(ctx, key, []byte(fmt.Sprint("value-", i)), version.Clock{}, 3); err != nil {
			t.Fatal(err)
		}
	}
	check(key, true)
	obj, err := c.Nodes[0].Coord.Get(ctx, key, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Nodes[1].Coord.Delete(ctx, key, obj.Context, 3); err != nil {
		t.Fatal(err)
	}
	check(key, false)
	check([]byte("never-written"), false)
}
