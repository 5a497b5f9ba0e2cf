package coordinator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// PutBatch from one node: keys it is a replica of (stored with one engine
// batch) and keys it is not (forwarded) all reach W replicas, a key written
// twice in the batch ends with the later value as its only sibling, and
// every key reads back with R=2 from another node.
func TestPutBatchMixedLocalAndForwarded(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 11})
	ctx := ctxT(t)
	from := c.Nodes[0]
	var keys, values [][]byte
	want := map[string]string{}
	local, forwarded := 0, 0
	for i := 0; i < 40; i++ {
		k := fmt.Sprintf("batch-%d", i)
		keys = append(keys, []byte(k))
		values = append(values, []byte("first-"+k))
		want[k] = "first-" + k
		isReplica := false
		for _, r := range c.Replicas([]byte(k)) {
			isReplica = isReplica || r == from
		}
		if isReplica {
			local++
		} else {
			forwarded++
		}
	}
	if local < 2 || forwarded < 2 {
		t.Fatalf("test needs both kinds of key: %d local, %d forwarded", local, forwarded)
	}
	// Write two keys (one of each kind, if the layout allows) a second time.
	for _, i := range []int{3, 17} {
		k := string(keys[i])
		keys = append(keys, keys[i])
		values = append(values, []byte("second-"+k))
		want[k] = "second-" + k
	}
	errs := from.Coord.PutBatch(ctx, keys, values, 2)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("PutBatch key %d (%s): %v", i, keys[i], err)
		}
	}
	reader := c.Nodes[1]
	for k, v := range want {
		obj, err := reader.Coord.Get(ctx, []byte(k), 2)
		if err != nil {
			t.Fatalf("get %s: %v", k, err)
		}
		if got := liveValues(obj); len(got) != 1 || got[0] != v {
			t.Fatalf("get %s: got %q, want [%q]", k, got, v)
		}
	}
}

// A batch's errors are per key: with one node cut off and W=ALL, exactly
// the keys that have it as a replica fail (with a quorum error where this
// node coordinates them; forwarded ones carry the remote coordinator's
// error), and the others succeed.
func TestPutBatchErrorsArePerKey(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 12})
	ctx := ctxT(t)
	cut := c.Nodes[4]
	c.Net.Isolate(cut.ID)
	c.View.SetAlive(cut.ID, false)
	from := c.Nodes[0]
	var keys, values [][]byte
	for i := 0; i < 30; i++ {
		keys = append(keys, []byte(fmt.Sprintf("perkey-%d", i)))
		values = append(values, []byte("v"))
	}
	errs := from.Coord.PutBatch(ctx, keys, values, coordinator.All)
	failed, ok := 0, 0
	for i, err := range errs {
		hasCut := false
		for _, r := range c.Replicas(keys[i]) {
			hasCut = hasCut || r == cut
		}
		isReplica := false
		for _, r := range c.Replicas(keys[i]) {
			isReplica = isReplica || r == from
		}
		var qe *coordinator.QuorumError
		switch {
		case hasCut && err == nil:
			t.Fatalf("key %s has the cut node as a replica: want an error", keys[i])
		case hasCut && isReplica && !errors.As(err, &qe):
			t.Fatalf("key %s has the cut node as a replica: want a quorum error, got %v", keys[i], err)
		case !hasCut && err != nil:
			t.Fatalf("key %s does not involve the cut node: %v", keys[i], err)
		case hasCut:
			failed++
		default:
			ok++
		}
	}
	if failed == 0 || ok == 0 {
		t.Fatalf("want both outcomes: %d failed, %d succeeded", failed, ok)
	}
}

