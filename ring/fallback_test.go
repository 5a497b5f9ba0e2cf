package ring

import (
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// genRing draws a ring with racks and, half the time, per-DC counts.
func genRing(t *rapid.T) (*Ring, []Member) {
	dcs := []string{"dc1", "dc2"}
	ms := genMembers(t, rapid.IntRange(1, 12).Draw(t, "nodes"), 3, allStates, dcs, []string{"", "ra", "rb", "rc"})
	cfg := Config{Partitions: 64, Replicas: rapid.IntRange(1, 4).Draw(t, "replicas")}
	if rapid.Bool().Draw(t, "perDC") {
		ms[0].DC = "dc1"
		cfg.Replicas = 0
		cfg.ReplicasPerDC = map[string]int{"dc1": rapid.IntRange(1, 3).Draw(t, "dc1"), "dc2": rapid.IntRange(0, 2).Draw(t, "dc2")}
	} else {
		for i := range ms {
			ms[i].DC = ""
		}
	}
	return mustNew(t, cfg, ms), ms
}

// poolOf names the pool a member's replicas are counted in: its DC under
// per-DC counts, else the whole cluster.
func poolOf(r *Ring, id string) string {
	if r.cfg.ReplicasPerDC == nil {
		return ""
	}
	m, _ := r.Member(id)
	return m.DC
}

func TestPropExtendedListIsPrimariesThenDistinctFallbacksPerPool(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r, ms := genRing(t)
		elig := eligible(ms)
		inPool := map[string][]Member{}
		for _, m := range elig {
			inPool[poolOf(r, m.ID)] = append(inPool[poolOf(r, m.ID)], m)
		}
		for p := range r.Partitions() {
			pref, ext := r.Preference(p), r.Extended(p)
			if !slices.Equal(ext[:len(pref)], pref) {
				t.Fatalf("partition %d: extended list %v does not start with the primaries %v", p, ext, pref)
			}
			primaries, fallbacks := map[string][]Member{}, map[string][]Member{}
			for i, id := range ext {
				if slices.Contains(ext[:i], id) {
					t.Fatalf("partition %d: %s twice in %v", p, id, ext)
				}
				m, ok := elig[id]
				if !ok {
					t.Fatalf("partition %d: %s in %v is not Normal or Leaving", p, id, ext)
				}
				if i < len(pref) {
					primaries[poolOf(r, id)] = append(primaries[poolOf(r, id)], m)
				} else {
					fallbacks[poolOf(r, id)] = append(fallbacks[poolOf(r, id)], m)
				}
			}
			for pool, all := range inPool {
				prim, fb := primaries[pool], fallbacks[pool]
				if want := min(len(prim), len(all)-len(prim)); len(fb) != want {
					t.Fatalf("partition %d pool %q: %d fallbacks %v, want %d (one per primary, as far as nodes allow)", p, pool, len(fb), ext, want)
				}
				// Racks not used yet come first: the list spans as many racks
				// as the pool can give it.
				got := distinctRacks(append(slices.Clone(prim), fb...))
				if want := min(distinctRacks(prim)+len(prim), distinctRacks(all)); got != want {
					t.Fatalf("partition %d pool %q: primaries and fallbacks span %d racks, want %d", p, pool, got, want)
				}
			}
		}
	})
}

func TestPropExtendedListDependsOnlyOnMemberSet(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r, ms := genRing(t)
		shuffled := mustNew(t, r.Config(), rapid.Permutation(ms).Draw(t, "order"))
		for p := range r.Partitions() {
			if !slices.Equal(r.Extended(p), shuffled.Extended(p)) {
				t.Fatalf("member order changed partition %d: %v vs %v", p, r.Extended(p), shuffled.Extended(p))
			}
		}
	})
}

func TestPropTargetsAreFirstHealthyNodesOnePerPrimary(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		r, ms := genRing(t)
		down := map[string]bool{}
		for _, m := range ms {
			down[m.ID] = rapid.Bool().Draw(t, "down "+m.ID)
		}
		healthy := func(id string) bool { return !down[id] }
		for p := range r.Partitions() {
			pref, ext := r.Preference(p), r.Extended(p)
			fallbacks := ext[len(pref):]
			targets := r.Targets(p, healthy)
			if len(targets) != len(pref) {
				t.Fatalf("partition %d: %d targets for %d primaries", p, len(targets), len(pref))
			}
			var nodes []string
			next := map[string]int{} // pool -> fallbacks of that pool used so far, in order
			for i, tg := range targets {
				if slices.Contains(nodes, tg.Node) {
					t.Fatalf("partition %d: %s twice in targets %v", p, tg.Node, targets)
				}
				nodes = append(nodes, tg.Node)
				// The k-th down primary of a pool gets the pool's k-th
				// healthy fallback, while there is one.
				var free []string
				for _, f := range fallbacks {
					if healthy(f) && poolOf(r, f) == poolOf(r, pref[i]) {
						free = append(free, f)
					}
				}
				switch {
				case healthy(pref[i]):
					if tg != (Target{Node: pref[i]}) {
						t.Fatalf("partition %d: healthy primary %s replaced: %+v", p, pref[i], tg)
					}
				case next[poolOf(r, pref[i])] < len(free):
					want := Target{Node: free[next[poolOf(r, pref[i])]], For: pref[i]}
					next[poolOf(r, pref[i])]++
					if tg != want {
						t.Fatalf("partition %d: down primary %s: target %+v, want %+v (extended %v)", p, pref[i], tg, want, ext)
					}
				default:
					if tg != (Target{Node: pref[i]}) {
						t.Fatalf("partition %d: down primary %s with no fallback left: target %+v", p, pref[i], tg)
					}
				}
			}
		}
	})
}

func TestTargetsWithEveryNodeHealthyAreThePrimaries(t *testing.T) {
	r := mustNew(t, Config{Partitions: 16}, nodes(5))
	for p := range r.Partitions() {
		for i, tg := range r.Targets(p, func(string) bool { return true }) {
			if tg != (Target{Node: r.Preference(p)[i]}) {
				t.Fatalf("partition %d: target %d is %+v", p, i, tg)
			}
		}
	}
}

func TestTwoPrimariesDownTakeTheFirstTwoFallbacks(t *testing.T) {
	r := mustNew(t, Config{Partitions: 16}, nodes(5))
	for p := range r.Partitions() {
		ext := r.Extended(p)
		if len(ext) != 5 {
			t.Fatalf("partition %d: extended list %v, want all 5 nodes (3 primaries, 2 fallbacks)", p, ext)
		}
		down := map[string]bool{ext[0]: true, ext[2]: true}
		got := r.Targets(p, func(id string) bool { return !down[id] })
		want := []Target{{Node: ext[3], For: ext[0]}, {Node: ext[1]}, {Node: ext[4], For: ext[2]}}
		if !slices.Equal(got, want) {
			t.Fatalf("partition %d: targets %v, want %v", p, got, want)
		}
	}
}
