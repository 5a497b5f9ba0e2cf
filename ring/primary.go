package ring

import "math"

// primarySlack is the band around its fair share that a node's primary
// count is brought into. It is wider than balanceSlack because primaries
// are a third as many as replica slots (so rounding weighs more) and
// because each swap is a role change that a membership change may undo;
// tighter bands measurably raise the number of primaries a join moves.
const primarySlack = 0.10

// balancePrimaries evens out how many partitions each node is primary for.
//
// The primary coordinates writes for its partition, so primary counts are
// the coordinator load. The replica-slot balancing leaves them to the walk,
// which with ~Q/n primaries per node is off by tens of percent. Moving the
// primary role inside an existing list changes no replica set, so it is
// free in data movement: a node that is primary too often hands the role to
// the least-loaded other member of one of its lists, and a node that is
// primary too rarely takes it from the busiest primary of a list it is
// already in. Each swap strictly lowers the sum over nodes of
// primaries^2/share, so the loop ends. Where a swap is needed, the list
// chosen is the one where the new primary is nearest on the walk, so the
// result stays close to plain consistent hashing.
func (pl *placer) balancePrimaries(lists [][]int) {
	total := 0.0
	for _, t := range pl.target {
		total += t
	}
	share := make([]float64, len(pl.nodes))
	lo := make([]int, len(pl.nodes))
	hi := make([]int, len(pl.nodes))
	prim := make([]int, len(pl.nodes))
	for n, t := range pl.target {
		share[n] = t / total * float64(pl.q)
		lo[n] = int(math.Floor(share[n] * (1 - primarySlack)))
		hi[n] = int(math.Ceil(share[n] * (1 + primarySlack)))
	}
	for _, list := range lists {
		if len(list) > 0 {
			prim[list[0]]++
		}
	}
	ratio := func(n, delta int) float64 { return float64(prim[n]+delta) / share[n] }
	// from may hand the role to to when that does not overshoot.
	fair := func(from, to int) bool { return ratio(from, -1) >= ratio(to, 1) }

	for range len(lists) * len(pl.nodes) { // a bound, never reached
		// The node furthest outside its band, by ratio.
		worst, worstGap, over := -1, 0.0, false
		for n := range pl.nodes {
			if prim[n] > hi[n] && ratio(n, 0)-1 > worstGap {
				worst, worstGap, over = n, ratio(n, 0)-1, true
			}
			if prim[n] < lo[n] && 1-ratio(n, 0) > worstGap {
				worst, worstGap, over = n, 1-ratio(n, 0), false
			}
		}
		if worst < 0 {
			return
		}
		bestP, bestK := -1, -1
		var bestDist uint64
		for p, list := range lists {
			if len(list) < 2 {
				continue
			}
			k := -1
			if over && list[0] == worst {
				for i := 1; i < len(list); i++ {
					if fair(worst, list[i]) && (k < 0 || ratio(list[i], 0) < ratio(list[k], 0)) {
						k = i
					}
				}
			} else if !over && list[0] != worst {
				for i := 1; i < len(list); i++ {
					if list[i] == worst && fair(list[0], worst) {
						k = i
					}
				}
			}
			if k < 0 {
				continue
			}
			d := pl.walkDistance(p, list[k])
			if bestP < 0 || d < bestDist {
				bestP, bestK, bestDist = p, k, d
			}
		}
		if bestP < 0 {
			// Nothing legal left for this node; stop trying it.
			lo[worst], hi[worst] = 0, len(lists)
			continue
		}
		list := lists[bestP]
		prim[list[0]]--
		prim[list[bestK]]++
		// Promote list[bestK]; the others keep their walk order.
		promoted := list[bestK]
		copy(list[1:bestK+1], list[:bestK])
		list[0] = promoted
	}
}
