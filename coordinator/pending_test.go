package coordinator_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/internal/testcluster"
)

// joiningCluster is four nodes, N=3, the fourth (n4) joining: it owns
// nothing in the ring but is the pending owner of about 3/4 of the keys.
func joiningCluster(t *testing.T, hintInterval time.Duration) *testcluster.Cluster {
	return testcluster.New(t, testcluster.Options{
		Nodes: 4, Replicas: 3, Joining: 1, Seed: 21,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 300 * time.Millisecond},
		Handoff:     &handoff.Options{Interval: hintInterval, BackoffMax: 100 * time.Millisecond, Timeout: 300 * time.Millisecond},
	})
}

// gainedBy reports whether node is a pending owner of key in the cluster's
// current ring.
func gainedBy(c *testcluster.Cluster, key, node string) bool {
	r := c.View.Ring()
	return slices.Contains(r.Pending(r.PartitionOfKey([]byte(key))), node)
}

// waitContents polls node's store until check accepts it.
func waitContents(t *testing.T, c *testcluster.Cluster, node string, check func(map[string]bool) error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := c.Contents(node)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for k := range got {
			have[k] = true
		}
		err = check(have)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every write, single or batched, through any node, reaches the joining
// node exactly for the keys it will replicate, and it is never read from.
func TestWritesReachPendingOwnersOnlyForTheirGainedKeys(t *testing.T) {
	c := joiningCluster(t, time.Hour)
	ctx := ctxT(t)
	want := map[string]bool{}
	var gained, other int
	for i := range 60 {
		k := fmt.Sprintf("single-%d", i)
		via := c.Nodes[i%4] // n4 forwards: it replicates nothing yet
		if _, err := via.Coord.Put(ctx, []byte(k), []byte("v"), nil, 2); err != nil {
			t.Fatalf("put %s via %s: %v", k, via.ID, err)
		}
		want[k] = gainedBy(c, k, "n4")
	}
	var keys, vals [][]byte
	for i := range 60 {
		k := fmt.Sprintf("batch-%d", i)
		keys, vals = append(keys, []byte(k)), append(vals, []byte("v"))
		want[k] = gainedBy(c, k, "n4")
	}
	for i, err := range c.Nodes[1].Coord.PutBatch(ctx, keys, vals, 2) {
		if err != nil {
			t.Fatalf("batch put %s: %v", keys[i], err)
		}
	}
	for _, g := range want {
		if g {
			gained++
		} else {
			other++
		}
	}
	if gained < 20 || other < 10 {
		t.Fatalf("test needs both kinds of key: %d gained by n4, %d not", gained, other)
	}
	waitContents(t, c, "n4", func(have map[string]bool) error {
		for k, g := range want {
			if g != have[k] {
				return fmt.Errorf("n4 holds %s: %v, want %v (pending owner: %v)", k, have[k], g, g)
			}
		}
		return nil
	})
	// Reads never ask n4: cut off, every key still reads at R=3.
	c.Net.Isolate("n4")
	for k := range want {
		if _, err := c.Nodes[0].Coord.Get(ctx, []byte(k), 3); err != nil {
			t.Fatalf("get %s at R=3 with the joining node cut off: %v", k, err)
		}
	}
}

// A pending owner's acknowledgement counts toward no level: with it cut
// off, writes at W=ALL succeed at once, and what it missed is kept as hints
// for it and delivered once it is back.
func TestPendingOwnerNotCountedAndHintedWhenItMisses(t *testing.T) {
	c := joiningCluster(t, 50*time.Millisecond)
	ctx := ctxT(t)
	c.Net.Isolate("n4")
	c.View.SetAlive("n4", false)
	var gained []string
	for i := 0; len(gained) < 10; i++ {
		k := fmt.Sprintf("k-%d", i)
		if !gainedBy(c, k, "n4") {
			continue
		}
		start := time.Now()
		if _, err := c.Nodes[i%3].Coord.Put(ctx, []byte(k), []byte("v"), nil, 3); err != nil {
			t.Fatalf("put %s at W=3 with the pending owner cut off: %v", k, err)
		}
		if d := time.Since(start); d > 250*time.Millisecond {
			t.Fatalf("put %s waited %v for the pending owner", k, d)
		}
		gained = append(gained, k)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		pending := 0
		for _, n := range c.Nodes[:3] {
			st, err := c.HintStats(n.ID)
			if err != nil {
				t.Fatal(err)
			}
			pending += st["n4"].Pending
		}
		if pending >= len(gained) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d hints for n4, want %d", pending, len(gained))
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.Net.Heal()
	c.View.SetAlive("n4", true)
	waitContents(t, c, "n4", func(have map[string]bool) error {
		for _, k := range gained {
			if !have[k] {
				return fmt.Errorf("n4 misses %s after its hints were due", k)
			}
		}
		return nil
	})
}

// Once the joining node is normal, it is a primary and no longer pending:
// writes count it, and nothing is pending any more.
func TestNoPendingOwnersOnceTheJoinerIsNormal(t *testing.T) {
	c := joiningCluster(t, time.Hour)
	r := c.SetState("n4", 1) // ring.StateNormal
	for p := range r.Partitions() {
		if pend := r.Pending(p); len(pend) != 0 {
			t.Fatalf("partition %d: pending %v after the join", p, pend)
		}
	}
	if len(r.Ownership()["n4"]) == 0 {
		t.Fatal("n4 owns nothing once normal")
	}
}
