package ring

// Target is one node a request goes to under sloppy quorum: a primary, or
// a fallback standing in for a primary that is down.
type Target struct {
	Node string
	// For is the primary Node stands in for; "" when Node is a primary
	// serving as itself.
	For string
}

// Targets returns where a request for partition goes under sloppy quorum:
// the first N healthy nodes of its extended list, one per primary, in
// preference order. A healthy primary serves as itself; a primary that is
// not healthy is replaced by the first healthy fallback not yet taken (from
// the primary's DC when ReplicasPerDC is set). A primary for which no
// healthy fallback is left stays its own target: the request to it may
// still succeed (the failure detector can be wrong), and fails as it would
// without sloppy quorum otherwise. The result depends only on the ring and
// on healthy, so every node that agrees on liveness picks the same nodes.
// The result may be shared with other callers: it must not be modified.
func (r *Ring) Targets(partition int, healthy func(node string) bool) []Target {
	prefs := r.prefs[partition]
	firstDown := 0 // the primaries before it are healthy
	for firstDown < len(prefs) && healthy(prefs[firstDown]) {
		firstDown++
	}
	if firstDown == len(prefs) {
		// Every primary serves as itself (the common case): the ring's own
		// slice, without an allocation per request.
		return r.selves[partition]
	}
	fallbacks := r.ext[partition][len(prefs):]
	out := make([]Target, len(prefs))
	var taken []bool // by fallback index; allocated on the first down primary
	for i, node := range prefs {
		out[i] = Target{Node: node}
		if i < firstDown || healthy(node) {
			continue
		}
		if taken == nil {
			taken = make([]bool, len(fallbacks))
		}
		if j := r.standIn(node, fallbacks, taken, healthy); j >= 0 {
			taken[j] = true
			out[i] = Target{Node: fallbacks[j], For: node}
		}
	}
	return out
}

// standIn returns the index of the first fallback that is healthy, not
// taken and may replace primary (same DC under ReplicasPerDC), or -1.
func (r *Ring) standIn(primary string, fallbacks []string, taken []bool, healthy func(string) bool) int {
	var dc string
	if r.cfg.ReplicasPerDC != nil {
		m, _ := r.Member(primary)
		dc = m.DC
	}
	for j, f := range fallbacks {
		if taken[j] || !healthy(f) {
			continue
		}
		if r.cfg.ReplicasPerDC != nil {
			if m, _ := r.Member(f); m.DC != dc {
				continue
			}
		}
		return j
	}
	return -1
}

// TargetsForKey returns Targets for key's partition.
func (r *Ring) TargetsForKey(key []byte, healthy func(node string) bool) []Target {
	return r.Targets(r.PartitionOfKey(key), healthy)
}