// GetBatch from one node answers every key as Get would: keys this node
// replicates (local read plus one message per other replica) and keys it
// does not (Get's path), present and absent; a key whose local copy is
// stale comes back with the newer version, and read repair brings the
// local copy up to date.
func TestGetBatch(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 21,
		Coordinator: coordinator.Options{ReadRepairChance: -1}})
	ctx := ctxT(t)
	from := c.Nodes[0]
	var keys [][]byte
	want := map[string]string{}
	for i := range 30 {
		k := fmt.Sprintf("gb-%d", i)
		keys = append(keys, []byte(k))
		if i%5 == 4 {
			continue // absent
		}
		if _, err := c.Nodes[i%5].Coord.Put(ctx, []byte(k), []byte("v-"+k), nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
		want[k] = "v-" + k
	}
	// Make from's copy of one key it replicates stale.
	var stale []byte
	for _, k := range keys {
		if _, ok := want[string(k)]; !ok {
			continue
		}
		for _, r := range c.Replicas(k) {
			if r == from && stale == nil {
				stale = k
			}
		}
	}
	if stale == nil {
		t.Fatal("test needs a present key that node 0 replicates")
	}
	c.Net.Isolate(from.ID)
	writer := c.Nodes[1]
	old, err := writer.Coord.Get(ctx, stale, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := writer.Coord.Put(ctx, stale, []byte("newer"), old.Context, 2); err != nil {
		t.Fatal(err)
	}
	c.Net.Heal()
	want[string(stale)] = "newer"

	objs, errs := from.Coord.GetBatch(ctx, keys, 2)
	for i, k := range keys {
		if errs[i] != nil {
			t.Fatalf("GetBatch %s: %v", k, errs[i])
		}
		w, present := want[string(k)]
		got := liveValues(objs[i])
		switch {
		case !present && objs[i] != nil:
			t.Fatalf("GetBatch %s (absent): %v", k, got)
		case present && (len(got) != 1 || got[0] != w):
			t.Fatalf("GetBatch %s: %q, want [%q]", k, got, w)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		local, err := from.Store.Get(stale)
		if err != nil {
			t.Fatal(err)
		}
		if got := liveValues(local); len(got) == 1 && got[0] == "newer" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read repair did not update node 0's stale copy of %s: %q", stale, liveValues(local))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A replica that does not answer (cut off, not yet marked down) costs a
// GetBatch part of its time, not its answers: the keys go down Get's path.
func TestGetBatchPastADeadReplica(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 22,
		Coordinator: coordinator.Options{ReadRepairChance: -1}})
	ctx := ctxT(t)
	var keys [][]byte
	for i := range 20 {
		k := []byte(fmt.Sprintf("dead-%d", i))
		keys = append(keys, k)
		if _, err := c.Nodes[0].Coord.Put(ctx, k, k, nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
	}
	c.Net.Isolate(c.Nodes[3].ID) // alive as far as the failure detector knows
	objs, errs := c.Nodes[0].Coord.GetBatch(ctx, keys, 2)
	for i, k := range keys {
		if errs[i] != nil {
			t.Fatalf("GetBatch %s with a dead replica: %v", k, errs[i])
		}
		if got := liveValues(objs[i]); len(got) != 1 || got[0] != string(k) {
			t.Fatalf("GetBatch %s: %q", k, got)
		}
	}
}

// A node of an older version, which does not know the batch messages
// (kinds 4 and 5), still takes a batch's writes one by one and still
// answers a batch's reads through Get's path: a rolling upgrade does not
// fail writes or reads.
func TestBatchesWithAnOlderNode(t *testing.T) {
	const old = "n2"
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 23,
		Coordinator: coordinator.Options{ReadRepairChance: -1},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			if id != old {
				return h
			}
			return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
				if kind == 4 || kind == 5 || kind == 9 || kind == 10 {
					return nil, fmt.Errorf("unknown peer message kind %d", kind)
				}
				return h.Handle(ctx, from, kind, payload)
			})
		}})
	ctx := ctxT(t)
	from := c.Nodes[0]
	var keys, values [][]byte
	withOld := 0
	for i := range 40 {
		k := []byte(fmt.Sprintf("upgrade-%d", i))
		keys, values = append(keys, k), append(values, append([]byte("v-"), k...))
		for _, r := range c.Replicas(k) {
			if r.ID == old {
				withOld++
			}
		}
	}
	if withOld == 0 {
		t.Fatal("test needs keys replicated on the older node")
	}
	for i, err := range from.Coord.PutBatch(ctx, keys, values, coordinator.All) {
		if err != nil {
			t.Fatalf("PutBatch %s with W=ALL and an older replica: %v", keys[i], err)
		}
	}
	objs, errs := from.Coord.GetBatch(ctx, keys, coordinator.All)
	for i := range keys {
		if errs[i] != nil {
			t.Fatalf("GetBatch %s with R=ALL and an older replica: %v", keys[i], errs[i])
		}
		if got := liveValues(objs[i]); len(got) != 1 || got[0] != string(values[i]) {
			t.Fatalf("GetBatch %s: %q", keys[i], got)
		}
	}
}

