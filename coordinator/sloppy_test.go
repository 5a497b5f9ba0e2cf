package coordinator_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/version"
)

// newSloppyCluster is five nodes, N=3, with hinted handoff; delivery passes
// run every interval (a long one keeps them from running on their own).
func newSloppyCluster(t *testing.T, interval time.Duration) *testcluster.Cluster {
	return testcluster.New(t, testcluster.Options{
		Nodes: 5, Replicas: 3, Seed: 13,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 300 * time.Millisecond},
		Handoff:     &handoff.Options{Interval: interval, BackoffMax: 100 * time.Millisecond, Timeout: 300 * time.Millisecond},
	})
}

// killPrimaries kills and marks down the primaries of key at positions idx.
func killPrimaries(c *testcluster.Cluster, key []byte, idx ...int) []string {
	var killed []string
	pref := c.Ring.PreferenceForKey(key)
	for _, i := range idx {
		c.Kill(pref[i])
		c.View.SetAlive(pref[i], false)
		killed = append(killed, pref[i])
	}
	return killed
}

// standIns returns the fallbacks standing in for key's down primaries, as
// the ring pairs them, keyed by the fallback.
func standIns(c *testcluster.Cluster, key []byte) map[string]string {
	out := map[string]string{}
	for _, tg := range c.Ring.TargetsForKey(key, c.View.Alive) {
		if tg.For != "" {
			out[tg.Node] = tg.For
		}
	}
	return out
}

