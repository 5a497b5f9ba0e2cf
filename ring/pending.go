package ring

import (
	"slices"
	"sync"
)

// future is the ring as it will be once every joining member is normal
// and every leaving member has left, built on first use (a ring with no
// member joining or leaving is its own future).
type future struct {
	once    sync.Once
	ring    *Ring
	pending [][]string // per partition: future primaries not primaries now
	err     error
}

// Future returns the ring the members will form once every Joining member
// has become Normal and every Leaving member Left: the same config and
// members, with the joining ones placed and the leaving ones not. It is
// built once per ring, on first use; a ring with no member joining or
// leaving returns itself.
func (r *Ring) Future() (*Ring, error) {
	r.future.once.Do(r.buildFuture)
	return r.future.ring, r.future.err
}

func (r *Ring) buildFuture() {
	f := &r.future
	ms := slices.Clone(r.members)
	changing := false
	for i := range ms {
		switch ms[i].State {
		case StateJoining:
			ms[i].State = StateNormal
			changing = true
		case StateLeaving:
			ms[i].State = StateLeft
			changing = true
		}
	}
	fcfg := r.cfg
	if r.cfg.Next != nil {
		fcfg = r.cfg.WithReplication(*r.cfg.Next)
		changing = true
	}
	if !changing {
		f.ring = r
		return
	}
	fr, err := New(fcfg, ms)
	if err != nil {
		f.err = err
		return
	}
	f.ring = fr
	f.pending = make([][]string, len(r.prefs))
	for p, pref := range fr.prefs {
		for _, id := range pref {
			if !slices.Contains(r.prefs[p], id) {
				f.pending[p] = append(f.pending[p], id)
			}
		}
	}
}

// Pending returns partition's pending owners: the nodes that will
// replicate it once the joining members are normal and the leaving ones
// left, but do not now (joining members, and the next owners of a leaving
// member's partitions). Writes go to them too, so that nothing written while
// they stream the partition is missed, but they are not counted toward a
// write's quorum and not read from. Nil when no member is joining or leaving. The
// slice is shared with the ring: callers must not modify it.
func (r *Ring) Pending(partition int) []string {
	r.future.once.Do(r.buildFuture)
	if r.future.pending == nil {
		return nil
	}
	return r.future.pending[partition]
}

// Gained returns the partitions node will replicate in the Future ring and
// does not replicate now, ascending.
func (r *Ring) Gained(node string) []int {
	r.future.once.Do(r.buildFuture)
	var out []int
	for p, pend := range r.future.pending {
		if slices.Contains(pend, node) {
			out = append(out, p)
		}
	}
	return out
}
