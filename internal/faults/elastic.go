package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/ringkv/ringkv/rebalance"
	"github.com/ringkv/ringkv/ring"
)

// Moves makes a run elastic: during the workload, under the faults, the
// cluster grows and shrinks through the rebalance service, as it does with
// `ringkv server --join` and `ringkv decommission` (the in-process cluster's
// shared view stands in for gossip).
type Moves struct {
	// Join is how many spare nodes (started, not ring members) join, and
	// Decommission how many members are marked leaving (a member that is
	// down when its turn comes, or is killed meanwhile, is removed as
	// `ringkv removenode` removes it: from the surviving copies). The
	// moves are spread over the workload.
	Join, Decommission int
	// Replicas, if not 0, is the N the cluster moves to (ringkv
	// set-replicas), at some point of the workload.
	Replicas int
	// Deadline bounds the wait, after the heal, for every move to end and
	// for every node to hand over and drop what it no longer replicates.
	// Default 15s.
	Deadline time.Duration
}

// FastRebalance is the rebalance service tuned for in-process runs: quick
// retries, and a node drops what it no longer replicates every 50ms.
func FastRebalance() *rebalance.Options {
	return &rebalance.Options{
		Backoff: rebalance.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		Timeout: 500 * time.Millisecond, Poll: 20 * time.Millisecond, DropInterval: 50 * time.Millisecond,
	}
}

// MovesReport is what an elastic run saw after the heal.
type MovesReport struct {
	// Settled says every move ended and every surplus copy was dropped
	// within Moves.Deadline, after Wait.
	Settled bool
	Wait    time.Duration
	// Pending describes what had not settled at the deadline.
	Pending string
	// Holders maps each key to the nodes whose store holds it, and Owners
	// to its preference list in the final ring.
	Holders, Owners map[string][]string
}

// moveNemesis runs the joins and decommissions of cfg.Moves, spread over
// the workload.
func moveNemesis(ctx context.Context, cfg *Config, res *Result) {
	m, cl, h := cfg.Moves, res.Cluster, res.History
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x30fe))
	ids := cl.IDs()
	spare := ids[len(ids)-m.Join:]
	originals := ids[:len(ids)-m.Join]
	type move struct {
		join bool
		node string // "" for the change of N
	}
	var plan []move
	for _, id := range spare {
		plan = append(plan, move{true, id})
	}
	for _, i := range rng.Perm(len(originals))[:m.Decommission] {
		plan = append(plan, move{false, originals[i]})
	}
	if m.Replicas != 0 {
		plan = append(plan, move{})
	}
	rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	step := cfg.Duration / time.Duration(len(plan)+1)
	for _, mv := range plan {
		select {
		case <-ctx.Done():
			return
		case <-time.After(step):
		}
		if mv.node == "" {
			err := cl.SetReplication(ring.Replication{Replicas: m.Replicas})
			h.Event("set replicas to %d (%v)", m.Replicas, err)
			continue
		}
		if mv.join {
			if err := cl.Join(mv.node); err != nil {
				h.Event("join %s: %v", mv.node, err)
				continue
			}
			h.Event("join %s (it streams its partitions, then becomes normal)", mv.node)
			continue
		}
		if err := cl.Decommission(mv.node); err != nil {
			h.Event("decommission %s: %v", mv.node, err)
			continue
		}
		h.Event("decommission %s (down: %v)", mv.node, cl.IsDown(mv.node))
	}
}

// waitMoves waits, after the heal, until no member is joining or leaving
// and no node holds a partition it does not replicate, then records who
// holds each key.
func (res *Result) waitMoves() {
	cl, h := res.Cluster, res.History
	deadline := res.Cfg.Moves.Deadline
	if deadline == 0 {
		deadline = 15 * time.Second
	}
	start := time.Now()
	rep := &MovesReport{}
	last := ""
	for {
		rep.Pending = res.unsettled()
		if rep.Pending != last {
			h.Event("moves: %s", rep.Pending)
			last = rep.Pending
		}
		if rep.Pending == "" {
			rep.Settled = true
			break
		}
		if time.Since(start) > deadline {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rep.Wait = time.Since(start)
	h.Event("moves settled: %v after %v %s", rep.Settled, rep.Wait.Round(time.Millisecond), rep.Pending)
	r := cl.View.Ring()
	rep.Holders, rep.Owners = map[string][]string{}, map[string][]string{}
	for _, key := range res.Keys {
		rep.Owners[key] = slices.Clone(r.PreferenceForKey([]byte(key)))
		for _, id := range cl.IDs() {
			st, err := cl.StoreOf(id)
			if err != nil {
				continue
			}
			if obj, err := st.Get([]byte(key)); err == nil && obj != nil {
				rep.Holders[key] = append(rep.Holders[key], id)
			}
		}
	}
	res.Moves = rep
}

// unsettled describes what keeps the moves from being over ("" if nothing).
func (res *Result) unsettled() string {
	cl := res.Cluster
	r := cl.View.Ring()
	var out []string
	for _, m := range r.Members() {
		if m.State == ring.StateJoining || m.State == ring.StateLeaving {
			out = append(out, m.ID+" "+m.State.String())
		}
	}
	if next := r.Config().Next; next != nil {
		out = append(out, "replicas moving to "+next.String())
	}
	for _, n := range cl.Nodes {
		if n.AE == nil || cl.IsDown(n.ID) {
			continue
		}
		var surplus []int
		for p := range r.Partitions() {
			if !slices.Contains(r.Preference(p), n.ID) && n.AE.Holds(p) {
				surplus = append(surplus, p)
			}
		}
		if len(surplus) > 0 {
			out = append(out, fmt.Sprintf("%s holds partitions %v it does not replicate", n.ID, surplus))
		}
		if n.RB != nil {
			for _, t := range n.RB.Transfers() {
				if t.State == "settling" || t.State == "streaming" {
					out = append(out, fmt.Sprintf("%s: %s %s %s %d/%d waiting for %q, last error %q", n.ID, t.Kind, t.Node, t.State, t.PartitionsDone, t.PartitionsTotal, t.Waiting, t.LastError))
				}
			}
		}
	}
	return strings.Join(out, "; ")
}

// CheckOwnersHold checks the end of an elastic run: every move ended, and
// every key that any node holds is held by exactly its owners in the final
// ring (every owner has it; no other node kept a copy).
func CheckOwnersHold(res *Result) []Violation {
	rep := res.Moves
	if rep == nil {
		return []Violation{{Checker: "owners", Msg: "not an elastic run (Config.Moves)"}}
	}
	var vs []Violation
	if !rep.Settled {
		vs = append(vs, Violation{Checker: "owners", Msg: "moves not settled after " + rep.Wait.String() + ": " + rep.Pending})
	}
	for _, key := range res.Keys {
		holders, owners := rep.Holders[key], rep.Owners[key]
		if len(holders) == 0 {
			continue
		}
		h, o := slices.Sorted(slices.Values(holders)), slices.Sorted(slices.Values(owners))
		if !slices.Equal(h, o) {
			vs = append(vs, Violation{Checker: "owners", Key: key,
				Msg: fmt.Sprintf("held by %v, owned by %v", h, o)})
		}
	}
	return vs
}