func storedValues(t *testing.T, c *testcluster.Cluster, node string, key []byte) []string {
	t.Helper()
	st, err := c.StoreOf(node)
	if err != nil {
		t.Fatalf("store of %s: %v", node, err)
	}
	obj, err := st.Get(key)
	if err != nil {
		t.Fatalf("get %q on %s: %v", key, node, err)
	}
	return liveValues(obj)
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
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

// Two of a key's three primaries down in a five-node cluster: writes at
// W=QUORUM succeed through the fallbacks, which hold them durably as hints
// and readably; reads at R=QUORUM find them; PW=QUORUM and PR=QUORUM are
// refused; once the primaries are back every one holds the writes and the
// fallbacks keep no copy.
func TestSloppyQuorumSurvivesTwoOfThreePrimariesDown(t *testing.T) {
	c := newSloppyCluster(t, 20*time.Millisecond)
	ctx := ctxT(t)
	keys := [][]byte{[]byte("sloppy-a"), []byte("sloppy-b"), []byte("sloppy-c")}
	// The three keys share their first two primaries' fate: kill the first
	// key's primaries 0 and 2 and keep keys whose live primary survives.
	killed := killPrimaries(c, keys[0], 0, 2)
	survivor := c.Ring.PreferenceForKey(keys[0])[1]
	for i := 1; i < len(keys); i++ {
		keys[i] = keyWithPrimaries(t, c.Ring, fmt.Sprintf("sloppy-%d", i), killed, survivor)
	}
	fallbacks := standIns(c, keys[0])
	if len(fallbacks) != 2 {
		t.Fatalf("want two fallbacks standing in, got %v", fallbacks)
	}
	writers := []string{survivor}
	for _, n := range c.Nodes {
		if !slices.Contains(c.Ring.PreferenceForKey(keys[0]), n.ID) {
			writers = append(writers, n.ID) // forwards to the survivor
		}
	}
	for i, key := range keys {
		writer := writers[i%len(writers)]
		if _, err := c.Node(writer).Coord.Put(ctx, key, []byte("v1-"+string(key)), nil, coordinator.Quorum); err != nil {
			t.Fatalf("put %s through %s with primaries %v down: %v", key, writer, killed, err)
		}
	}
	for _, key := range keys {
		want := "v1-" + string(key)
		// W=QUORUM answers before the last target acknowledges.
		for f, primary := range standIns(c, key) {
			waitFor(t, fmt.Sprintf("fallback %s stands in for %s", f, primary), func() (bool, string) {
				got := storedValues(t, c, f, key)
				st := c.Node(f).Hints.Stats()[primary]
				return slices.Equal(got, []string{want}) && st.Pending > 0, fmt.Sprintf("holds %q of %s, %d hints", got, key, st.Pending)
			})
		}
		for _, n := range c.Nodes {
			if c.IsDown(n.ID) {
				continue
			}
			obj, err := n.Coord.Get(ctx, key, coordinator.Quorum)
			if err != nil {
				t.Fatalf("get %s through %s at R=QUORUM: %v", key, n.ID, err)
			}
			if got := liveValues(obj); !slices.Equal(got, []string{want}) {
				t.Fatalf("get %s through %s: %q, want %q", key, n.ID, got, want)
			}
		}
	}

	// Primaries demanded: refused, and the error says so.
	_, err := c.Node(writers[1]).Coord.PutAt(ctx, keys[0], []byte("strict"), nil, coordinator.Levels{W: coordinator.Quorum, PW: coordinator.Quorum})
	var qe *coordinator.QuorumError
	if !errors.As(err, &qe) || !qe.Primaries || !errors.Is(err, coordinator.ErrTooFewPrimaries) || qe.Needed != 2 || qe.Answered != 1 {
		t.Fatalf("put at PW=QUORUM with one primary up: %v, want a QuorumError for primaries (1 of 2 up)", err)
	}
	if !strings.Contains(err.Error(), "pw") {
		t.Fatalf("error %q does not name pw", err)
	}
	if got := storedValues(t, c, survivor, keys[0]); slices.Contains(got, "strict") {
		t.Fatalf("a refused PW write was applied: %q", got)
	}
	_, err = c.Node(survivor).Coord.GetAt(ctx, keys[0], coordinator.Levels{PR: coordinator.Quorum})
	if !errors.As(err, &qe) || !qe.Primaries || qe.Op != "read" {
		t.Fatalf("get at PR=QUORUM with one primary up: %v, want a QuorumError for primaries", err)
	}
	if _, err := c.Node(survivor).Coord.GetAt(ctx, keys[0], coordinator.Levels{PR: coordinator.One}); err != nil {
		t.Fatalf("get at PR=ONE with one primary up: %v", err)
	}

	for _, id := range killed {
		c.Restart(id)
		c.View.SetAlive(id, true)
	}
	for _, key := range keys {
		want := []string{"v1-" + string(key)}
		waitFor(t, fmt.Sprintf("every primary of %s holds it and no fallback does", key), func() (bool, string) {
			for _, p := range c.Ring.PreferenceForKey(key) {
				if got := storedValues(t, c, p, key); !slices.Equal(got, want) {
					return false, fmt.Sprintf("primary %s holds %q", p, got)
				}
			}
			for f := range fallbacks {
				if got := storedValues(t, c, f, key); got != nil {
					return false, fmt.Sprintf("fallback %s still holds %q", f, got)
				}
			}
			return true, ""
		})
	}
	for f := range fallbacks {
		for target, st := range c.Node(f).Hints.Stats() {
			if st.Pending != 0 {
				t.Fatalf("fallback %s still keeps %d hints for %s", f, st.Pending, target)
			}
		}
	}
	// A strict write now succeeds.
	if _, err := c.Node(survivor).Coord.PutAt(ctx, keys[0], []byte("strict"), nil, coordinator.Levels{W: coordinator.All, PW: coordinator.All}); err != nil {
		t.Fatalf("put at PW=ALL with every primary back: %v", err)
	}
}

// keyWithPrimaries finds a key whose primaries are down plus survivor, so
// that the same nodes are down for it.
func keyWithPrimaries(t *testing.T, r *ring.Ring, prefix string, down []string, survivor string) []byte {
	t.Helper()
	for i := range 10000 {
		key := fmt.Appendf(nil, "%s-%d", prefix, i)
		pref := r.PreferenceForKey(key)
		if slices.Contains(pref, survivor) && slices.Contains(pref, down[0]) && slices.Contains(pref, down[1]) {
			return key
		}
	}
	t.Fatalf("no key has primaries %v and %s", down, survivor)
	return nil
}

// A fallback removes its copy only when the delivered version covers it:
// a newer write it took meanwhile keeps the copy until that write's own
// hint is delivered. A node that is a primary of the key never removes its
// copy, whatever it delivers.
func TestStandInCopyIsRemovedOnlyWhenCovered(t *testing.T) {
	c := newSloppyCluster(t, time.Hour) // no delivery but the test's
	ctx := ctxT(t)
	key := []byte("covered")
	pref := c.Ring.PreferenceForKey(key)
	killPrimaries(c, key, 0)
	var fallback string
	for f := range standIns(c, key) {
		fallback = f
	}
	co := c.Node(pref[1]).Coord
	v1, err := co.Put(ctx, key, []byte("v1"), nil, coordinator.All)
	if err != nil {
		t.Fatalf("put v1 at W=ALL through the fallback: %v", err)
	}
	if _, err := co.Put(ctx, key, []byte("v2"), v1.Context, coordinator.All); err != nil {
		t.Fatalf("put v2: %v", err)
	}
	c.Restart(pref[0])
	c.View.SetAlive(pref[0], true)

	fb := c.Node(fallback).Coord
	if n, err := fb.DeliverBatch(ctx, pref[0], [][]byte{key}, []*version.Object{v1}); n != 1 || err != nil {
		t.Fatalf("deliver v1: %d, %v", n, err)
	}
	if got := storedValues(t, c, fallback, key); !slices.Equal(got, []string{"v2"}) {
		t.Fatalf("after v1 was delivered the fallback holds %q, want its newer v2 kept", got)
	}
	v2, err := c.StoreOf(pref[1])
	if err != nil {
		t.Fatal(err)
	}
	obj2, _ := v2.Get(key)
	if n, err := fb.DeliverBatch(ctx, pref[0], [][]byte{key}, []*version.Object{obj2}); n != 1 || err != nil {
		t.Fatalf("deliver v2: %d, %v", n, err)
	}
	if got := storedValues(t, c, fallback, key); got != nil {
		t.Fatalf("after v2 was delivered the fallback still holds %q", got)
	}
	if got := storedValues(t, c, pref[0], key); !slices.Equal(got, []string{"v2"}) {
		t.Fatalf("the primary holds %q after both deliveries, want v2", got)
	}

	// A primary delivering a version (a coordinator's hint) keeps its copy.
	if n, err := co.DeliverBatch(ctx, pref[2], [][]byte{key}, []*version.Object{obj2}); n != 1 || err != nil {
		t.Fatalf("deliver from a primary: %d, %v", n, err)
	}
	if got := storedValues(t, c, pref[1], key); !slices.Equal(got, []string{"v2"}) {
		t.Fatalf("a primary removed its own copy after delivering: %q", got)
	}
}

// A fallback that keeps no hints (no HintKeeper) refuses to stand in, so a
// write counts it as a failed target, and the coordinator keeps the hint
// for the primary instead.
func TestFallbackWithoutHintsRefusesToStandIn(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 5, Replicas: 3, Seed: 14,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 300 * time.Millisecond}})
	ctx := ctxT(t)
	key := []byte("no-hints")
	pref := c.Ring.PreferenceForKey(key)
	killPrimaries(c, key, 0, 2)
	_, err := c.Node(pref[1]).Coord.Put(ctx, key, []byte("v"), nil, coordinator.Quorum)
	var qe *coordinator.QuorumError
	if !errors.As(err, &qe) || qe.Answered != 1 || !strings.Contains(err.Error(), "cannot stand in") {
		t.Fatalf("put with two primaries down and fallbacks without hints: %v, want a quorum error naming the refusal", err)
	}
	for f := range standIns(c, key) {
		if got := storedValues(t, c, f, key); got != nil {
			t.Fatalf("fallback %s that refused holds %q", f, got)
		}
	}
}