// A full read-repair read (ReadRepairChance 1) in a batch asks every
// primary in the batch's messages. A slow replica whose answers the quorum
// does not need does not hold the batch, and when its answers come, after
// the batch answered, the replica is repaired from them: one GetBatch
// repairs a replica that missed writes.
func TestGetBatchFullReadRepairs(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 23,
		Coordinator: coordinator.Options{ReadRepairChance: 1, Timeout: 4 * time.Second}})
	ctx := ctxT(t)
	from, stale := c.Nodes[0], c.Nodes[2]
	var keys [][]byte
	for i := range 20 {
		keys = append(keys, []byte(fmt.Sprintf("fr-%d", i)))
	}
	writeWhileDown(t, c, from, stale, keys)

	// The stale replica answers late: the batch must not wait for it.
	c.Net.SetDelay(from.ID, stale.ID, 1500*time.Millisecond)
	start := time.Now()
	objs, errs := from.Coord.GetBatch(ctx, keys, 2)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("GetBatch waited %v for a replica the quorum did not need", took)
	}
	for i, k := range keys {
		if got := liveValues(objs[i]); errs[i] != nil || len(got) != 1 || got[0] != "v-"+string(k) {
			t.Fatalf("GetBatch %s: %q, %v", k, got, errs[i])
		}
	}
	// The late answers are read in the background and the stale replica
	// repaired from them, by this one batch.
	waitRepaired(t, stale, keys)
}

// writeWhileDown writes "v-KEY" to each of keys through via at W=2 while
// stale is cut off and known to be down, then brings stale back: it is
// left holding whatever it held before.
func writeWhileDown(t *testing.T, c *testcluster.Cluster, via, stale *testcluster.Node, keys [][]byte) {
	t.Helper()
	c.Net.Isolate(stale.ID)
	c.View.SetAlive(stale.ID, false)
	for _, k := range keys {
		if _, err := via.Coord.Put(ctxT(t), k, []byte("v-"+string(k)), nil, 2); err != nil {
			t.Fatal(err)
		}
	}
	c.Net.Heal()
	c.View.SetAlive(stale.ID, true)
}

