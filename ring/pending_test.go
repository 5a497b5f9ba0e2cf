package ring

import (
	"slices"
	"testing"
)

func TestPendingOwnersAreTheFuturePrimariesNotPrimariesNow(t *testing.T) {
	cfg := Config{Partitions: 256, Replicas: 3}
	ms := nodes(4)
	ms[3].State = StateJoining
	r := mustNew(t, cfg, ms)
	all := nodes(4)
	want := mustNew(t, cfg, all)
	fr, err := r.Future()
	if err != nil {
		t.Fatal(err)
	}
	gained := 0
	for p := range r.Partitions() {
		if got := fr.Preference(p); !slices.Equal(got, want.Preference(p)) {
			t.Fatalf("partition %d: future preference %v, want %v (the ring with the joiner normal)", p, got, want.Preference(p))
		}
		if slices.Contains(r.Preference(p), "node-03") {
			t.Fatalf("partition %d: a joining member is a primary now: %v", p, r.Preference(p))
		}
		pend := r.Pending(p)
		if slices.Contains(want.Preference(p), "node-03") {
			if !slices.Equal(pend, []string{"node-03"}) {
				t.Fatalf("partition %d: pending %v, want [node-03]", p, pend)
			}
			gained++
		} else if len(pend) != 0 {
			t.Fatalf("partition %d: pending %v, want none", p, pend)
		}
	}
	g := r.Gained("node-03")
	if len(g) != gained || gained == 0 {
		t.Fatalf("Gained = %d partitions, want %d (> 0)", len(g), gained)
	}
	if !slices.IsSorted(g) {
		t.Fatal("Gained is not ascending")
	}
	if len(r.Gained("node-00")) != 0 {
		t.Fatal("a normal member gains partitions")
	}
}

func TestRingWithoutJoiningMembersIsItsOwnFutureAndHasNoPending(t *testing.T) {
	r := mustNew(t, Config{Partitions: 64, Replicas: 3}, nodes(4))
	fr, err := r.Future()
	if err != nil || fr != r {
		t.Fatalf("Future = %p, %v; want the ring itself", fr, err)
	}
	for p := range r.Partitions() {
		if pend := r.Pending(p); pend != nil {
			t.Fatalf("partition %d: pending %v", p, pend)
		}
	}
	if g := r.Gained("node-01"); g != nil {
		t.Fatalf("Gained = %v", g)
	}
}

func TestTwoJoinersArePendingTogether(t *testing.T) {
	ms := nodes(5)
	ms[3].State, ms[4].State = StateJoining, StateJoining
	r := mustNew(t, Config{Partitions: 128, Replicas: 3}, ms)
	for p := range r.Partitions() {
		for _, id := range r.Pending(p) {
			if id != "node-03" && id != "node-04" {
				t.Fatalf("partition %d: %s pending, not a joiner", p, id)
			}
		}
	}
	if len(r.Gained("node-03")) == 0 || len(r.Gained("node-04")) == 0 {
		t.Fatal("a joiner gains nothing")
	}
}

// A leaving member's partitions are pending on their next owners: the
// future is the ring without it, and every pending owner of a partition is
// a future primary that is not a primary now.
func TestLeavingMembersPartitionsArePendingOnTheirNextOwners(t *testing.T) {
	cfg := Config{Partitions: 256, Replicas: 3}
	ms := nodes(5)
	ms[2].State = StateLeaving
	r := mustNew(t, cfg, ms)
	without := mustNew(t, cfg, append(slices.Clone(ms[:2]), ms[3:]...))
	fr, err := r.Future()
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for p := range r.Partitions() {
		if !slices.Equal(fr.Preference(p), without.Preference(p)) {
			t.Fatalf("partition %d: future %v, want %v (the ring without the leaving member)", p, fr.Preference(p), without.Preference(p))
		}
		var want []string
		for _, id := range without.Preference(p) {
			if !slices.Contains(r.Preference(p), id) {
				want = append(want, id)
			}
		}
		if !slices.Equal(r.Pending(p), want) {
			t.Fatalf("partition %d: pending %v, want %v", p, r.Pending(p), want)
		}
		if slices.Contains(r.Preference(p), "node-02") {
			if len(want) != 1 {
				t.Fatalf("partition %d: the leaving member's place goes to %v, want one node", p, want)
			}
			moved++
		}
		// Other partitions may move too: placement balances load, so
		// removing a member can shift a partition it did not own.
	}
	if moved == 0 || len(r.Gained("node-02")) != 0 {
		t.Fatalf("moved %d, leaving member gains %v", moved, r.Gained("node-02"))
	}
}

// A change of N (Config.Next) makes the nodes that will hold the extra
// replicas pending owners; a decrease makes none.
func TestReplicationChangeIsPending(t *testing.T) {
	up := mustNew(t, Config{Partitions: 256, Replicas: 2, Next: &Replication{Replicas: 3}}, nodes(5))
	three := mustNew(t, Config{Partitions: 256, Replicas: 3}, nodes(5))
	if up.Replicas() != 2 {
		t.Fatalf("N = %d while moving to 3", up.Replicas())
	}
	for p := range up.Partitions() {
		var want []string
		for _, id := range three.Preference(p) {
			if !slices.Contains(up.Preference(p), id) {
				want = append(want, id)
			}
		}
		if len(want) == 0 || !slices.Equal(up.Pending(p), want) {
			t.Fatalf("partition %d: pending %v, want %v (non-empty)", p, up.Pending(p), want)
		}
	}
	// Down: mostly a subset (placement balances load per N, so a few
	// partitions move), and what is not is pending.
	down := mustNew(t, Config{Partitions: 256, Replicas: 3, Next: &Replication{Replicas: 2}}, nodes(5))
	two := mustNew(t, Config{Partitions: 256, Replicas: 2}, nodes(5))
	moved := 0
	for p := range down.Partitions() {
		var want []string
		for _, id := range two.Preference(p) {
			if !slices.Contains(down.Preference(p), id) {
				want = append(want, id)
			}
		}
		if !slices.Equal(down.Pending(p), want) {
			t.Fatalf("partition %d: pending %v, want %v", p, down.Pending(p), want)
		}
		if len(want) > 0 {
			moved++
		}
	}
	if moved > down.Partitions()/4 {
		t.Fatalf("%d of %d partitions move when N goes from 3 to 2", moved, down.Partitions())
	}
	if _, err := New(Config{Replicas: 3, Next: &Replication{Replicas: 0, ReplicasPerDC: map[string]int{"x": -1}}}, nodes(3)); err == nil {
		t.Fatal("a bad target replication was accepted")
	}
}