// A write with PW=ALL counts only primaries: a fallback's acknowledgement
// makes W but not PW, and the write fails saying it may have been applied.
func TestPWCountsOnlyPrimaryAcknowledgements(t *testing.T) {
	c := newSloppyCluster(t, time.Hour)
	ctx := ctxT(t)
	key := []byte("pw-all")
	pref := c.Ring.PreferenceForKey(key)
	// The failure detector has not noticed yet: PW=ALL is admitted, then
	// the down primary cannot acknowledge.
	c.Kill(pref[2])
	_, err := c.Node(pref[0]).Coord.PutAt(ctx, key, []byte("v"), nil, coordinator.Levels{W: coordinator.Quorum, PW: coordinator.All})
	var qe *coordinator.QuorumError
	if !errors.As(err, &qe) || !qe.Primaries || qe.Needed != 3 || qe.Answered > 2 || !strings.Contains(err.Error(), "may still have been applied") {
		t.Fatalf("put at PW=ALL with a primary dead: %v, want a QuorumError for primaries (3 needed)", err)
	}
	// Detected: W=ALL is met by a fallback, PW=QUORUM by the two primaries.
	c.View.SetAlive(pref[2], false)
	if _, err := c.Node(pref[0]).Coord.PutAt(ctx, key, []byte("v2"), nil, coordinator.Levels{W: coordinator.All, PW: coordinator.Quorum}); err != nil {
		t.Fatalf("put at W=ALL, PW=QUORUM through a fallback: %v", err)
	}
}

