package ring

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// genMembers draws n members with weights in [1, maxWeight], states from
// states, and racks (and DCs) drawn from the given name lists; an empty
// list leaves the field empty.
func genMembers(t *rapid.T, n int, maxWeight int, states []State, dcs, racks []string) []Member {
	ms := make([]Member, n)
	for i := range ms {
		ms[i] = Member{
			ID:     fmt.Sprintf("node-%d", i),
			Weight: rapid.IntRange(1, maxWeight).Draw(t, "weight"),
			State:  rapid.SampledFrom(states).Draw(t, "state"),
		}
		if len(dcs) > 0 {
			ms[i].DC = rapid.SampledFrom(dcs).Draw(t, "dc")
		}
		if len(racks) > 0 {
			ms[i].Rack = rapid.SampledFrom(racks).Draw(t, "rack")
		}
	}
	return ms
}

var allStates = []State{StateJoining, StateNormal, StateNormal, StateNormal, StateLeaving, StateLeft}

func eligible(ms []Member) map[string]Member {
	out := map[string]Member{}
	for _, m := range ms {
		if m.State == StateNormal || m.State == StateLeaving {
			out[m.ID] = m
		}
	}
	return out
}

func distinctRacks(ms []Member) int {
	racks := map[string]bool{}
	for _, m := range ms {
		racks[m.rackKey()] = true
	}
	return len(racks)
}

func TestPropEveryListHasMinNEligibleDistinctNodes(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ms := genMembers(t, rapid.IntRange(0, 12).Draw(t, "nodes"), 4, allStates, nil, nil)
		cfg := Config{
			Partitions: 1 << rapid.IntRange(0, 10).Draw(t, "log2q"),
			Replicas:   rapid.IntRange(1, 5).Draw(t, "replicas"),
		}
		r := mustNew(t, cfg, ms)
		elig := eligible(ms)
		want := min(cfg.Replicas, len(elig))
		for p := range r.Partitions() {
			pref := r.Preference(p)
			if len(pref) != want {
				t.Fatalf("partition %d: %d replicas %v, want %d", p, len(pref), pref, want)
			}
			for i, id := range pref {
				if _, ok := elig[id]; !ok {
					t.Fatalf("partition %d: %s is not Normal or Leaving", p, id)
				}
				if slices.Contains(pref[:i], id) {
					t.Fatalf("partition %d: %s twice in %v", p, id, pref)
				}
			}
		}
	})
}

func TestPropListsUseDistinctRacksWhenThereAreEnough(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		racks := []string{"r1", "r2", "r3", "r4", "r5"}[:rapid.IntRange(1, 5).Draw(t, "racks")]
		ms := genMembers(t, rapid.IntRange(1, 14).Draw(t, "nodes"), 4, allStates, nil, racks)
		cfg := Config{Partitions: 256, Replicas: rapid.IntRange(1, 4).Draw(t, "replicas")}
		r := mustNew(t, cfg, ms)
		elig := slices.Collect(maps.Values(eligible(ms)))
		// With at least N racks every replica is on its own rack; with
		// fewer, every rack is used before any is used twice.
		wantRacks := min(cfg.Replicas, distinctRacks(elig), len(elig))
		for p := range r.Partitions() {
			var in []Member
			for _, id := range r.Preference(p) {
				m, _ := r.Member(id)
				in = append(in, m)
			}
			if got := distinctRacks(in); got != wantRacks {
				t.Fatalf("partition %d: %v spans %d racks, want %d", p, in, got, wantRacks)
			}
		}
	})
}

