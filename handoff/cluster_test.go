package handoff_test

import (
	"bytes"
	"context"
	"fmt"
	"github.com/ringkv/ringkv/ring"
	"slices"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// newCluster is three nodes, N=3 (every node replicates every key), with
// hinted handoff passing every 20ms and read repair off, so that the only
// way a write a replica missed can reach it is a hint.
func newCluster(t *testing.T, crashable bool) *testcluster.Cluster {
	return testcluster.New(t, testcluster.Options{
		Nodes: 3, Replicas: 3, Crashable: crashable,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 300 * time.Millisecond},
		Handoff:     &handoff.Options{Interval: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond, Timeout: 200 * time.Millisecond},
	})
}

// eventually polls cond until it holds or 10 seconds pass.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s: %s", what, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pendingFor(c *testcluster.Cluster, holder, target string) func() handoff.Stats {
	return func() handoff.Stats { return c.Node(holder).Hints.Stats()[target] }
}

// writeWhileCut writes keys through n1 at the default quorum, half with
// Put and half with PutBatch, and returns what n1 stored for each.
func writeWhileCut(t *testing.T, c *testcluster.Cluster, prefix string, n int) map[string]*version.Object {
	t.Helper()
	ctx := context.Background()
	co := c.Node("n1").Coord
	var keys, values [][]byte
	for i := range n {
		k := fmt.Appendf(nil, "%s-%03d", prefix, i)
		if i%2 == 0 {
			if _, err := co.Put(ctx, k, []byte("v"), nil, coordinator.Default); err != nil {
				t.Fatalf("put %s: %v", k, err)
			}
			continue
		}
		keys, values = append(keys, k), append(values, fmt.Appendf(nil, "batch %d", i))
	}
	for i, err := range co.PutBatch(ctx, keys, values, coordinator.Default) {
		if err != nil {
			t.Fatalf("batch put %s: %v", keys[i], err)
		}
	}
	want := map[string]*version.Object{}
	for i := range n {
		k := fmt.Sprintf("%s-%03d", prefix, i)
		obj, err := c.Node("n1").Store.Get([]byte(k))
		if err != nil || obj == nil {
			t.Fatalf("n1 lacks %s: %v", k, err)
		}
		want[k] = obj
	}
	return want
}

// missing lists the keys whose version in want node's own store does not
// hold (a local read: no coordinator, no read repair).
func missing(t *testing.T, c *testcluster.Cluster, node string, want map[string]*version.Object) []string {
	t.Helper()
	st, err := c.StoreOf(node)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k, obj := range want {
		got, err := st.Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		if got == nil || !got.Descends(obj) {
			out = append(out, k)
		}
	}
	return out
}

func TestHintsDeliverEveryMissedWriteWithoutAnyRead(t *testing.T) {
	c := newCluster(t, false)
	c.Net.Isolate("n3")
	c.View.SetAlive("n3", false)
	want := writeWhileCut(t, c, "k", 40)
	stats := pendingFor(c, "n1", "n3")
	eventually(t, "n1 keeps a hint per write n3 missed", func() (bool, string) {
		return stats().Pending == len(want), fmt.Sprintf("%+v", stats())
	})
	if m := missing(t, c, "n3", want); len(m) != len(want) {
		t.Fatalf("n3 got %d writes while cut off", len(want)-len(m))
	}
	if p := c.Node("n1").Hints.Stats()["n2"].Pending; p != 0 {
		t.Fatalf("n1 keeps %d hints for n2, which acknowledged every write", p)
	}

	c.Net.Heal()
	c.View.SetAlive("n3", true)
	eventually(t, "n3 holds every write it missed", func() (bool, string) {
		m := missing(t, c, "n3", want)
		return len(m) == 0, fmt.Sprintf("%d missing, hints %+v", len(m), stats())
	})
	eventually(t, "n1's hints for n3 are deleted", func() (bool, string) {
		n := 0
		c.Node("n1").Store.ScanHints(nil, nil, func(k, v []byte) bool { n++; return true })
		return n == 0 && stats().Pending == 0 && stats().Bytes == 0, fmt.Sprintf("%d stored, %+v", n, stats())
	})
}

