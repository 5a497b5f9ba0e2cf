package coordinator_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// newTwoDCs is two datacenters of three nodes, perDC replicas of every
// key in each, with hinted handoff delivering every 50ms.
func newTwoDCs(t *testing.T, seed int64, perDC int, co coordinator.Options) *testcluster.Cluster {
	co.Timeout = 300 * time.Millisecond
	return testcluster.NewMultiDC(t, testcluster.Options{
		Seed:        seed,
		Coordinator: co,
		Handoff:     &handoff.Options{Interval: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond, Timeout: 300 * time.Millisecond},
	}, testcluster.DC{Name: "dc1", Nodes: 3, Replicas: perDC}, testcluster.DC{Name: "dc2", Nodes: 3, Replicas: perDC})
}

// While two datacenters are cut apart, LOCAL_QUORUM (and LOCAL_ONE) writes
// and reads succeed on both sides, QUORUM and EACH_QUORUM fail with a
// quorum error, and LOCAL reads never wait on the other side, even when
// they ask it (every read here asks every target); after the heal, hints
// alone bring every replica in both datacenters to the same object for
// every key, keeping the writes made on both sides to one key as
// siblings.
func TestLocalQuorumSurvivesADatacenterCutAndConverges(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	for _, perDC := range []int{3, 2} {
		t.Run(fmt.Sprintf("%d+%d", perDC, perDC), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(perDC)))
			c := newTwoDCs(t, seed, perDC, coordinator.Options{ReadRepairChance: 1})
			ctx := ctxT(t)
			dcs := map[string][]string{"dc1": c.DCNodes("dc1"), "dc2": c.DCNodes("dc2")}
			other := map[string]string{"dc1": "dc2", "dc2": "dc1"}
			// via picks a node of dc to talk to; for a key, a node that is
			// not a replica of it when dc has one, on every other call, so
			// that forwarding is exercised.
			calls := 0
			via := func(dc string, key []byte) *coordinator.Coordinator {
				calls++
				ids := dcs[dc]
				if calls%2 == 0 {
					for _, id := range ids {
						if !slices.Contains(c.Ring.PreferenceForKey(key), id) {
							return c.Node(id).Coord
						}
					}
				}
				return c.Node(ids[rng.IntN(len(ids))]).Coord
			}
			at := func(w int) coordinator.Levels { return coordinator.Levels{R: w, W: w} }
			want := map[string][]string{} // key -> live values every replica must end with

			shared := []byte("both-sides")
			if _, err := c.Nodes[0].Coord.PutAt(ctx, shared, []byte("base"), nil, at(coordinator.All)); err != nil {
				t.Fatal(err)
			}
			c.Net.Partition(dcs["dc1"], dcs["dc2"])

			for _, dc := range []string{"dc1", "dc2"} {
				for i := range 8 {
					key := []byte(fmt.Sprintf("%s-key-%d", dc, i))
					val := fmt.Sprintf("%s-v%d", dc, i)
					level := coordinator.LocalQuorum
					if i%4 == 3 {
						level = coordinator.LocalOne
					}
					if _, err := via(dc, key).PutAt(ctx, key, []byte(val), nil, at(level)); err != nil {
						t.Fatalf("%s write of %s during the cut: %v", coordinator.FormatLevel(level), key, err)
					}
					want[string(key)] = []string{val}
					// A LOCAL_ONE write reaches the other local replicas
					// in the background: R+W > N holds per datacenter
					// only at LOCAL_QUORUM for both.
					waitFor(t, fmt.Sprintf("a LOCAL_QUORUM read in %s sees %s", dc, key), func() (bool, string) {
						start := time.Now()
						obj, err := via(dc, key).GetAt(ctx, key, at(coordinator.LocalQuorum))
						if err != nil {
							t.Fatalf("LOCAL_QUORUM read of %s in %s during the cut: %v", key, dc, err)
						}
						if d := time.Since(start); d >= 300*time.Millisecond {
							t.Fatalf("LOCAL_QUORUM read took %v: it waited for the other datacenter", d)
						}
						got := liveValues(obj)
						if level == coordinator.LocalQuorum && !slices.Equal(got, []string{val}) {
							t.Fatalf("LOCAL_QUORUM read of %s in %s after a LOCAL_QUORUM write: %q, want [%s]", key, dc, got, val)
						}
						return slices.Equal(got, []string{val}), fmt.Sprint(got)
					})
					// The other side has not seen it.
					if obj, err := via(other[dc], key).GetAt(ctx, key, at(coordinator.LocalQuorum)); err != nil || obj != nil {
						t.Fatalf("LOCAL_QUORUM read of %s in %s across the cut: %v %v, want not found", key, other[dc], liveValues(obj), err)
					}
				}
				val := "from-" + dc
				if _, err := via(dc, shared).PutAt(ctx, shared, []byte(val), nil, at(coordinator.LocalQuorum)); err != nil {
					t.Fatalf("LOCAL_QUORUM write of %s in %s: %v", shared, dc, err)
				}
				want[string(shared)] = append(want[string(shared)], val)
			}
			for _, dc := range []string{"dc1", "dc2"} {
				obj, err := via(dc, shared).GetAt(ctx, shared, at(coordinator.LocalQuorum))
				if got := liveValues(obj); err != nil || !slices.Equal(got, []string{"from-" + dc}) {
					t.Fatalf("LOCAL_QUORUM read of %s in %s during the cut: %q %v, want only this side's write", shared, dc, got, err)
				}
				// The global and per-datacenter majorities are out of reach.
				for _, level := range []int{coordinator.Quorum, coordinator.EachQuorum} {
					key := []byte(fmt.Sprintf("refused-%s-%d", dc, level))
					_, err := c.Node(dcs[dc][0]).Coord.PutAt(ctx, key, []byte("x"), nil, at(level))
					checkCutError(t, "write", level, dc, other[dc], perDC, err)
					want[string(key)] = nil // refused before anything was written
					_, err = c.Node(dcs[dc][0]).Coord.GetAt(ctx, shared, at(level))
					checkCutError(t, "read", level, dc, other[dc], perDC, err)
				}
			}

			c.Net.Heal()
			waitConverged(t, c, want)
			// Once converged, any level sees both sides' writes.
			for _, level := range []int{coordinator.EachQuorum, coordinator.Quorum, coordinator.LocalQuorum} {
				obj, err := c.Nodes[rng.IntN(len(c.Nodes))].Coord.GetAt(ctx, shared, at(level))
				if got := liveValues(obj); err != nil || !slices.Equal(got, want[string(shared)]) {
					t.Fatalf("%s read after the heal: %q %v, want %q", coordinator.FormatLevel(level), got, err, want[string(shared)])
				}
			}
		})
	}
}