func TestPropPerDCCountsAreHonoured(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		dcs := []string{"dc1", "dc2", "dc3"}[:rapid.IntRange(1, 3).Draw(t, "dcs")]
		ms := genMembers(t, rapid.IntRange(len(dcs), 15).Draw(t, "nodes"), 3, allStates, dcs, []string{"", "ra", "rb", "rc"})
		for i, dc := range dcs {
			ms[i].DC = dc // every DC has a member, as validation requires
		}
		perDC := map[string]int{}
		total := 0
		for _, dc := range dcs {
			perDC[dc] = rapid.IntRange(0, 3).Draw(t, "count")
			total += perDC[dc]
		}
		if total == 0 {
			perDC[dcs[0]] = 1
		}
		r := mustNew(t, Config{Partitions: 128, ReplicasPerDC: perDC}, ms)

		inDC := map[string][]Member{}
		for _, m := range eligible(ms) {
			inDC[m.DC] = append(inDC[m.DC], m)
		}
		for p := range r.Partitions() {
			got := map[string][]Member{}
			for _, id := range r.Preference(p) {
				m, _ := r.Member(id)
				got[m.DC] = append(got[m.DC], m)
			}
			for _, dc := range dcs {
				want := min(perDC[dc], len(inDC[dc]))
				if len(got[dc]) != want {
					t.Fatalf("partition %d: %d replicas in %s, want %d (list %v)", p, len(got[dc]), dc, want, r.Preference(p))
				}
				if wantRacks := min(want, distinctRacks(inDC[dc])); distinctRacks(got[dc]) != wantRacks {
					t.Fatalf("partition %d: replicas in %s span %d racks, want %d", p, dc, distinctRacks(got[dc]), wantRacks)
				}
			}
		}
	})
}

// fairSlots is each node's fair share of the Q*N replica slots: its weight's
// share, except that a node cannot hold one partition twice, so a share
// above Q is capped and the excess spread over the rest.
func fairSlots(ms []Member, q, n int) map[string]float64 {
	fair := map[string]float64{}
	slots := float64(q * n)
	open := slices.Clone(ms)
	for len(open) > 0 {
		w := 0
		for _, m := range open {
			w += m.Weight
		}
		var rest []Member
		for _, m := range open {
			if share := float64(m.Weight) / float64(w) * slots; share > float64(q) {
				fair[m.ID] = float64(q)
			} else {
				rest = append(rest, m)
			}
		}
		if len(rest) == len(open) {
			for _, m := range open {
				fair[m.ID] = float64(m.Weight) / float64(w) * slots
			}
			return fair
		}
		slots -= float64(q * (len(open) - len(rest)))
		open = rest
	}
	return fair
}

// The acceptance bound is 10% on replica slots (what a node stores). The
// balancing pass aims at 5%; the rest is room for rounding. Primaries are
// balanced to a 10% band; with as few as ~16 primaries for a small node
// rounding alone is 6%, so they are checked at 20%.
func TestPropLoadIsProportionalToWeight(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ms := genMembers(t, rapid.IntRange(8, 16).Draw(t, "nodes"), 4, []State{StateNormal}, nil, nil)
		const q, n = 1024, 3
		r := mustNew(t, Config{Partitions: q, Replicas: n}, ms)
		fair := fairSlots(ms, q, n)
		count := r.ReplicaCount()
		own := r.Ownership()
		for _, m := range ms {
			if dev := float64(count[m.ID])/fair[m.ID] - 1; dev > 0.10 || dev < -0.10 {
				t.Fatalf("%s (weight %d) holds %d replica slots, fair share %.1f: off by %+.1f%%",
					m.ID, m.Weight, count[m.ID], fair[m.ID], 100*dev)
			}
			share := fair[m.ID] / n
			if dev := float64(len(own[m.ID]))/share - 1; dev > 0.20 || dev < -0.20 {
				t.Fatalf("%s (weight %d) is primary for %d partitions, fair share %.1f: off by %+.1f%%",
					m.ID, m.Weight, len(own[m.ID]), share, 100*dev)
			}
		}
	})
}

