package coordinator_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/internal/testcluster"
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