// checkCutError checks the error of a request at level (QUORUM or
// EACH_QUORUM) made in dc while it is cut off from remote: a quorum error,
// which for EACH_QUORUM names the datacenter out of reach. A blind write
// fails at its first step, the read of the key's context, so nothing is
// written. A write that a node forwarded to a replica fails with the
// replica's error as text (error identity does not cross the network).
func checkCutError(t *testing.T, op string, level int, dc, remote string, perDC int, err error) {
	t.Helper()
	var qe *coordinator.QuorumError
	if !errors.As(err, &qe) {
		if !errors.Is(err, transport.ErrRemote) || !strings.Contains(err.Error(), "quorum not reached") {
			t.Fatalf("%s %s in %s during the cut: %v, want a QuorumError", coordinator.FormatLevel(level), op, dc, err)
		}
		var want string
		switch level {
		case coordinator.Quorum:
			want = fmt.Sprintf("quorum not reached: %d of %d required", perDC, perDC+1)
		case coordinator.EachQuorum:
			want = fmt.Sprintf("quorum not reached in datacenter %q: 0 of %d required", remote, perDC/2+1)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%s %s in %s during the cut (forwarded): %v, want it to say %q", coordinator.FormatLevel(level), op, dc, err, want)
		}
		return
	}
	switch level {
	case coordinator.Quorum:
		if qe.Needed != perDC+1 || qe.DC != "" {
			t.Fatalf("QUORUM %s in %s during the cut: %v, want %d (a global majority) needed", op, dc, err, perDC+1)
		}
	case coordinator.EachQuorum:
		if qe.DC != remote || qe.Needed != perDC/2+1 || qe.Answered != 0 || !strings.Contains(err.Error(), remote) {
			t.Fatalf("EACH_QUORUM %s in %s during the cut: %v, want 0 of %d in %s", op, dc, err, perDC/2+1, remote)
		}
	}
}