// waitRepaired waits (up to 5 s) until node holds the value "v-KEY" alone
// for each of keys, as a read repair leaves it.
func waitRepaired(t *testing.T, node *testcluster.Node, keys [][]byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, k := range keys {
		for {
			obj, err := node.Store.Get(k)
			if err != nil {
				t.Fatal(err)
			}
			if got := liveValues(obj); len(got) == 1 && got[0] == "v-"+string(k) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the full read did not repair %s on %s: it holds %v", k, node.ID, obj)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// A full read-repair read of GetLiveBatchAt (its local state read as
// stored bytes) repairs every stale replica: another replica that answers
// after the quorum did, from the late answer in the background, and this
// node itself when its stored bytes are the stale ones.
func TestGetLiveBatchFullReadRepairs(t *testing.T) {
	for _, staleIsCoordinator := range []bool{false, true} {
		t.Run(fmt.Sprint("stale-coordinator=", staleIsCoordinator), func(t *testing.T) {
			c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 29,
				Coordinator: coordinator.Options{ReadRepairChance: 1, Timeout: 4 * time.Second}})
			ctx := ctxT(t)
			from, writer, stale := c.Nodes[0], c.Nodes[1], c.Nodes[2]
			if staleIsCoordinator {
				stale, writer = c.Nodes[0], c.Nodes[1]
			}
			var keys [][]byte
			for i := range 20 {
				keys = append(keys, []byte(fmt.Sprintf("lfr-%d", i)))
			}
			for _, k := range keys {
				if _, err := writer.Coord.Put(ctx, k, []byte("old"), nil, coordinator.All); err != nil {
					t.Fatal(err)
				}
			}
			writeWhileDown(t, c, writer, stale, keys)
			if !staleIsCoordinator {
				// The stale replica answers late: the batch must not
				// wait for it.
				c.Net.SetDelay(from.ID, stale.ID, 1500*time.Millisecond)
			}
			start := time.Now()
			values, found, errs := from.Coord.GetLiveBatchAt(ctx, keys, coordinator.Levels{R: 2})
			if took := time.Since(start); took > time.Second {
				t.Fatalf("GetLiveBatchAt waited %v for a replica the quorum did not need", took)
			}
			for i, k := range keys {
				if errs[i] != nil || !found[i] || string(values[i]) != "v-"+string(k) {
					t.Fatalf("GetLiveBatchAt %s: (%q, %v), %v", k, values[i], found[i], errs[i])
				}
			}
			waitRepaired(t, stale, keys)
		})
	}
}

// GetLiveBatchAt answers each key as GetLiveAt does, and as the live value
// (version.LiveValue) of a read at ALL, at R=1 (where a key this node
// replicates is read from its stored bytes alone) and at R=2: present,
// absent, deleted, and with two siblings (the same LWW winner); with no
// read repair and with every read a full read-repair read (the plans drawn
// once and handed to the batched path).
func TestGetLiveBatchMatchesGetLive(t *testing.T) {
	for _, chance := range []float64{-1, 1} {
		t.Run(fmt.Sprintf("ReadRepairChance=%v", chance), func(t *testing.T) {
			c := testcluster.New(t, testcluster.Options{Nodes: 4, Replicas: 3, Seed: 23,
				Coordinator: coordinator.Options{ReadRepairChance: chance}})
			ctx := ctxT(t)
			var keys [][]byte
			for i := range 40 {
				k := []byte(fmt.Sprintf("glb-%d", i))
				keys = append(keys, k)
				switch i % 4 {
				case 0: // absent
				case 1:
					if _, err := c.Nodes[i%4].Coord.Put(ctx, k, []byte("v"+string(k)), nil, coordinator.All); err != nil {
						t.Fatal(err)
					}
				case 2:
					if _, err := c.Nodes[0].Coord.Put(ctx, k, []byte("gone"), nil, coordinator.All); err != nil {
						t.Fatal(err)
					}
					if _, err := c.Nodes[1].Coord.Delete(ctx, k, nil, coordinator.All); err != nil {
						t.Fatal(err)
					}
				case 3:
					// Two concurrent writes over one base: siblings.
					base, err := c.Nodes[0].Coord.Put(ctx, k, []byte("base"), nil, coordinator.All)
					if err != nil {
						t.Fatal(err)
					}
					for j, v := range []string{"left", "right"} {
						if _, err := c.Nodes[j].Coord.Put(ctx, k, []byte(v), base.Context, coordinator.All); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			for _, via := range c.Nodes {
				for _, r := range []int{1, 2} {
					lv := coordinator.Levels{R: r}
					values, found, errs := via.Coord.GetLiveBatchAt(ctx, keys, lv)
					for i, k := range keys {
						if errs[i] != nil {
							t.Fatalf("%s R=%d %s: GetLiveBatchAt: %v", via.ID, r, k, errs[i])
						}
						v, ok, err := via.Coord.GetLiveAt(ctx, k, lv)
						if err != nil {
							t.Fatal(err)
						}
						if ok != found[i] || string(v) != string(values[i]) {
							t.Fatalf("%s R=%d %s: GetLiveBatchAt (%q, %v), GetLiveAt (%q, %v)", via.ID, r, k, values[i], found[i], v, ok)
						}
						obj, err := via.Coord.GetAt(ctx, k, coordinator.Levels{R: coordinator.All})
						if err != nil {
							t.Fatal(err)
						}
						if v, ok := version.LiveValue(obj); ok != found[i] || string(v) != string(values[i]) {
							t.Fatalf("%s R=%d %s: GetLiveBatchAt (%q, %v), the live value of a read at ALL (%q, %v)", via.ID, r, k, values[i], found[i], v, ok)
						}
						if i%4 == 3 && len(obj.Live()) != 2 {
							t.Fatalf("%s %s: want two siblings, read %v", via.ID, k, obj)
						}
						if want := i%4 == 1 || i%4 == 3; found[i] != want {
							t.Fatalf("%s R=%d %s: found %v, want %v", via.ID, r, k, found[i], want)
						}
					}
				}
			}
		})
	}
}

// A read is a digest read, batched or not: each other replica gets the
// hash of this node's state per key and answers "same" (one byte) when its
// state hashes the same, the state itself otherwise. Replicas that agree
// send no objects; a replica that holds a newer state sends it, and the
// read answers with it.
func TestGetBatchDigestRead(t *testing.T) {
	var mu sync.Mutex
	var replies [][]byte // kindReadBatchDigest replies, as sent
	var single [][]byte  // kindReadDigest replies
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 29,
		Coordinator: coordinator.Options{ReadRepairChance: -1},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
				reply, err := h.Handle(ctx, from, kind, payload)
				if (kind == 9 || kind == 10) && err == nil {
					mu.Lock()
					if kind == 9 {
						replies = append(replies, bytes.Clone(reply))
					} else {
						single = append(single, bytes.Clone(reply))
					}
					mu.Unlock()
				}
				return reply, err
			})
		}})
	ctx := ctxT(t)
	n1, n3 := c.Nodes[0], c.Nodes[2]
	var keys [][]byte
	for i := range 20 {
		k := []byte(fmt.Sprintf("digest-%d", i))
		keys = append(keys, k)
		if _, err := n1.Coord.Put(ctx, k, []byte("v1"), nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
	}
	check := func(want string) {
		t.Helper()
		values, found, errs := n1.Coord.GetLiveBatchAt(ctx, keys, coordinator.Levels{R: 2})
		for i, k := range keys {
			if errs[i] != nil || !found[i] || string(values[i]) != want {
				t.Fatalf("read of %s at R=2: %q %v %v, want %q", k, values[i], found[i], errs[i], want)
			}
		}
	}
	checkSingle := func(k []byte, want string) {
		t.Helper()
		mu.Lock()
		single = nil // the writes' context reads are digest reads too
		mu.Unlock()
		v, ok, err := n1.Coord.GetLiveAt(ctx, k, coordinator.Levels{R: 2})
		if err != nil || !ok || string(v) != want {
			t.Fatalf("single read of %s at R=2: %q %v %v, want %q", k, v, ok, err, want)
		}
	}
	repairsBefore := n1.Coord.Stats().ReadRepairs
	check("v1")
	mu.Lock()
	asked := 0
	for _, r := range replies { // one per other replica asked; under 128 keys each
		if len(r) == 0 || !bytes.Equal(r[1:], bytes.Repeat([]byte{1}, int(r[0]))) {
			t.Fatalf("digest reply of replicas in agreement: %x, want a count and that many \"same\" (1)", r)
		}
		asked += int(r[0])
	}
	if asked != len(keys) {
		t.Fatalf("digest replies answered %d keys, want %d (one other replica per key at R=2)", asked, len(keys))
	}
	replies = nil
	mu.Unlock()
	time.Sleep(50 * time.Millisecond) // a repair would be under way
	if got := n1.Coord.Stats().ReadRepairs; got != repairsBefore {
		t.Fatalf("reads of replicas in agreement sent %d read repairs, want none (a \"same\" answer stands for this node's state)", got-repairsBefore)
	}
	checkSingle(keys[0], "v1")
	mu.Lock()
	if len(single) != 1 || !bytes.Equal(single[0], []byte{1}) {
		t.Fatalf("single digest replies of replicas in agreement: %x, want one \"same\" (01)", single)
	}
	single = nil
	mu.Unlock()

	// n1 misses newer writes, which the other two hold.
	c.Net.Isolate(n1.ID)
	for _, k := range keys {
		if _, err := n3.Coord.Put(ctx, k, []byte("v2"), nil, 2); err != nil {
			t.Fatal(err)
		}
	}
	c.Net.Heal()
	check("v2")
	mu.Lock()
	size := 0
	for _, r := range replies {
		size += len(r)
	}
	if size < len(keys)*len("v2") {
		t.Fatalf("digest replies when this node is behind: %d bytes in all, want them to carry the states", size)
	}
	mu.Unlock()
	// The batch repaired n1 in the background; a key it has not read
	// since shows the single read. n3's write reaches n1 in the background
	// after the heal too (its follow-up), and may do so before the read:
	// then n1 answers v2 from its own state, the other replica says "same",
	// and the case is tried again with another key. A "same" answer with
	// v2 read proves n1 held v2 (it answers with its own state).
	behind := false
	for attempt := 0; attempt < 5 && !behind; attempt++ {
		k := []byte(fmt.Sprintf("digest-single-%d", attempt))
		if _, err := n1.Coord.Put(ctx, k, []byte("v1"), nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
		c.Net.Isolate(n1.ID)
		if _, err := n3.Coord.Put(ctx, k, []byte("v2"), nil, 2); err != nil {
			t.Fatal(err)
		}
		c.Net.Heal()
		checkSingle(k, "v2")
		mu.Lock()
		switch {
		case len(single) == 1 && bytes.Equal(single[0], []byte{1}):
			t.Logf("attempt %d: n1 caught up with %s before the read", attempt, k)
		case len(single) != 1 || len(single[0]) < 1+len("v2") || single[0][0] != 2:
			t.Fatalf("single digest reply when this node is behind: %x, want the state (tag 02)", single)
		default:
			behind = true
		}
		mu.Unlock()
	}
	if !behind {
		t.Fatal("n1 caught up before every single read: the behind case was never read")
	}
}

// A node that predates digest reads (it refuses kinds 9 and 10 as
// unknown) still answers batched reads with kindReadBatch and single ones
// with kindRead: no key falls back to Get's per-key path.
func TestDigestReadWithAnOlderNode(t *testing.T) {
	var mu sync.Mutex
	seen := map[uint8]int{} // kinds the older node answered
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 31,
		Coordinator: coordinator.Options{ReadRepairChance: -1},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			if id != "n2" && id != "n3" {
				return h
			}
			return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
				if kind == 9 || kind == 10 {
					return nil, fmt.Errorf("unknown peer message kind %d", kind)
				}
				mu.Lock()
				seen[kind]++
				mu.Unlock()
				return h.Handle(ctx, from, kind, payload)
			})
		}})
	ctx := ctxT(t)
	n1 := c.Nodes[0]
	var keys [][]byte
	for i := range 10 {
		k := []byte(fmt.Sprintf("older-%d", i))
		keys = append(keys, k)
		if _, err := n1.Coord.Put(ctx, k, []byte("v"), nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	clear(seen)
	mu.Unlock()
	values, found, errs := n1.Coord.GetLiveBatchAt(ctx, keys, coordinator.Levels{R: 2})
	for i, k := range keys {
		if errs[i] != nil || !found[i] || string(values[i]) != "v" {
			t.Fatalf("batched read of %s: %q %v %v", k, values[i], found[i], errs[i])
		}
	}
	mu.Lock()
	if seen[5] == 0 || seen[1] != 0 {
		t.Fatalf("older nodes answered kinds %v to a batched read, want kindReadBatch (5) and no single reads (1)", seen)
	}
	clear(seen)
	mu.Unlock()
	if v, ok, err := n1.Coord.GetLiveAt(ctx, keys[0], coordinator.Levels{R: 2}); err != nil || !ok || string(v) != "v" {
		t.Fatalf("single read: %q %v %v", v, ok, err)
	}
	mu.Lock()
	if seen[1] != 1 {
		t.Fatalf("older nodes answered kinds %v to a single read, want one kindRead (1)", seen)
	}
	mu.Unlock()
}

// A pipelined GET at R ≥ 2 reads this replica's state as stored bytes and
// decodes it only when another replica's answer disagrees. Every way the
// states can disagree must still answer what a read at ALL answers: this
// node ahead, behind, alone in holding the key, missing it, holding a
// tombstone the others lack, or holding one sibling while the others hold
// another. Replicas in agreement still count the key's siblings.
func TestGetLiveBatchWhenReplicasDisagree(t *testing.T) {
	// With no read repair, and with every read a full read-repair read
	// (which reads its local state as stored bytes too).
	for _, chance := range []float64{-1, 1} {
		t.Run(fmt.Sprint("read-repair-chance=", chance), func(t *testing.T) {
			testGetLiveBatchWhenReplicasDisagree(t, chance)
		})
	}
}

func testGetLiveBatchWhenReplicasDisagree(t *testing.T, chance float64) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Replicas: 3, Seed: 37,
		Coordinator: coordinator.Options{ReadRepairChance: chance}})
	ctx := ctxT(t)
	n1, n3 := c.Nodes[0], c.Nodes[2]
	put := func(via *testcluster.Node, k, v string, ctxClock version.Clock, w int) *version.Object {
		t.Helper()
		obj, err := via.Coord.Put(ctx, []byte(k), []byte(v), ctxClock, w)
		if err != nil {
			t.Fatalf("put %s via %s: %v", k, via.ID, err)
		}
		return obj
	}
	cases := []struct {
		key       string
		wantValue string
		wantFound bool
	}{
		{"ahead", "new", true},
		{"behind", "new", true},
		{"only-here", "mine", true},
		{"missing-here", "theirs", true},
		{"deleted-here", "", false},
		{"siblings", "", true}, // value: whichever LWW picks, checked against ALL
		{"agreed-siblings", "", true},
	}
	for _, k := range []string{"ahead", "behind", "deleted-here"} {
		put(n1, k, "old", nil, coordinator.All)
	}
	base := put(n1, "siblings", "base", nil, coordinator.All)
	agreed := put(n1, "agreed-siblings", "base", nil, coordinator.All)
	put(n1, "agreed-siblings", "left", agreed.Context, coordinator.All)
	put(n3, "agreed-siblings", "right", agreed.Context, coordinator.All)

	c.Net.Isolate(n1.ID) // n1 alone takes some writes, misses others
	put(n1, "ahead", "new", nil, 1)
	put(n1, "only-here", "mine", nil, 1)
	if _, err := n1.Coord.Delete(ctx, []byte("deleted-here"), nil, 1); err != nil {
		t.Fatal(err)
	}
	put(n1, "siblings", "left", base.Context, 1)
	put(n3, "behind", "new", nil, 2)
	put(n3, "missing-here", "theirs", nil, 2)
	put(n3, "siblings", "right", base.Context, 2)
	c.Net.Heal()

	keys := make([][]byte, len(cases))
	for i, tc := range cases {
		keys[i] = []byte(tc.key)
	}
	for _, r := range []int{2, coordinator.All} {
		values, found, errs := n1.Coord.GetLiveBatchAt(ctx, keys, coordinator.Levels{R: r})
		for i, tc := range cases {
			if errs[i] != nil {
				t.Fatalf("R=%d %s: %v", r, tc.key, errs[i])
			}
			if found[i] != tc.wantFound || tc.wantValue != "" && string(values[i]) != tc.wantValue {
				t.Fatalf("R=%d %s: read (%q, %v), want (%q, %v)", r, tc.key, values[i], found[i], tc.wantValue, tc.wantFound)
			}
			obj, err := n1.Coord.GetAt(ctx, keys[i], coordinator.Levels{R: coordinator.All})
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := version.LiveValue(obj); ok != found[i] || string(v) != string(values[i]) {
				t.Fatalf("R=%d %s: read (%q, %v), the live value at ALL (%q, %v)", r, tc.key, values[i], found[i], v, ok)
			}
		}
	}

	// Two live siblings everywhere: a read in agreement counts them.
	before := n1.Coord.Stats().ReadSiblingsSum
	if _, _, errs := n1.Coord.GetLiveBatchAt(ctx, [][]byte{[]byte("agreed-siblings")}, coordinator.Levels{R: 2}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if got := n1.Coord.Stats().ReadSiblingsSum - before; got != 2 {
		t.Fatalf("a read of two agreed siblings counted %d, want 2", got)
	}
}
