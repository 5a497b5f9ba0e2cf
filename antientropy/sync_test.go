package antientropy

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ringkv/ringkv/replica"
)

// SyncPartitions brings exactly the partitions asked for, from one peer,
// outside the rounds, and reports them verified; asked again it moves
// nothing but the roots.
func TestSyncPartitionsCopiesOnlyThosePartitions(t *testing.T) {
	nodes, peers := newNodes(t, 2, 16, Options{Interval: time.Hour, Rate: -1}, func(i int, s *replica.Store) {
		if i == 0 {
			for k := range 400 {
				put(t, s, fmt.Sprintf("k-%d", k), "v", false)
			}
		}
	})
	for _, n := range nodes {
		n.ae.Build()
	}
	want := []int{1, 5, 6, 15}
	got, err := nodes[1].ae.SyncPartitions("n1", want)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("SyncPartitions = %v, %v; want %v verified", got, err, want)
	}
	src, dst := contents(t, nodes[0].store), contents(t, nodes[1].store)
	copied := 0
	for k, v := range src {
		p := peers.ring.PartitionOfKey([]byte(k))
		have, ok := dst[k]
		switch {
		case slices.Contains(want, p) && (!ok || have != v):
			t.Fatalf("%s of partition %d not copied", k, p)
		case !slices.Contains(want, p) && ok:
			t.Fatalf("%s of partition %d copied, not asked for", k, p)
		}
		if ok {
			copied++
		}
	}
	if copied == 0 || len(dst) != copied {
		t.Fatalf("copied %d keys, destination holds %d", copied, len(dst))
	}
	if st := nodes[1].ae.Status(); st.RoundsStarted != 0 || st.PartitionsDone != 0 || st.KeysPulled != uint64(copied) {
		t.Fatalf("status after a sync outside rounds: %+v", st)
	}
	before := nodes[1].ae.Status()
	if got, err := nodes[1].ae.SyncPartitions("n1", want); err != nil || !slices.Equal(got, want) {
		t.Fatalf("second SyncPartitions = %v, %v", got, err)
	}
	after := nodes[1].ae.Status()
	if after.KeysPulled != before.KeysPulled || after.BytesReceived-before.BytesReceived > 200 {
		t.Fatalf("an idempotent sync moved data: %+v then %+v", before, after)
	}
	if _, err := nodes[1].ae.SyncPartitions("nobody", want); err == nil {
		t.Fatal("sync with an unknown peer succeeded")
	}
}