// waitConverged waits until every replica of every key in want holds the
// same object, whose live values are want[key], and no other node holds
// the key.
func waitConverged(t *testing.T, c *testcluster.Cluster, want map[string][]string) {
	t.Helper()
	waitFor(t, "every replica holds the same object for every key", func() (bool, string) {
		for key, vals := range want {
			pref := c.Ring.PreferenceForKey([]byte(key))
			var first *version.Object
			for _, n := range c.Nodes {
				st, err := c.StoreOf(n.ID)
				if err != nil {
					return false, err.Error()
				}
				obj, err := st.Get([]byte(key))
				if err != nil {
					return false, err.Error()
				}
				if !slices.Contains(pref, n.ID) {
					if obj != nil {
						return false, fmt.Sprintf("%s holds %s, of which it is not a replica", n.ID, key)
					}
					continue
				}
				if got := liveValues(obj); !slices.Equal(got, vals) {
					return false, fmt.Sprintf("%s on %s: %q, want %q", key, n.ID, got, vals)
				}
				if first == nil {
					first = obj
				} else if !first.Descends(obj) || !obj.Descends(first) {
					return false, fmt.Sprintf("%s: replicas hold different objects", key)
				}
			}
		}
		return true, ""
	})
}

// A node that is not a replica forwards a LOCAL write with its own
// datacenter: when none of the key's replicas in that datacenter is up,
// the write goes to the other datacenter but still counts the
// client-facing one, where a fallback standing in for a down primary
// counts toward LOCAL levels as it counts toward W.
func TestForwardedLocalLevelCountsTheClientFacingDatacenter(t *testing.T) {
	c := newTwoDCs(t, 7, 2, coordinator.Options{ReadRepairChance: -1})
	ctx := ctxT(t)
	key := []byte("forwarded")
	var entry string // the dc2 node that is not a replica of key
	var down []string
	for _, id := range c.DCNodes("dc2") {
		if slices.Contains(c.Ring.PreferenceForKey(key), id) {
			down = append(down, id)
		} else {
			entry = id
		}
	}
	if entry == "" || len(down) != 2 {
		t.Fatalf("dc2 %v: want two replicas of %s and one other node", c.DCNodes("dc2"), key)
	}
	for _, id := range down {
		c.Kill(id)
		c.View.SetAlive(id, false)
	}
	x := c.Node(entry).Coord
	lv := func(level int) coordinator.Levels { return coordinator.Levels{R: level, W: level} }

	// LOCAL_QUORUM counts dc2, where only the fallback is up: refused,
	// though the write was coordinated in dc1, where both replicas are up.
	_, err := x.PutAt(ctx, key, []byte("v1"), nil, lv(coordinator.LocalQuorum))
	if err == nil || !strings.Contains(err.Error(), `in datacenter "dc2"`) {
		t.Fatalf("LOCAL_QUORUM write via %s with dc2's replicas down: %v, want a quorum error for dc2", entry, err)
	}
	// The same write from dc1 is a dc1 LOCAL_QUORUM.
	dc1 := c.Node(c.DCNodes("dc1")[0]).Coord
	if _, err := dc1.PutAt(ctx, key, []byte("v1"), nil, lv(coordinator.LocalQuorum)); err != nil {
		t.Fatalf("LOCAL_QUORUM write via dc1: %v", err)
	}
	// LOCAL_ONE via the dc2 node is met by the fallback standing in.
	if _, err := x.PutAt(ctx, key, []byte("v2"), nil, lv(coordinator.LocalOne)); err != nil {
		t.Fatalf("LOCAL_ONE write via %s (a fallback in dc2 is up): %v", entry, err)
	}
	if got := storedValues(t, c, entry, key); !slices.Equal(got, []string{"v2"}) {
		t.Fatalf("fallback %s holds %q, want [v2]", entry, got)
	}
	// And read back there, from the fallback, at LOCAL_ONE.
	obj, err := x.GetAt(ctx, key, lv(coordinator.LocalOne))
	if got := liveValues(obj); err != nil || !slices.Equal(got, []string{"v2"}) {
		t.Fatalf("LOCAL_ONE read via %s: %q %v, want [v2]", entry, got, err)
	}
	var qe *coordinator.QuorumError
	if _, err := x.GetAt(ctx, key, lv(coordinator.LocalQuorum)); !errors.As(err, &qe) || qe.DC != "dc2" || qe.Answered != 1 {
		t.Fatalf("LOCAL_QUORUM read via %s: %v, want 1 of 2 answered in dc2", entry, err)
	}
	// pw still counts primaries: LOCAL_ONE with pw=ALL needs dc2's too.
	if _, err := dc1.PutAt(ctx, key, []byte("v3"), nil, coordinator.Levels{W: coordinator.LocalOne, PW: coordinator.All}); !errors.Is(err, coordinator.ErrTooFewPrimaries) {
		t.Fatalf("LOCAL_ONE with pw=ALL, two primaries down: %v, want ErrTooFewPrimaries", err)
	}
	// Back up: the hints reach dc2's primaries and the fallback's copy goes.
	for _, id := range down {
		c.Restart(id)
		c.View.SetAlive(id, true)
	}
	waitConverged(t, c, map[string][]string{string(key): {"v2"}})
}

