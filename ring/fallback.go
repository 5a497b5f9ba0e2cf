package ring

// fallbacks returns the nodes that stand in for partition p's primaries
// (list) while they are down: walking clockwise from the partition's first
// token, past the primaries, up to as many distinct nodes of each pool (the
// whole cluster, or one DC when ReplicasPerDC is set) as the pool holds
// primaries of p, so that every primary can be replaced at once. Nodes on
// racks that neither the primaries nor earlier fallbacks use come first, in
// walk order; then the rest of the walk, in walk order. Balance plays no
// part: a fallback holds data only while a primary is down.
func (pl *placer) fallbacks(p int, list []int) []int {
	pl.stamp++
	clear(pl.inPool)
	for _, n := range list {
		pl.seen[n] = pl.stamp
		pl.rackUsed[pl.nodes[n].rack] = pl.stamp
		pl.inPool[pl.nodes[n].pool]++ // the quota: one fallback per primary
	}
	need := len(list)
	var picked []int
	pick := func(n int) {
		pl.chosen[n] = true
		pl.rackUsed[pl.nodes[n].rack] = pl.stamp
		pl.inPool[pl.nodes[n].pool]--
		picked = append(picked, n)
		need--
	}
	open := func(n int) bool { return !pl.chosen[n] && pl.inPool[pl.nodes[n].pool] > 0 }
	newRack := func(n int) bool { return pl.rackUsed[pl.nodes[n].rack] != pl.stamp }

	pl.order = pl.order[:0]
	start := uint64(p) << pl.shift
	if pl.shift == 64 {
		start = 0
	}
	i := pl.firstVNode(start)
	for step := 0; step < len(pl.vnodes) && need > 0 && len(pl.order)+len(list) < len(pl.nodes); step++ {
		n := int(pl.vnodes[(i+step)%len(pl.vnodes)].node)
		if pl.seen[n] == pl.stamp {
			continue
		}
		pl.seen[n] = pl.stamp
		pl.order = append(pl.order, n)
		if open(n) && newRack(n) {
			pick(n)
		}
	}
	for _, n := range pl.order {
		if need == 0 {
			break
		}
		if open(n) {
			pick(n)
		}
	}
	for _, n := range picked {
		pl.chosen[n] = false
	}
	return picked
}
