package faults

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/version"
)

// RunReturningNode is the scenario "a returning node catches up": every
// key is written once with every node up; then one node (chosen by the
// seed) is killed, and for cfg.Duration clients write, overwrite and delete
// through the other nodes (blind writes and deletes, writes and deletes
// with the context of a read, PutBatch calls), then delete every other key
// once more. The node restarts on its disk and is marked alive again, and
// from then on no client sends anything — no read, so read repair cannot
// do the work. Within cfg.CatchUpDeadline every replica's local store must
// hold the same state for every key (Result.Contents, CheckCaughtUp), and
// every hint must be delivered (Result.Hints, CheckHintsDelivered).
//
// Today hinted handoff (cfg.Handoff) is the only mechanism that brings the
// node back without reads; anti-entropy will be a second one. cfg.Faults
// is ignored: the one fault is the node's absence. Keys default to 48.
func RunReturningNode(tb testing.TB, cfg Config) *Result {
	tb.Helper()
	if cfg.Keys == 0 {
		cfg.Keys = 48
	}
	cfg.Workload, cfg.Faults = Deletes, Faults{}
	res := newRun(tb, cfg)
	cfg, cl, h := res.Cfg, res.Cluster, res.History
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0xbac))
	ids := cl.IDs()
	victim := ids[rng.IntN(len(ids))]
	var live []string
	for _, id := range ids {
		if id != victim {
			live = append(live, id)
		}
	}
	res.Returned = victim
	h.Event("start: returning node %s, seed %d, %d nodes, N=%d, W=%s, %d keys, handoff %v, anti-entropy %v",
		victim, cfg.Seed, cfg.Nodes, cfg.Replicas, LevelName(cfg.W), cfg.Keys, cfg.Handoff != nil, cfg.AntiEntropy != nil)
	stopBackground := res.background()

	// Every key once, everyone up: the victim holds values to be
	// overwritten and deleted while it is away.
	first := &client{id: cfg.Clients + 1, cfg: &cfg, cl: cl, h: h, keys: res.Keys, stats: res.Stats, rng: rng}
	for _, key := range res.Keys {
		node := ids[rng.IntN(len(ids))]
		v := first.value(key)
		op := h.Invoke(first.writeOp(node, key, Put, v, false, nil))
		first.put(op, node, key, []byte(v), nil, false)
	}
	time.Sleep(2 * cfg.Timeout) // replication beyond W ends

	cl.Kill(victim)
	mark := rng.Float64() < 0.7
	if mark {
		cl.View.SetAlive(victim, false)
	}
	h.Event("kill %s (detector told: %v)", victim, mark)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			c := &client{id: id, cfg: &cfg, cl: cl, h: h, keys: res.Keys, stats: res.Stats,
				rng: rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(id)+1))}
			for ctx.Err() == nil {
				c.whileAway(live[c.rng.IntN(len(live))], c.keys[c.rng.IntN(len(c.keys))])
				time.Sleep(time.Duration(c.rng.IntN(3)) * time.Millisecond)
			}
		}(i)
	}
	wg.Wait()
	res.closingDeletes()
	time.Sleep(2 * cfg.Timeout) // replication and hints of the last writes
	stopBackground()
	if res.sampler != nil {
		res.sampler.sample(cl)
	}

	if cfg.WipeReturning {
		cl.RestartWiped(victim)
	} else {
		cl.Restart(victim)
	}
	cl.View.SetAlive(victim, true)
	restarted := time.Now()
	h.Event("restart %s on its disk (wiped: %v); no client operation from now on", victim, cfg.WipeReturning)

	res.CaughtUp = -1
	for {
		contents, err := res.contents()
		hintsLeft := false
		if err == nil && res.sampler != nil {
			for _, id := range ids {
				st, _ := cl.HintStats(id)
				for _, ts := range st {
					hintsLeft = hintsLeft || ts.Pending > 0
				}
			}
		}
		res.Contents = contents
		if err == nil && !hintsLeft && len(CheckConverged(res.statesOf(contents))) == 0 {
			res.CaughtUp = time.Since(restarted)
			break
		}
		if time.Since(restarted) > cfg.CatchUpDeadline {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if res.CaughtUp >= 0 {
		h.Event("every replica holds the same state %v after the restart", res.CaughtUp.Round(time.Millisecond))
	} else {
		h.Event("replicas still differ %v after the restart", cfg.CatchUpDeadline)
	}
	res.Replicas = res.statesOf(res.Contents)
	if res.sampler != nil {
		// The wait above was the hints' wait too: record what is left.
		res.Hints = res.sampler.drain(cl, 0)
		res.Hints.Wait, res.Hints.Deadline = time.Since(restarted), cfg.CatchUpDeadline
	}
	return res
}

// whileAway is one client operation of the returning-node scenario: a
// blind write, a blind delete, a write or delete with a read's context
// (the read is the only kind of read, and it cannot reach the node that is
// away), or a PutBatch.
func (c *client) whileAway(node, key string) {
	switch p := c.rng.Float64(); {
	case p < 0.35:
		v := c.value(key)
		op := c.h.Invoke(c.writeOp(node, key, Put, v, false, nil))
		c.put(op, node, key, []byte(v), nil, false)
	case p < 0.5:
		op := c.h.Invoke(c.writeOp(node, key, Delete, "", false, nil))
		c.put(op, node, key, nil, nil, true)
	case p < 0.9:
		c.contextWrite(key, 0.4)
	default:
		c.batch(node, key)
	}
}

// contents scans every node's local store.
func (res *Result) contents() (map[string]map[string]*version.Object, error) {
	out := map[string]map[string]*version.Object{}
	for _, id := range res.Cluster.IDs() {
		m, err := res.Cluster.Contents(id)
		if err != nil {
			return out, err
		}
		out[id] = m
	}
	return out, nil
}

// statesOf turns the nodes' contents into each key's replicas' states, for
// every key written in the run or stored anywhere; a replica that lacks the
// key has the empty state. A node that stores a key it does not replicate
// shows up as a replica of it too, so that the states differ.
func (res *Result) statesOf(contents map[string]map[string]*version.Object) map[string][]ReplicaState {
	keys := slices.Clone(res.Keys)
	for _, m := range contents {
		for k := range m {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	out := map[string][]ReplicaState{}
	for _, key := range keys {
		var nodes []string
		for _, n := range res.Cluster.Replicas([]byte(key)) {
			nodes = append(nodes, n.ID)
		}
		for id, m := range contents {
			if _, ok := m[key]; ok && !slices.Contains(nodes, id) {
				nodes = append(nodes, id)
			}
		}
		for _, id := range nodes {
			st := ReplicaState{Node: id}
			if m, ok := contents[id]; ok {
				st.Obj = m[key]
			} else {
				st.Err = fmt.Errorf("no contents read from %s", id)
			}
			out[key] = append(out[key], st)
		}
	}
	return out
}

// CheckCaughtUp is the returning-node scenario's checker: once the node is
// back, with no client operation at all, every replica's local store
// holds, for every key, the same state as every other replica of the key
// (objects compared whole: context and every sibling, tombstones
// included; a replica lacking a key another one holds differs from it),
// within the scenario's deadline. Equal states are the merge of all of
// them: a replica only ever merges.
func CheckCaughtUp(res *Result) []Violation {
	vs := CheckConverged(res.Replicas)
	for i := range vs {
		vs[i].Checker = "catch-up"
		vs[i].Msg += fmt.Sprintf(" (%v after %s returned, no client operation meanwhile)", res.Cfg.CatchUpDeadline, res.Returned)
	}
	return vs
}