// On a ring without ReplicasPerDC the datacenter levels are ONE and
// QUORUM, also when a node that is not a replica forwards the write.
func TestDatacenterLevelsOnASingleDatacenterRing(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 4, Replicas: 3, Seed: 5})
	ctx := ctxT(t)
	for i, level := range []int{coordinator.LocalOne, coordinator.LocalQuorum, coordinator.EachQuorum} {
		key := []byte(fmt.Sprintf("flat-%d", i))
		via := c.NonReplica(key).Coord
		lv := coordinator.Levels{R: level, W: level}
		if _, err := via.PutAt(ctx, key, []byte("v"), nil, lv); err != nil {
			t.Fatalf("%s write via a non-replica: %v", coordinator.FormatLevel(level), err)
		}
		// At LOCAL_ONE (R + W = 2 of N = 3) a read may ask a replica the
		// write has not reached yet: wait until every replica holds it.
		waitConverged(t, c, map[string][]string{string(key): {"v"}})
		obj, err := via.GetAt(ctx, key, lv)
		if got := liveValues(obj); err != nil || !slices.Equal(got, []string{"v"}) {
			t.Fatalf("%s read: %q %v", coordinator.FormatLevel(level), got, err)
		}
	}
	// QUORUM of N=3 with two replicas cut off: LOCAL_QUORUM is refused as
	// QUORUM would be.
	key := []byte("flat-cut")
	pref := c.Ring.PreferenceForKey(key)
	c.Net.Isolate(pref[1])
	c.Net.Isolate(pref[2])
	_, err := c.Node(pref[0]).Coord.PutAt(ctx, key, []byte("v"), nil, coordinator.Levels{W: coordinator.LocalQuorum})
	var qe *coordinator.QuorumError
	if !errors.As(err, &qe) || qe.Needed != 2 || qe.DC != "" {
		t.Fatalf("LOCAL_QUORUM with two of three replicas cut off: %v, want QUORUM's error (2 needed)", err)
	}
}
