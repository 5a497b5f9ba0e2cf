package coordinator_test

import (
	"slices"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/version"
)

// doubled returns the values that more than one live sibling of obj holds.
// Every write in these tests writes a value of its own, so a doubled value
// is one write stored twice.
func doubled(obj *version.Object) []string {
	seen := map[string]int{}
	var out []string
	for _, s := range obj.Live() {
		if seen[string(s.Value)]++; seen[string(s.Value)] == 2 {
			out = append(out, string(s.Value))
		}
	}
	return out
}

// keyReplicasAgree waits until the key's replicas store the same object and
// returns it, reading at R=ALL meanwhile (read repair).
func keyReplicasAgree(t *testing.T, c *testcluster.Cluster, via *testcluster.Node, key []byte) *version.Object {
	t.Helper()
	return storesAgree(t, c.Replicas(key), key, 10*time.Second, func() { via.Coord.Get(ctxT(t), key, coordinator.All) })
}

// A client that does not learn a write's outcome sends it again, through
// another node, under the same write ID; the write is stored once:
//
//   - "reply lost": the replicas' answers to the first forwarding node are
//     lost after the write was stored; the retry, forwarded by another
//     node, reaches a replica that holds the first attempt and is not
//     stamped again;
//   - "coordinator cut off": the first attempt's coordinating replica is
//     cut off and stores it alone; the retry is coordinated by another
//     replica under a dot of its own; once the network heals, the two
//     attempts meet and become one sibling.
//
// Each case runs for a blind write and for a write with a read's context
// (an increment's shape). The canary runs the same schedules without a
// write ID, as a client before write IDs did, and the checker (doubled)
// must find the write stored twice wherever the schedule can store it
// twice: both cases for a write with a context, the second for a blind
// write (a blind retry through a replica that holds the first attempt
// supersedes it).
func TestRetriedWriteIsAppliedOnce(t *testing.T) {
	for _, tc := range []struct {
		name        string
		withContext bool
		cutOff      bool
		w           int
	}{
		{"reply lost, blind", false, false, 2},
		{"reply lost, with context", true, false, 2},
		{"reply lost, blind, W=3 (read first)", false, false, 3},
		{"coordinator cut off, blind", false, true, 2},
		{"coordinator cut off, with context", true, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, named := range []bool{true, false} {
				got := retrySchedule(t, named, tc.withContext, tc.cutOff, tc.w)
				switch {
				case named && len(got) > 0:
					t.Fatalf("with a write ID, the retried write is stored twice: %q", got)
				case !named && (tc.withContext || tc.cutOff) && len(got) == 0:
					t.Fatalf("canary: without a write ID the checker found no doubled write")
				}
			}
		})
	}
}

// retrySchedule runs one schedule on a new five-node cluster (N=3, the
// write at level w: 2 takes the checked path for a blind write, 3 reads
// a quorum first) and returns the doubled values the key's replicas agree
// on afterwards.
func retrySchedule(t *testing.T, named, withContext, cutOff bool, w int) []string {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 7})
	ctx := ctxT(t)
	key := []byte("retried")
	replicas := c.Replicas(key)
	var others []*testcluster.Node
	for _, n := range c.Nodes {
		if !slices.Contains(replicas, n) {
			others = append(others, n)
		}
	}
	var causal version.Clock
	if withContext {
		if _, err := replicas[0].Coord.Put(ctx, key, []byte("old"), nil, 2); err != nil {
			t.Fatal(err)
		}
		obj, err := replicas[1].Coord.Get(ctx, key, 2)
		if err != nil {
			t.Fatal(err)
		}
		causal = obj.Context.Clone()
	}
	wctx := ctx
	if named {
		wctx = coordinator.WithWriteID(ctx, 0x5eed)
	}
	value := []byte("new")
	write := func(via *testcluster.Node) error {
		var c version.Clock // nil: a blind write
		if causal != nil {
			c = causal.Clone()
		}
		_, err := via.Coord.Put(wctx, key, value, c, w)
		return err
	}

	first, retry := others[0], others[1] // "reply lost"
	if cutOff {
		first, retry = replicas[0], replicas[1]
		c.Net.Isolate(first.ID)
		c.View.SetAlive(first.ID, false) // as gossip soon says
		if err := write(first); err == nil {
			t.Fatal("a write coordinated by a cut-off replica was acknowledged")
		}
		if obj, _ := first.Store.Get(key); !slices.Contains(liveValues(obj), string(value)) {
			t.Fatalf("the cut-off coordinator did not store the first attempt: %v", obj)
		}
	} else {
		for _, r := range replicas {
			c.Net.Cut(r.ID, first.ID) // the replicas' answers are lost
		}
		if err := write(first); err == nil {
			t.Fatal("a write whose answers were lost was acknowledged")
		}
		// The first attempt was stored (by the replica it was forwarded
		// to, and replicated from there).
		for _, r := range replicas {
			keyHolds(t, r, value)
		}
	}
	if err := write(retry); err != nil {
		t.Fatalf("retry through %s: %v", retry.ID, err)
	}
	if named && !cutOff {
		// The replica the retry was forwarded to held the first attempt.
		var recognized uint64
		for _, r := range replicas {
			recognized += r.Coord.Stats().RetriesRecognized
		}
		if recognized != 1 {
			t.Fatalf("%d retries recognized, want 1", recognized)
		}
	}
	c.Net.Heal()
	for _, n := range c.Nodes {
		c.View.SetAlive(n.ID, true)
	}
	obj := keyReplicasAgree(t, c, retry, key)
	if !slices.Contains(liveValues(obj), string(value)) {
		t.Fatalf("the write is gone: %v", obj)
	}
	if withContext && slices.Contains(liveValues(obj), "old") {
		t.Fatalf("the value the write's context covers survived: %v", obj)
	}
	t.Logf("named %v: %v", named, obj)
	return doubled(obj)
}

// keyHolds waits until n's store holds value as a live sibling.
func keyHolds(t *testing.T, n *testcluster.Node, value []byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		obj, err := n.Store.Get([]byte("retried"))
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(liveValues(obj), string(value)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never stored %q: %v", n.ID, value, obj)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// With IgnoreWriteIDs (ringkv server --no-write-ids, for a rolling upgrade
// from a release whose nodes refuse named versions) no version carries a
// write ID, whether the write is coordinated where it arrives or
// forwarded.
func TestIgnoreWriteIDsStoresNone(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 4, Replicas: 3, Seed: 9, Coordinator: coordinator.Options{IgnoreWriteIDs: true}})
	ctx := coordinator.WithWriteID(ctxT(t), 0xabc)
	key := []byte("unnamed")
	for _, via := range []*testcluster.Node{c.Replicas(key)[0], c.NonReplica(key)} {
		if _, err := via.Coord.Put(ctx, key, []byte("v-"+via.ID), nil, 3); err != nil {
			t.Fatal(err)
		}
		for _, r := range c.Replicas(key) {
			obj, err := r.Store.Get(key)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range obj.Siblings {
				if s.WriteID != 0 {
					t.Fatalf("written through %s: %s holds %v with write ID %x", via.ID, r.ID, s.Dot, s.WriteID)
				}
			}
		}
	}
}
