package ring

import (
	"cmp"
	"math"
	"slices"
)

// balanceReplicas is the balancing pass that follows the capped walk.
//
// The walk's caps are soft: a node whose vnodes cover little of the ring
// ends up short of its share, a heavy node that must be in most lists is
// crowded out by the distinct-node rule, and the last partitions walked may
// find every under-cap node taken and fall back to one over its cap. With
// Q=1024 even the rounding of ~50 replica slots of a small node is several
// percent. So, deterministically, the node furthest outside balanceSlack of
// its share moves one replica slot at a time: an underloaded node takes a
// slot from a holder of a partition it is not in, an overloaded node hands
// one to a node not in the list. Each move is the one nearest to what plain
// consistent hashing would do (see bestTake and bestGive), which keeps the
// result close to the walk's and so keeps a membership change from moving
// more than its share.
//
// A move never reduces the number of distinct racks in a list, never moves
// a replica out of its DC, and never leaves the giver with a lower
// load/share ratio than the taker, so the sum over nodes of load^2/share
// falls with every move and the loop ends.
func (pl *placer) balanceReplicas(lists [][]int) {
	lo := make([]int, len(pl.nodes))
	hi := make([]int, len(pl.nodes))
	for i, t := range pl.target {
		lo[i] = int(math.Floor(t * (1 - balanceSlack)))
		hi[i] = int(math.Ceil(t * (1 + balanceSlack)))
	}
	ratio := func(n, delta int) float64 { return float64(pl.load[n]+delta) / pl.target[n] }

	for range len(lists) * len(pl.nodes) { // a bound, never reached
		worst, gap, over := -1, 0.0, false
		for n := range pl.nodes {
			if pl.load[n] > hi[n] && ratio(n, 0)-1 > gap {
				worst, gap, over = n, ratio(n, 0)-1, true
			}
			if pl.load[n] < lo[n] && 1-ratio(n, 0) > gap {
				worst, gap, over = n, 1-ratio(n, 0), false
			}
		}
		if worst < 0 {
			return
		}
		var p, k, taker int
		if over {
			p, k, taker = pl.bestGive(lists, worst, ratio)
		} else {
			p, k = pl.bestTake(lists, worst, ratio)
			taker = worst
		}
		if p < 0 {
			// Nothing legal left for this node; stop trying it.
			lo[worst], hi[worst] = 0, len(lists)
			continue
		}
		pl.load[lists[p][k]]--
		pl.load[taker]++
		lists[p][k] = taker
		pl.sortByWalk(p, lists[p])
	}
}

// bestGive finds where overloaded node v should hand a slot to another
// node: partition p, v's index k there, and the taker u, or p = -1 if there
// is no legal move. It prefers takers below their share, then the taker
// that the walk from p's start reaches first.
func (pl *placer) bestGive(lists [][]int, v int, ratio func(n, delta int) float64) (bestP, bestK, bestU int) {
	bestP, bestK, bestU = -1, -1, -1
	var bestDist uint64
	bestUnder := false
	ceiling := ratio(v, -1)
	for p, list := range lists {
		k := slices.Index(list, v)
		if k < 0 {
			continue
		}
		for _, u := range pl.pools[pl.nodes[v].pool].nodes {
			if ratio(u, 1) > ceiling || slices.Contains(list, u) || !pl.keepsRacks(list, k, u) {
				continue
			}
			under := float64(pl.load[u]) < pl.target[u]
			d := pl.walkDistance(p, u)
			if bestP < 0 || (under && !bestUnder) || (under == bestUnder && d < bestDist) {
				bestP, bestK, bestU, bestDist, bestUnder = p, k, u, d, under
			}
		}
	}
	return bestP, bestK, bestU
}

