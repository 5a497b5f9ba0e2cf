package membership

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/ring"
)

func stateOn(m *Membership, id string) ring.State {
	mb, ok := m.Ring().Member(id)
	if !ok {
		return ring.State(0xff)
	}
	return mb.State
}

// TestOperatorSetsAnotherNodesState: any node can decommission another
// (the target adopts leaving), a dead node can be marked left, and a node
// marked left cannot come back: not from its old data directory, not from
// an empty one, and its old record with a newer version does not undo it.
func TestOperatorSetsAnotherNodesState(t *testing.T) {
	h := newHarness(t)
	ms, cfgs := h.cluster(4)
	waitFor(t, 10*time.Second, "four nodes converge", func() bool {
		return converged(ms, "n0", "n1", "n2", "n3")
	})

	// n0 decommissions n3, which is alive: n3 adopts the state itself.
	if err := ms[0].SetMemberState("n3", ring.StateLeaving); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n3 leaving on every node, n3 included", func() bool {
		for _, m := range ms {
			if stateOn(m, "n3") != ring.StateLeaving {
				return false
			}
		}
		return ms[3].LocalNode().State == ring.StateLeaving
	})
	if err := ms[1].SetMemberState("n3", ring.StateNormal); err == nil {
		t.Error("an operator set another node back to normal")
	}
	if err := ms[1].SetMemberState("nobody", ring.StateLeaving); err == nil {
		t.Error("unknown node accepted")
	}

	// n2 dies; n1 marks it leaving then left while it is down.
	ms[2].Close()
	waitFor(t, 30*time.Second, "n2 down", func() bool { return !ms[0].Alive("n2") && !ms[1].Alive("n2") })
	for _, s := range []ring.State{ring.StateLeaving, ring.StateLeft} {
		if err := ms[1].SetMemberState("n2", s); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "n2 left everywhere", func() bool {
		for _, i := range []int{0, 1, 3} {
			if stateOn(ms[i], "n2") != ring.StateLeft || inAnyPreference(ms[i].Ring(), "n2") {
				return false
			}
		}
		return true
	})

	// n2 restarts on its data directory (which says normal): refused.
	if _, err := Start(cfgs[2]); err == nil || !strings.Contains(err.Error(), "has left the cluster") {
		// Its persisted record says normal, so it starts, joins, and
		// must learn it has left.
		t.Fatalf("n2 restarted on its old data directory: err = %v", err)
	}
	// On an empty data directory: refused too.
	if err := os.RemoveAll(cfgs[2].DataDir); err != nil {
		t.Fatal(err)
	}
	if _, err := Start(cfgs[2]); err == nil || !strings.Contains(err.Error(), "has left the cluster") {
		t.Fatalf("n2 restarted on an empty data directory: err = %v", err)
	}
	for _, i := range []int{0, 1, 3} {
		if got := stateOn(ms[i], "n2"); got != ring.StateLeft {
			t.Errorf("%s: n2 is %v after it tried to come back", ms[i].LocalNode().ID, got)
		}
	}

	// A record of n2 claiming normal with a newer version (what an old
	// n2 would gossip) does not undo left.
	old := ms[0].view.Load().recs["n2"]
	old.State, old.Version = ring.StateNormal, old.Version+1000
	ms[0].mu.Lock()
	ms[0].mergeLocked(old, "test")
	ms[0].mu.Unlock()
	if got := ms[0].view.Load().recs["n2"].State; got != ring.StateLeft {
		t.Errorf("a newer normal record of n2 was merged: %v", got)
	}
	ms[0].mu.Lock()
	got := ms[0].tab.recs["n2"].State
	ms[0].mu.Unlock()
	if got != ring.StateLeft {
		t.Errorf("a newer normal record of n2 entered the table: %v", got)
	}

	// A node that left, restarted on its own data directory, refuses at
	// once: n3 goes leaving → left itself.
	if err := ms[3].SetState(ring.StateLeft); err != nil {
		t.Fatal(err)
	}
	ms[3].Close()
	if _, err := Start(cfgs[3]); err == nil || !strings.Contains(err.Error(), "has left the cluster") {
		t.Fatalf("n3 restarted after leaving: err = %v", err)
	}
}

// --replace is refused for a member that is up, an unknown one, and on a
// node that joins nothing; accepted for a dead member, which becomes
// leaving while the replacement joins with its tokens.
func TestReplaceChecks(t *testing.T) {
	h := newHarness(t)
	ms, _ := h.cluster(3)
	waitFor(t, 10*time.Second, "three nodes converge", func() bool { return converged(ms, "n0", "n1", "n2") })
	seed := ms[0].LocalNode().GossipAddr
	for _, bad := range []struct{ replace, want string }{
		{"n1", "it is up"}, {"nobody", "no such member"},
	} {
		cfg := h.config("r-"+bad.replace, seed)
		cfg.StreamOnJoin, cfg.Replace = true, bad.replace
		if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("replace %s: err = %v, want %q", bad.replace, err, bad.want)
		}
	}
	ms[2].Close()
	waitFor(t, 30*time.Second, "n2 down", func() bool { return !ms[0].Alive("n2") })
	cfg := h.config("n9", seed)
	cfg.StreamOnJoin, cfg.Replace = true, "n2"
	n9 := h.start(cfg)
	if me := n9.LocalNode(); me.State != ring.StateJoining || me.Tokens != "n2" {
		t.Fatalf("replacement record: %+v", me)
	}
	waitFor(t, 10*time.Second, "n2 leaving everywhere", func() bool {
		return stateOn(ms[0], "n2") == ring.StateLeaving && stateOn(ms[1], "n2") == ring.StateLeaving && stateOn(n9, "n2") == ring.StateLeaving
	})
	if m, _ := ms[0].Ring().Member("n9"); m.Tokens != "n2" {
		t.Fatalf("n0 sees n9 as %+v", m)
	}
}

// A replication change set on one node reaches every node (and a node
// that restarts keeps it, one that joins later learns it): first the
// target, then, finished, the ring's own N.
func TestReplicationChangeSpreads(t *testing.T) {
	h := newHarness(t)
	ms, cfgs := h.cluster(3)
	waitFor(t, 10*time.Second, "three nodes converge", func() bool { return converged(ms, "n0", "n1", "n2") })
	if err := ms[1].SetReplicationTarget(ring.Replication{Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the target everywhere", func() bool {
		for _, m := range ms {
			cur, next := m.Replication()
			if cur.Replicas != 3 || next == nil || next.Replicas != 2 {
				return false
			}
		}
		return true
	})
	if err := ms[2].FinishReplication(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "N=2 everywhere", func() bool {
		for _, m := range ms {
			cur, next := m.Replication()
			if cur.Replicas != 2 || next != nil || m.Ring().Replicas() != 2 {
				return false
			}
		}
		return true
	})
	if err := ms[0].FinishReplication(); err == nil {
		t.Error("finishing with no change in progress succeeded")
	}
	ms[2].Close()
	m2 := h.start(cfgs[2])
	if cur, _ := m2.Replication(); cur.Replicas != 2 {
		t.Errorf("restarted node: N=%d", cur.Replicas)
	}
	late := h.start(h.config("n9", ms[0].LocalNode().GossipAddr))
	if cur, _ := late.Replication(); cur.Replicas != 2 || late.Ring().Replicas() != 2 {
		t.Errorf("late joiner: N=%d, ring %d", cur.Replicas, late.Ring().Replicas())
	}
}
