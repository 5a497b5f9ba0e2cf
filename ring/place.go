package ring

import (
	"cmp"
	"math"
	"slices"
	"strconv"
)

// balanceSlack is how far a node's replica count may stray from its fair
// share: the walk passes over a node above it, and balanceReplicas moves
// slots until every node is within it. 5% leaves room for rounding under
// the 10% the tests demand.
const balanceSlack = 0.05

// vnode is one virtual-node token and the eligible node it belongs to.
type vnode struct {
	token uint64
	node  int32
}

// pnode is an eligible node as placement sees it.
type pnode struct {
	id     string
	seed   string // seeds its tokens: its ID, or the ID it replaces
	weight int
	rack   int // index of its failure domain
	pool   int // index into placer.pools
}

// pool is a set of nodes that together hold count replicas of every
// partition: the whole cluster, or one DC when ReplicasPerDC is set.
type pool struct {
	count int   // replicas wanted from this pool (capped at len(nodes))
	nodes []int // indexes into placer.nodes
}

type placer struct {
	q      int
	shift  uint
	nodes  []pnode
	racks  int
	pools  []pool
	vnodes []vnode // sorted by token, then node
	target []float64
	hi     []int      // replica slots a node may take before the walk skips it
	load   []int      // replica slots taken so far
	tokens [][]uint64 // node -> its vnode tokens, sorted
	dist   []uint64   // p*len(nodes)+node -> walkDistance(p, node), if tabulated

	// Per-partition scratch, reset by bumping stamp.
	stamp    int32
	seen     []int32 // node -> stamp when seen in this walk
	rackUsed []int32 // rack -> stamp when used in this partition
	chosen   []bool  // node -> chosen for this partition
	order    []int   // distinct nodes in walk order
	inPool   []int   // pool -> replicas chosen so far
}

// place computes every partition's extended preference list: its
// primaries (the preference list) followed by its fallbacks. members are
// sorted by ID with weights defaulted. It returns the extended lists and
// the number of primaries of each.
func place(cfg Config, members []Member) (ext [][]string, primaries []int) {
	pl := newPlacer(cfg, members)
	ext = make([][]string, cfg.Partitions)
	primaries = make([]int, cfg.Partitions)
	if len(pl.nodes) == 0 {
		for p := range ext {
			ext[p] = []string{}
		}
		return ext, primaries
	}
	// One backing array for all lists keeps the ring compact.
	want := 0
	for _, po := range pl.pools {
		want += po.count
	}
	lists := make([][]int, cfg.Partitions)
	flat := make([]int, 0, want*cfg.Partitions)
	for p := range lists {
		start := len(flat)
		flat = append(flat, pl.choose(p)...)
		lists[p] = flat[start:len(flat):len(flat)]
	}
	pl.tabulateDistances()
	pl.balanceReplicas(lists)
	pl.balancePrimaries(lists)

	backing := make([]string, 0, 2*len(flat))
	for p, list := range lists {
		start := len(backing)
		for _, n := range list {
			backing = append(backing, pl.nodes[n].id)
		}
		for _, n := range pl.fallbacks(p, list) {
			backing = append(backing, pl.nodes[n].id)
		}
		ext[p] = backing[start:len(backing):len(backing)]
		primaries[p] = len(list)
	}
	return ext, primaries
}

func newPlacer(cfg Config, members []Member) *placer {
	pl := &placer{q: cfg.Partitions, shift: uint(64 - log2(cfg.Partitions))}

	poolOf := map[string]int{} // DC -> pool; "" key for the single pool
	if cfg.ReplicasPerDC == nil {
		pl.pools = []pool{{count: cfg.Replicas}}
	} else {
		for _, dc := range sortedKeys(cfg.ReplicasPerDC) {
			poolOf[dc] = len(pl.pools)
			pl.pools = append(pl.pools, pool{count: cfg.ReplicasPerDC[dc]})
		}
	}
	rackIndex := map[string]int{}
	for _, m := range members {
		if !m.State.ownsPartitions() {
			continue
		}
		pi := 0
		if cfg.ReplicasPerDC != nil {
			pi = poolOf[m.DC]
		}
		rk, ok := rackIndex[m.rackKey()]
		if !ok {
			rk = len(rackIndex)
			rackIndex[m.rackKey()] = rk
		}
		pl.pools[pi].nodes = append(pl.pools[pi].nodes, len(pl.nodes))
		pl.nodes = append(pl.nodes, pnode{id: m.ID, seed: m.tokenSeed(), weight: m.Weight, rack: rk, pool: pi})
	}
	pl.racks = len(rackIndex)
	for i := range pl.pools {
		pl.pools[i].count = min(pl.pools[i].count, len(pl.pools[i].nodes))
	}

	n := len(pl.nodes)
	pl.target = make([]float64, n)
	pl.hi = make([]int, n)
	pl.load = make([]int, n)
	pl.seen = make([]int32, n)
	pl.chosen = make([]bool, n)
	pl.rackUsed = make([]int32, pl.racks)
	pl.tokens = make([][]uint64, n)
	pl.inPool = make([]int, len(pl.pools))

	for _, po := range pl.pools {
		fairShares(pl.target, pl.nodes, po.nodes, float64(po.count*pl.q), float64(pl.q))
	}
	for i, t := range pl.target {
		pl.hi[i] = int(math.Ceil(t * (1 + balanceSlack)))
	}

	for i, nd := range pl.nodes {
		for v := range nd.weight * cfg.VNodesPerWeight {
			tok := Token([]byte(nd.seed + "/" + strconv.Itoa(v)))
			pl.vnodes = append(pl.vnodes, vnode{token: tok, node: int32(i)})
			pl.tokens[i] = append(pl.tokens[i], tok)
		}
		slices.Sort(pl.tokens[i])
	}
	slices.SortFunc(pl.vnodes, func(a, b vnode) int {
		return cmp.Or(cmp.Compare(a.token, b.token), cmp.Compare(a.node, b.node))
	})
	return pl
}

