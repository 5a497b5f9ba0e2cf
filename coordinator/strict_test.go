package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/transport"
)

// A delete with a context that saw a write only one primary holds, while
// that primary is down and a fallback stands in for it: the coordinator
// must learn from every primary before it admits the context, so the
// delete is refused until the primary answers (a fallback cannot take its
// place in that read). (Before: the second read counted the fallback, the
// context's entry for the down primary was lowered to what the others
// held, the delete was acknowledged, and the deleted value came back with
// the primary.)
func TestContextWriteLearnsFromEveryPrimaryNotAFallback(t *testing.T) {
	c := newSloppyCluster(t, time.Hour) // no hint delivery
	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		key := []byte(fmt.Sprintf("minority-sloppy-%d", i))
		pref := c.Ring.PreferenceForKey(key)
		p1, p2, p3 := pref[0], pref[1], pref[2]
		if _, err := c.Node(p2).Coord.Put(ctx, key, []byte("base"), nil, coordinator.All); err != nil {
			t.Fatal(err)
		}
		c.Net.Isolate(p2)
		if _, err := c.Node(p2).Coord.Put(ctx, key, []byte("minority"), nil, coordinator.One); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // its replication messages leave, and are lost
		c.Net.Heal()
		read, err := c.Node(p2).Coord.Get(ctx, key, coordinator.One)
		if err != nil || fmt.Sprint(liveValues(read)) != "[minority]" {
			t.Fatalf("read at %s: %v, %v", p2, read, err)
		}
		killPrimaries(c, key, 1)
		if len(standIns(c, key)) != 1 {
			t.Fatalf("want a fallback standing in for %s: %v", p2, standIns(c, key))
		}
		_, err = c.Node(p1).Coord.Delete(ctx, key, read.Context, coordinator.Quorum)
		c.Restart(p2)
		c.View.SetAlive(p2, true)
		if err != nil {
			// Refused while the primary that holds what the client saw
			// was down; it goes through once every primary answers.
			if _, err = c.Node(p1).Coord.Delete(ctx, key, read.Context, coordinator.Quorum); err != nil {
				t.Fatalf("delete through %s once %s is back: %v", p1, p2, err)
			}
		}
		obj, err := c.Node(p3).Coord.Get(ctx, key, coordinator.All)
		if err != nil {
			t.Fatal(err)
		}
		if live := liveValues(obj); len(live) != 0 {
			t.Fatalf("deleted with a context that saw %q, the key still reads %q (%v)", "minority", live, obj)
		}
	}
}

// Under strict quorum (pw set) a blind write learns its context from
// primaries only: a fallback may not hold a write that W primaries
// acknowledged, and a blind write stamped with the fallback's context
// would become its sibling instead of superseding it. Here the primary
// that holds the earlier write does not answer reads (it still takes
// writes), and a fallback stands in for the other that holds it; the
// blind write must either be refused or supersede the earlier one. (Before:
// the read took the fallback's answer, and a read at ALL found both values.)
func TestStrictBlindWriteLearnsFromPrimaries(t *testing.T) {
	var failReads atomic.Value // node id whose reads fail
	failReads.Store("")
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 13,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 300 * time.Millisecond},
		Handoff:     &handoff.Options{Interval: time.Hour, BackoffMax: 100 * time.Millisecond, Timeout: 300 * time.Millisecond},
		WrapHandler: func(id string, h transport.Handler) transport.Handler {
			return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
				// 1 and 5 are the peer reads (kindRead, kindReadBatch).
				if (kind == 1 || kind == 5) && failReads.Load() == id {
					return nil, errors.New("read too slow")
				}
				return h.Handle(ctx, from, kind, payload)
			})
		},
	})
	ctx := ctxT(t)
	strict := coordinator.Levels{W: coordinator.Quorum, PW: coordinator.Quorum}
	for _, tc := range []struct {
		name  string
		pw    int
		batch bool
	}{
		{"put", coordinator.Quorum, false},
		{"put-pw-one", coordinator.One, false},
		{"batch", coordinator.Quorum, true},
		{"batch-pw-one", coordinator.One, true},
	} {
		key := []byte("strict-" + tc.name)
		pref := c.Ring.PreferenceForKey(key)
		p1, p2, p3 := pref[0], pref[1], pref[2]
		// X reaches p1 and p2, the strict quorum, not p3.
		c.Net.Cut(p1, p3)
		if _, err := c.Node(p1).Coord.PutAt(ctx, key, []byte("X"), nil, strict); err != nil {
			t.Fatalf("%s: put X: %v", tc.name, err)
		}
		c.Net.Heal()
		killPrimaries(c, key, 1)
		failReads.Store(p1)
		lv := coordinator.Levels{W: coordinator.Quorum, PW: tc.pw}
		write := func() error {
			if !tc.batch {
				_, err := c.Node(p3).Coord.PutAt(ctx, key, []byte("Y"), nil, lv)
				return err
			}
			other := keyWithPrimary(t, c, "strict-other-"+tc.name, p3)
			return errors.Join(c.Node(p3).Coord.PutBatchAt(ctx, [][]byte{key, other}, [][]byte{[]byte("Y"), []byte("o")}, lv)...)
		}
		err := write()
		failReads.Store("")
		c.Restart(p2)
		c.View.SetAlive(p2, true)
		if err != nil {
			// Refused while p1 did not answer the read; once it does, the
			// write goes through.
			if err = write(); err != nil {
				t.Fatalf("%s: blind write of Y once every primary answers: %v", tc.name, err)
			}
		}
		obj, err := c.Node(p3).Coord.Get(ctx, key, coordinator.All)
		if err != nil {
			t.Fatal(err)
		}
		if got := liveValues(obj); !slices.Equal(got, []string{"Y"}) {
			t.Fatalf("%s: after a blind write of Y at PW=%s over X acknowledged by two primaries, a read at ALL finds %q, want [Y]", tc.name, coordinator.FormatLevel(tc.pw), got)
		}
	}
}

// keyWithPrimary finds a key of which node is a primary.
func keyWithPrimary(t *testing.T, c *testcluster.Cluster, prefix, node string) []byte {
	t.Helper()
	for i := range 10000 {
		key := fmt.Appendf(nil, "%s-%d", prefix, i)
		if slices.Contains(c.Ring.PreferenceForKey(key), node) {
			return key
		}
	}
	t.Fatalf("no key has primary %s", node)
	return nil
}