func TestHintKeptWhenWriteFailsItsQuorum(t *testing.T) {
	c := newCluster(t, false)
	c.Net.Isolate("n2")
	c.Net.Isolate("n3")
	// A write with an empty context needs no read first; it is stored on n1
	// and fails its quorum of 2.
	key := []byte("lonely")
	if _, err := c.Node("n1").Coord.Put(context.Background(), key, []byte("v"), version.Clock{}, coordinator.Default); err == nil {
		t.Fatal("write with two of three replicas cut off reached its quorum")
	}
	obj, err := c.Node("n1").Store.Get(key)
	if err != nil || obj == nil {
		t.Fatalf("n1 did not store the write: %v", err)
	}
	for _, target := range []string{"n2", "n3"} {
		st := pendingFor(c, "n1", target)
		eventually(t, "n1 keeps a hint for "+target, func() (bool, string) {
			return st().Pending == 1, fmt.Sprintf("%+v", st())
		})
	}
	c.Net.Heal()
	for _, target := range []string{"n2", "n3"} {
		eventually(t, target+" receives the write", func() (bool, string) {
			m := missing(t, c, target, map[string]*version.Object{string(key): obj})
			return len(m) == 0, fmt.Sprintf("%+v", pendingFor(c, "n1", target)())
		})
	}
}

func TestHintsSurviveCoordinatorCrash(t *testing.T) {
	c := newCluster(t, true)
	c.Net.Isolate("n3")
	c.View.SetAlive("n3", false)
	want := writeWhileCut(t, c, "d", 20)
	eventually(t, "n1 keeps a hint per write n3 missed", func() (bool, string) {
		st := pendingFor(c, "n1", "n3")()
		return st.Pending == len(want), fmt.Sprintf("%+v", st)
	})
	before := pendingFor(c, "n1", "n3")()

	// A power cut: only what n1 fsynced survives.
	c.Kill("n1")
	c.Restart("n1")
	if after := pendingFor(c, "n1", "n3")(); after.Pending != before.Pending || after.Bytes != before.Bytes {
		t.Fatalf("hints after n1's crash = %+v, before = %+v", after, before)
	}
	if m := missing(t, c, "n3", want); len(m) != len(want) {
		t.Fatalf("n3 got %d writes while cut off", len(want)-len(m))
	}
	c.Net.Heal()
	c.View.SetAlive("n3", true)
	eventually(t, "n3 holds every write it missed, from hints that outlived n1's crash", func() (bool, string) {
		m := missing(t, c, "n3", want)
		return len(m) == 0, fmt.Sprintf("%d missing, hints %+v", len(m), pendingFor(c, "n1", "n3")())
	})
}

func TestHintDeliveryRetriesUntilTargetAnswers(t *testing.T) {
	c := newCluster(t, false)
	c.Net.Isolate("n3")
	want := writeWhileCut(t, c, "r", 6)
	// n3 is marked alive but unreachable: deliveries fail and back off.
	st := pendingFor(c, "n1", "n3")
	eventually(t, "a failed delivery is reported", func() (bool, string) {
		return st().LastError != "" && st().Pending == len(want), fmt.Sprintf("%+v", st())
	})
	c.Net.Heal()
	eventually(t, "delivery succeeds after the heal", func() (bool, string) {
		m := missing(t, c, "n3", want)
		return len(m) == 0 && st().Pending == 0 && st().LastError == "", fmt.Sprintf("%d missing, %+v", len(m), st())
	})
}