// Two concurrent writes taken by a fallback are merged in its copy; their
// hints, each covering only its own write, are delivered (together in one
// batch, or one by one) and the copy goes: checked against the merge of
// the versions delivered together, and when the last hint of the key does
// not cover it, kept as a new hint whose delivery removes it. (Before:
// neither hint alone covered the merged copy, which stayed for good.)
func TestStandInCopyOfConcurrentWritesIsRemoved(t *testing.T) {
	for _, entries := range []int{0, 1} {
		t.Run(fmt.Sprintf("batch-entries-%d", entries), func(t *testing.T) {
			c := testcluster.New(t, testcluster.Options{
				Nodes: 5, Replicas: 3, Seed: 13,
				Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 300 * time.Millisecond},
				Handoff: &handoff.Options{Interval: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
					Timeout: 300 * time.Millisecond, BatchEntries: entries},
			})
			ctx := ctxT(t)
			key := []byte("concurrent-standin")
			pref := c.Ring.PreferenceForKey(key)
			p1, p2, p3 := pref[0], pref[1], pref[2]
			killPrimaries(c, key, 0)
			var fb string
			for f := range standIns(c, key) {
				fb = f
			}
			// v1 reaches p2 and the fallback, v2 p3 and the fallback.
			c.Net.Cut(p2, p3)
			c.Net.Cut(p3, p2)
			if _, err := c.Node(p2).Coord.Put(ctx, key, []byte("v1"), nil, coordinator.One); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Node(p3).Coord.Put(ctx, key, []byte("v2"), nil, coordinator.One); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the fallback holds both writes", func() (bool, string) {
				got := storedValues(t, c, fb, key)
				return slices.Equal(got, []string{"v1", "v2"}), fmt.Sprintf("%q", got)
			})
			c.Net.Heal()
			c.Restart(p1)
			c.View.SetAlive(p1, true)
			waitFor(t, "the primary holds both writes and the fallback no copy", func() (bool, string) {
				got := storedValues(t, c, p1, key)
				st, err := c.StoreOf(fb)
				if err != nil {
					t.Fatal(err)
				}
				cp, err := st.Get(key)
				if err != nil {
					t.Fatal(err)
				}
				return slices.Equal(got, []string{"v1", "v2"}) && cp == nil,
					fmt.Sprintf("primary %s holds %q, fallback %s holds %v", p1, got, fb, cp)
			})
			waitFor(t, "the fallback keeps no hints", func() (bool, string) {
				st := c.Node(fb).Hints.Stats()
				for target, s := range st {
					if s.Pending != 0 {
						return false, fmt.Sprintf("%d for %s", s.Pending, target)
					}
				}
				return true, ""
			})
		})
	}
}

// A fallback's not-found does not answer a read while a primary that holds
// the key is still answering: with two of a key's primaries down, a read
// at R=1 coordinated by a fallback (whose own empty copy answers first)
// waits for the surviving primary, even when that primary is slower than
// the speculative delay.
func TestFallbackNotFoundDoesNotSatisfyR(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{
		Nodes: 5, Replicas: 3, Seed: 13,
		Coordinator: coordinator.Options{ReadRepairChance: -1, Timeout: 2 * time.Second, SpeculativeDelay: 5 * time.Millisecond},
		Handoff:     &handoff.Options{Interval: time.Hour, Timeout: 300 * time.Millisecond},
	})
	ctx := ctxT(t)
	first := []byte("weak-0")
	if _, err := c.Nodes[0].Coord.Put(ctx, first, []byte("v"), nil, coordinator.All); err != nil {
		t.Fatal(err)
	}
	// Kill its first two primaries; read it through a fallback standing in
	// for them, with the surviving primary slow.
	pref := c.Ring.PreferenceForKey(first)
	killPrimaries(c, first, 0, 1)
	survivor := pref[2]
	var via string
	for node := range standIns(c, first) {
		via = node
	}
	if via == "" {
		t.Fatal("no fallback stands in for the dead primaries")
	}
	c.Net.SetDelay(via, survivor, 100*time.Millisecond)
	obj, err := c.Node(via).Coord.Get(ctx, first, 1)
	if err != nil || fmt.Sprint(liveValues(obj)) != "[v]" {
		t.Fatalf("read at R=1 through fallback %s with %s slow: %v, %v (a fallback's not-found answered)", via, survivor, liveValues(obj), err)
	}
	// A key nobody holds still reads as not found, through the same node.
	missing := keyWithPrimaries(t, c.Ring, "weak-missing", pref[:2], survivor)
	obj, err = c.Node(via).Coord.Get(ctx, missing, 2)
	if err != nil || obj != nil {
		t.Fatalf("missing key at R=2 with two primaries down: %v, %v", obj, err)
	}
}
