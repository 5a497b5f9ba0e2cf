package ring

import (
	"cmp"
	"maps"
	"slices"
)

// Ring maps tokens to partitions and partitions to preference lists. It is
// immutable once built, so it is safe for concurrent use; a membership
// change builds a new Ring.
type Ring struct {
	cfg     Config
	shift   uint     // 64 - log2(Q): a token's partition is token >> shift
	members []Member // all members, sorted by ID
	index   map[string]int
	prefs   [][]string // per partition, primary first
	ext     [][]string // per partition, prefs[p] followed by its fallbacks
	// selves are per partition the targets when every primary is healthy
	// (each serving as itself), shared by Targets' callers.
	selves [][]Target
	dcs    []string // the DCs ReplicasPerDC gives replicas, sorted
	future future   // the ring once joining members are normal (pending.go)
}

// New builds the ring for cfg and members. The result depends only on the
// config and the set of members, not on their order, so every node that sees
// the same membership computes the same ring.
//
// Only Normal and Leaving members own partitions. If fewer than N of them
// are eligible (or fewer than a DC's count in that DC), preference lists are
// simply shorter; that is a degraded cluster, not an invalid one.
func New(cfg Config, members []Member) (*Ring, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(members); err != nil {
		return nil, err
	}
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	for i := range ms {
		ms[i].Weight = ms[i].weight()
	}
	r := &Ring{
		cfg:     cfg,
		shift:   uint(64 - log2(cfg.Partitions)),
		members: ms,
		index:   make(map[string]int, len(ms)),
	}
	for i, m := range ms {
		r.index[m.ID] = i
	}
	for _, dc := range slices.Sorted(maps.Keys(cfg.ReplicasPerDC)) {
		if cfg.ReplicasPerDC[dc] > 0 {
			r.dcs = append(r.dcs, dc)
		}
	}
	ext, primaries := place(cfg, ms)
	r.ext = ext
	r.prefs = make([][]string, len(ext))
	r.selves = make([][]Target, len(ext))
	total := 0
	for _, n := range primaries {
		total += n
	}
	all := make([]Target, 0, total) // one allocation for every partition's selves
	for p, list := range ext {
		r.prefs[p] = list[:primaries[p]:primaries[p]]
		from := len(all)
		for _, node := range r.prefs[p] {
			all = append(all, Target{Node: node})
		}
		r.selves[p] = all[from:len(all):len(all)]
	}
	return r, nil
}

func log2(q int) int {
	n := 0
	for q > 1 {
		q >>= 1
		n++
	}
	return n
}

// Partition returns the partition that holds token: its top log2(Q) bits.
func (r *Ring) Partition(token uint64) int {
	if r.shift == 64 {
		return 0
	}
	return int(token >> r.shift)
}

// PartitionOfKey returns the partition that holds key.
func (r *Ring) PartitionOfKey(key []byte) int {
	return r.Partition(Token(key))
}

// Preference returns the IDs of the nodes that replicate partition, primary
// first, each node at most once. It has N entries unless too few members are
// eligible. The slice is shared with the ring: callers must not modify it.
func (r *Ring) Preference(partition int) []string {
	return r.prefs[partition]
}

// PreferenceForKey returns the preference list of key's partition.
func (r *Ring) PreferenceForKey(key []byte) []string {
	return r.prefs[r.PartitionOfKey(key)]
}

// Extended returns partition's extended preference list: its primaries
// (Preference) followed by its fallbacks, the nodes that stand in for
// primaries that are down (sloppy quorum; see Targets). Fallbacks are
// distinct physical nodes, never primaries, found by walking the ring on
// past the primaries, as many per DC as the DC holds primaries (fewer when
// it has fewer other nodes), on racks the list does not use yet first. The
// slice is shared with the ring: callers must not modify it.
func (r *Ring) Extended(partition int) []string {
	return r.ext[partition]
}

// ExtendedForKey returns the extended preference list of key's partition.
func (r *Ring) ExtendedForKey(key []byte) []string {
	return r.ext[r.PartitionOfKey(key)]
}

// PartitionRange returns the tokens of partition p as the inclusive range
// [first, last]. It is inclusive because the last partition ends at 2^64,
// which a uint64 cannot hold; tokens t with first <= t && t <= last are
// exactly those of p.
func (r *Ring) PartitionRange(p int) (first, last uint64) {
	if r.shift == 64 {
		return 0, ^uint64(0)
	}
	first = uint64(p) << r.shift
	return first, first + (1<<r.shift - 1)
}

// Members returns a copy of all members, sorted by ID, in every state. A
// zero Weight has been replaced by the default 1.
func (r *Ring) Members() []Member {
	return slices.Clone(r.members)
}

// Member returns the member with the given ID.
func (r *Ring) Member(id string) (Member, bool) {
	i, ok := r.index[id]
	if !ok {
		return Member{}, false
	}
	return r.members[i], true
}

// Config returns the ring's config with defaults filled in.
func (r *Ring) Config() Config {
	cfg := r.cfg
	cfg.ReplicasPerDC = maps.Clone(cfg.ReplicasPerDC)
	if cfg.Next != nil {
		next := cfg.Next.clone()
		cfg.Next = &next
	}
	return cfg
}

// DC returns the datacenter of member id ("" for an unknown member or one
// without a DC).
func (r *Ring) DC(id string) string {
	if i, ok := r.index[id]; ok {
		return r.members[i].DC
	}
	return ""
}

// ReplicasIn returns how many replicas every key is meant to have in dc
// (its ReplicasPerDC count, 0 for an unlisted DC), and whether the ring is
// configured per DC at all; without ReplicasPerDC it returns 0, false.
func (r *Ring) ReplicasIn(dc string) (n int, perDC bool) {
	if r.cfg.ReplicasPerDC == nil {
		return 0, false
	}
	return r.cfg.ReplicasPerDC[dc], true
}

// DCs returns the datacenters ReplicasPerDC gives at least one replica,
// sorted (nil without ReplicasPerDC). A DC with no member yet is listed:
// counts are what keys are meant to have, not what is placed. The slice is
// shared with the ring: callers must not modify it.
func (r *Ring) DCs() []string { return r.dcs }

// Partitions returns Q.
func (r *Ring) Partitions() int { return r.cfg.Partitions }

// Replicas returns N, the replicas every key is meant to have (the sum of
// ReplicasPerDC when that is set), however many are placed now.
func (r *Ring) Replicas() int { return r.cfg.Replicas }

// Placed returns the length of the shortest preference list: the number of
// replicas every key has now. It is below Replicas while too few members
// are eligible, for instance while a datacenter of ReplicasPerDC has no
// members yet.
func (r *Ring) Placed() int {
	if len(r.prefs) == 0 {
		return 0
	}
	placed := len(r.prefs[0])
	for _, p := range r.prefs[1:] {
		placed = min(placed, len(p))
	}
	return placed
}

// Ownership returns, for each node that is primary for at least one
// partition, the partitions it is primary for, in ascending order.
func (r *Ring) Ownership() map[string][]int {
	own := map[string][]int{}
	for p, pref := range r.prefs {
		if len(pref) > 0 {
			own[pref[0]] = append(own[pref[0]], p)
		}
	}
	return own
}

// ReplicaCount returns, for each node that holds any partition, how many
// partitions it holds in any position of their preference lists. This is
// the measure of how much data a node stores.
func (r *Ring) ReplicaCount() map[string]int {
	count := map[string]int{}
	for _, pref := range r.prefs {
		for _, id := range pref {
			count[id]++
		}
	}
	return count
}