// fairShares sets target[i] for the nodes of one pool to their weighted
// share of slots, except that no node can hold a partition twice: a node
// whose share exceeds perNode gets perNode and the rest is shared among the
// others (water-filling).
func fairShares(target []float64, nodes []pnode, members []int, slots, perNode float64) {
	open := slices.Clone(members)
	for len(open) > 0 {
		w := 0
		for _, i := range open {
			w += nodes[i].weight
		}
		capped := false
		open = slices.DeleteFunc(open, func(i int) bool {
			if float64(nodes[i].weight)/float64(w)*slots > perNode {
				target[i] = perNode
				slots -= perNode
				capped = true
				return true
			}
			return false
		})
		if !capped {
			for _, i := range open {
				target[i] = float64(nodes[i].weight) / float64(w) * slots
			}
			return
		}
	}
}

// choose picks the preference list of partition p and charges it to the
// nodes' loads. Candidates come in clockwise order from the partition's
// start token; the passes below relax one preference at a time:
//
//  1. a rack not yet used, on a node under its cap;
//  2. a rack not yet used, on any node (racks matter more than balance);
//  3. any node under its cap (fewer racks than replicas);
//  4. any node.
//
// Pass 1 runs during the walk, so the walk usually stops after a few steps.
func (pl *placer) choose(p int) []int {
	pl.stamp++
	clear(pl.inPool)
	pl.order = pl.order[:0]
	need := 0
	for _, po := range pl.pools {
		need += po.count
	}
	var picked []int
	pick := func(n int) {
		pl.chosen[n] = true
		pl.rackUsed[pl.nodes[n].rack] = pl.stamp
		pl.inPool[pl.nodes[n].pool]++
		picked = append(picked, n)
		need--
	}
	open := func(n int) bool {
		return !pl.chosen[n] && pl.inPool[pl.nodes[n].pool] < pl.pools[pl.nodes[n].pool].count
	}
	newRack := func(n int) bool { return pl.rackUsed[pl.nodes[n].rack] != pl.stamp }
	underCap := func(n int) bool { return pl.load[n] < pl.hi[n] }

	start := uint64(p) << pl.shift
	if pl.shift == 64 {
		start = 0
	}
	i := pl.firstVNode(start)
	for step := 0; step < len(pl.vnodes) && need > 0 && len(pl.order) < len(pl.nodes); step++ {
		n := int(pl.vnodes[(i+step)%len(pl.vnodes)].node)
		if pl.seen[n] == pl.stamp {
			continue
		}
		pl.seen[n] = pl.stamp
		pl.order = append(pl.order, n)
		if open(n) && newRack(n) && underCap(n) {
			pick(n)
		}
	}
	for _, pass := range []func(int) bool{
		newRack,
		func(n int) bool { return underCap(n) },
		func(int) bool { return true },
	} {
		for _, n := range pl.order {
			if need == 0 {
				break
			}
			if open(n) && pass(n) {
				pick(n)
			}
		}
	}

	// Report in walk order so the primary is the first node clockwise.
	picked = picked[:0]
	for _, n := range pl.order {
		if pl.chosen[n] {
			pl.chosen[n] = false
			pl.load[n]++
			picked = append(picked, n)
		}
	}
	return picked
}

// firstVNode returns the index of the first vnode at or clockwise after
// token (len(pl.vnodes) wraps to 0 as the walks index modulo the length).
func (pl *placer) firstVNode(token uint64) int {
	i, _ := slices.BinarySearchFunc(pl.vnodes, token, func(v vnode, t uint64) int { return cmp.Compare(v.token, t) })
	return i
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