// Adding a node of weight w to nodes of total weight W should move about
// its fair share of the data: N*Q*w/(W+w) replica slots (fewer if its share
// is capped at Q). Plain consistent hashing moves exactly what the new node
// takes; the balancing passes add some reshuffling among the old nodes.
// Measured over thousands of random clusters, replica slots moved are 1.10x
// the share at the median, 1.3-1.5x at p99 and at most ~1.7x, the worst
// cases being a few heavy nodes among many light ones, where a heavy node
// must sit in ~90% of all lists. The test accepts [0.5, 2.0]x: at least
// half the share (the new node really takes load) and at most one extra
// share of reshuffling. Primary changes are accepted in [0.5, 2.5]x of the
// new node's share of primaries (measured median 1.15x, max ~1.85x): the
// primary balancing also swaps roles inside lists, which moves no data.
// Removing the node again must restore the old ring exactly.
func TestPropAddingANodeMovesAboutItsShare(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ms := genMembers(t, rapid.IntRange(8, 16).Draw(t, "nodes"), 4, []State{StateNormal}, nil, nil)
		const q, n = 1024, 3
		cfg := Config{Partitions: q, Replicas: n}
		before := mustNew(t, cfg, ms)
		added := Member{ID: "new-node", Weight: rapid.IntRange(1, 4).Draw(t, "new weight"), State: StateNormal}
		grown := append(slices.Clone(ms), added)
		after := mustNew(t, cfg, grown)

		fair := fairSlots(grown, q, n)[added.ID]
		slots, primaries := 0, 0
		for _, m := range Diff(before, after) {
			slots += len(m.Gained())
			if m.PrimaryChanged() {
				primaries++
			}
		}
		if ratio := float64(slots) / fair; ratio < 0.5 || ratio > 2.0 {
			t.Fatalf("adding %s moved %d replica slots, %.2f times its fair share %.1f", added.ID, slots, ratio, fair)
		}
		if ratio := float64(primaries) / (fair / n); ratio < 0.5 || ratio > 2.5 {
			t.Fatalf("adding %s changed %d primaries, %.2f times its fair share %.1f", added.ID, primaries, ratio, fair/n)
		}

		back := mustNew(t, cfg, ms)
		if len(Diff(before, back)) != 0 {
			t.Fatal("removing the added node did not restore the ring")
		}
		there, again := Diff(before, after), Diff(after, back)
		if len(there) != len(again) {
			t.Fatalf("%d partitions moved on join but %d on removal", len(there), len(again))
		}
	})
}

func TestPropRingDependsOnlyOnMemberSet(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ms := genMembers(t, rapid.IntRange(2, 12).Draw(t, "nodes"), 4, allStates, []string{"dc1", "dc2"}, []string{"", "r1", "r2"})
		ms[0].DC = "dc1"
		ms[len(ms)-1].DC = "dc2"
		cfgs := []Config{
			{Partitions: 256},
			{Partitions: 256, ReplicasPerDC: map[string]int{"dc1": 2, "dc2": 1}},
		}
		shuffled := rapid.Permutation(ms).Draw(t, "order")
		for _, cfg := range cfgs {
			a, b := mustNew(t, cfg, ms), mustNew(t, cfg, shuffled)
			if d := Diff(a, b); len(d) != 0 {
				t.Fatalf("member order changed partition %d: %v vs %v", d[0].Partition, d[0].Old, d[0].New)
			}
			if !slices.Equal(a.Members(), b.Members()) {
				t.Fatal("member order changed Members()")
			}
		}
	})
}

func BenchmarkNew100Nodes(b *testing.B) {
	ms := make([]Member, 100)
	for i := range ms {
		ms[i] = Member{ID: fmt.Sprintf("node-%03d", i), Weight: 1 + i%4, Rack: fmt.Sprintf("r%d", i%5), State: StateNormal}
	}
	for b.Loop() {
		if _, err := New(Config{}, ms); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPreferenceForKey(b *testing.B) {
	r := mustNew(b, Config{}, nodes(16))
	key := []byte("user:0000001234!")
	for b.Loop() {
		if len(r.PreferenceForKey(key)) != 3 {
			b.Fatal("short list")
		}
	}
}