// A target that refuses batch messages (an older node) gets hints one by
// one; DeliverBatch reports the leading entries it acknowledged, so a hint
// it refuses, and every later one, stays to be retried in order.
func TestDeliverBatchCountsLeadingAcknowledgedEntries(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3,
		Coordinator: coordinator.Options{ReadRepairChance: -1},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			if id != "n3" {
				return h
			}
			return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
				if kind == 4 { // kindReplicateBatch: unknown to this node
					return nil, fmt.Errorf("unknown peer message kind %d", kind)
				}
				if kind == 2 && bytes.Contains(payload, []byte("poison")) {
					return nil, fmt.Errorf("refused")
				}
				return h.Handle(ctx, from, kind, payload)
			})
		}})
	ctx := context.Background()
	var keys [][]byte
	var objs []*version.Object
	for _, k := range []string{"a", "b", "poison", "c"} {
		obj := &version.Object{}
		if _, err := obj.WriteBlind(version.Actor("n1", 1), []byte(k), false, 1); err != nil {
			t.Fatal(err)
		}
		keys, objs = append(keys, []byte(k)), append(objs, obj)
	}
	n, err := c.Node("n1").Coord.DeliverBatch(ctx, "n3", keys, objs)
	if n != 2 || err == nil {
		t.Fatalf("DeliverBatch = %d, %v; want 2 acknowledged and the refusal", n, err)
	}
	want := map[string]*version.Object{"a": objs[0], "b": objs[1]}
	if m := missing(t, c, "n3", want); len(m) != 0 {
		t.Fatalf("n3 lacks %v", m)
	}
	if m := missing(t, c, "n3", map[string]*version.Object{"c": objs[3]}); len(m) != 1 {
		t.Fatal("an entry after the refused one was delivered out of order")
	}
	n, err = c.Node("n1").Coord.DeliverBatch(ctx, "n2", keys, objs)
	if n != 4 || err != nil {
		t.Fatalf("DeliverBatch to a current node = %d, %v; want 4, nil", n, err)
	}
}

// A hint for a node that then leaves the ring goes to the key's current
// owners: delivered to the left node (or kept for it forever), the write
// would leave with it, though it counted toward the write's quorum. n1
// and n2 take writes whose third replica is n4, which is cut off, as is
// n3 (so no fallback stands in): n1 keeps the hints for n4. Then n4 leaves
// the ring without coming back, n3 is healed and replicates those keys in
// its place; the hints reach n3.
func TestHintsForALeftNodeGoToTheKeysOwners(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{
		Nodes: 4, Replicas: 3,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 300 * time.Millisecond},
		Handoff:     &handoff.Options{Interval: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond, Timeout: 200 * time.Millisecond},
	})
	ctx := context.Background()
	rg := c.View.Ring()
	var keys []string
	for i := 0; len(keys) < 30 && i < 10000; i++ {
		k := fmt.Sprintf("k-%04d", i)
		pref := rg.PreferenceForKey([]byte(k))
		if slices.Contains(pref, "n1") && slices.Contains(pref, "n2") && slices.Contains(pref, "n4") {
			keys = append(keys, k)
		}
	}
	if len(keys) < 30 {
		t.Fatalf("found only %d keys replicated on n1, n2 and n4", len(keys))
	}
	for _, id := range []string{"n3", "n4"} {
		c.Net.Isolate(id)
		c.View.SetAlive(id, false)
	}
	want := map[string]*version.Object{}
	for _, k := range keys {
		if _, err := c.Node("n1").Coord.Put(ctx, []byte(k), []byte("v"), nil, coordinator.Default); err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		obj, err := c.Node("n1").Store.Get([]byte(k))
		if err != nil || obj == nil {
			t.Fatalf("n1 lacks %s: %v", k, err)
		}
		want[k] = obj
	}
	stats := pendingFor(c, "n1", "n4")
	eventually(t, "n1 keeps a hint for n4 per write", func() (bool, string) {
		return stats().Pending == len(keys), fmt.Sprintf("%+v", stats())
	})

	c.SetState("n4", ring.StateLeft)
	c.Net.Heal()
	c.Net.Isolate("n4") // gone for good
	c.View.SetAlive("n3", true)
	eventually(t, "n3, which replicates n4's keys now, holds every write n4 missed", func() (bool, string) {
		m := missing(t, c, "n3", want)
		return len(m) == 0, fmt.Sprintf("%d missing, hints %+v", len(m), stats())
	})
	eventually(t, "n1's hints for n4 are done", func() (bool, string) {
		return stats().Pending == 0, fmt.Sprintf("%+v", stats())
	})
}