// bestTake finds the partition p and list index k where underloaded node u
// should replace the holder, or p = -1 if there is no legal move. It
// prefers moves that keep the list's primary, then the partition whose
// start is nearest behind one of u's vnodes (the one plain consistent
// hashing would most nearly have given u); within the list, see betterDonor.
func (pl *placer) bestTake(lists [][]int, u int, ratio func(n, delta int) float64) (bestP, bestK int) {
	bestP, bestK = -1, -1
	var bestDist uint64
	bestMovesPrimary := true
	floor := ratio(u, 1)
	for p, list := range lists {
		if slices.Contains(list, u) {
			continue
		}
		k := -1
		for i, v := range list {
			if pl.nodes[v].pool != pl.nodes[u].pool || ratio(v, -1) < floor {
				continue
			}
			if !pl.keepsRacks(list, i, u) {
				continue
			}
			if k < 0 || pl.betterDonor(p, v, list[k]) {
				k = i
			}
		}
		if k < 0 {
			continue
		}
		// A new primary moves coordination as well as data.
		d := pl.walkDistance(p, u)
		movesPrimary := k == 0 || d < pl.walkDistance(p, list[0])
		if bestP < 0 || (!movesPrimary && bestMovesPrimary) || (movesPrimary == bestMovesPrimary && d < bestDist) {
			bestP, bestK, bestDist, bestMovesPrimary = p, k, d, movesPrimary
		}
	}
	return bestP, bestK
}

// keepsRacks reports whether putting u in place of list[i] keeps at least as
// many distinct racks in the list.
func (pl *placer) keepsRacks(list []int, i, u int) bool {
	ru, rv := pl.nodes[u].rack, pl.nodes[list[i]].rack
	if ru == rv {
		return true
	}
	uUsed, vShared := false, false
	for j, w := range list {
		if j == i {
			continue
		}
		uUsed = uUsed || pl.nodes[w].rack == ru
		vShared = vShared || pl.nodes[w].rack == rv
	}
	// Losing rv only matters if no one else is on it; gaining ru only helps
	// if no one else is on it.
	return !uUsed || vShared
}

// walkDistance is how far clockwise from partition p's start the walk must
// go to reach node n's first vnode.
func (pl *placer) walkDistance(p, n int) uint64 {
	if pl.dist != nil {
		return pl.dist[p*len(pl.nodes)+n]
	}
	return pl.computeDistance(p, n)
}

func (pl *placer) computeDistance(p, n int) uint64 {
	start := uint64(p) << pl.shift
	toks := pl.tokens[n]
	i, _ := slices.BinarySearch(toks, start)
	if i == len(toks) {
		i = 0 // wrap around
	}
	return toks[i] - start
}

// maxDistTable bounds the Q*n table of walk distances (8 bytes each). The
// balancing passes look distances up millions of times, so a table pays
// for itself; beyond this size they are computed on demand instead.
const maxDistTable = 1 << 22

// tabulateDistances fills pl.dist when it fits, one merge of each node's
// sorted tokens with the ascending partition starts.
func (pl *placer) tabulateDistances() {
	n := len(pl.nodes)
	if n == 0 || pl.q*n > maxDistTable {
		return
	}
	pl.dist = make([]uint64, pl.q*n)
	for node, toks := range pl.tokens {
		i := 0
		for p := range pl.q {
			start := uint64(p) << pl.shift
			for i < len(toks) && toks[i] < start {
				i++
			}
			next := toks[0] // wrap around
			if i < len(toks) {
				next = toks[i]
			}
			pl.dist[p*n+node] = next - start
		}
	}
}

// sortByWalk orders a list as the clockwise walk from p's start meets its
// nodes, so the primary is always the nearest member.
func (pl *placer) sortByWalk(p int, list []int) {
	slices.SortFunc(list, func(a, b int) int {
		return cmp.Or(cmp.Compare(pl.walkDistance(p, a), pl.walkDistance(p, b)), cmp.Compare(a, b))
	})
}

// betterDonor reports whether v should give up its slot in partition p
// rather than w: a node above its share before one that is not, then the
// node the walk reaches last, the one consistent hashing least wanted there.
func (pl *placer) betterDonor(p, v, w int) bool {
	vOver, wOver := float64(pl.load[v]) > pl.target[v], float64(pl.load[w]) > pl.target[w]
	if vOver != wOver {
		return vOver
	}
	return pl.walkDistance(p, v) > pl.walkDistance(p, w)
}
