package coordinator

import (
	"fmt"

	"github.com/ringkv/ringkv/ring"
)

// Datacenter levels.
//
// LOCAL_ONE, LOCAL_QUORUM and EACH_QUORUM count acknowledgements (or read
// answers) per datacenter, against the ring's ReplicasPerDC: LOCAL_* from
// the replicas of the local datacenter only, EACH_QUORUM a majority in
// every datacenter that holds replicas. The local datacenter is that of
// the node the client talked to: a node that is not a replica of the key
// forwards the write to a replica of its own datacenter when one is up,
// and carries its datacenter in the forwarded request, so that LOCAL
// always means the client's side. A target's datacenter is that of the
// node, so a fallback standing in for a local primary (fallbacks come from
// the primary's datacenter) counts toward LOCAL levels as it counts toward
// W. A write is still sent to every target in every datacenter at once;
// the level only says which acknowledgements it waits for, and a target
// that misses it gets a hint as always. On a ring without ReplicasPerDC
// LOCAL_ONE is ONE and LOCAL_QUORUM and EACH_QUORUM are QUORUM.

// isDCLevel reports whether level counts per datacenter.
func isDCLevel(level int) bool {
	return level == LocalOne || level == LocalQuorum || level == EachQuorum
}

// need is a resolved read or write level: count nodes in all, and for a
// datacenter level, dcs: how many of them from each datacenter named
// (count is then their sum).
type need struct {
	count int
	dcs   []dcNeed
}

// dcNeed is what a datacenter level asks of one datacenter: n of its
// targets, of the placed replicas the ring has there for the key.
type dcNeed struct {
	dc     string
	n      int
	placed int
}

// dcNeeds resolves a datacenter level on rg, which has ReplicasPerDC, for a
// request whose local datacenter is local, against the configured counts
// (placed is left 0). A LOCAL level in a datacenter meant to hold no
// replicas is refused with ErrBadLevel.
func dcNeeds(level int, rg *ring.Ring, local string) (need, error) {
	dcs := rg.DCs()
	if level != EachQuorum {
		if n, _ := rg.ReplicasIn(local); n == 0 {
			return need{}, fmt.Errorf("%w: %s counts the replicas of the local datacenter %q, which is meant to hold none (replicas per DC); send the request to a node of a datacenter with replicas, or use QUORUM or EACH_QUORUM",
				ErrBadLevel, FormatLevel(level), local)
		}
		dcs = []string{local}
	}
	var nd need
	for _, dc := range dcs {
		n, _ := rg.ReplicasIn(dc)
		k := n/2 + 1
		if level == LocalOne {
			k = 1
		}
		nd.dcs = append(nd.dcs, dcNeed{dc: dc, n: k})
		nd.count += k
	}
	return nd, nil
}

// resolveLevel turns a read or write level (def when Default, QUORUM when
// both are) into what a request on rt needs, datacenter levels counted for
// the local datacenter local. Levels count against the configured counts
// (N, or ReplicasPerDC for a datacenter level), never against the replicas
// placed: a level that needs more than the ring places for the key (in
// all, or in one datacenter) is refused with a QuorumError wrapping
// ErrTooFewReplicas.
func resolveLevel(op string, level, def int, rt route, local string) (need, error) {
	if level == Default {
		level = def
	}
	if level == Default {
		level = Quorum
	}
	if _, perDC := rt.rg.ReplicasIn(""); !isDCLevel(level) || !perDC {
		count, err := resolve(op, level, level, rt.n, len(rt.pref))
		return need{count: count}, err
	}
	nd, err := dcNeeds(level, rt.rg, local)
	if err != nil {
		return need{}, err
	}
	for i := range nd.dcs {
		d := &nd.dcs[i]
		for _, node := range rt.pref {
			if rt.rg.DC(node) == d.dc {
				d.placed++
			}
		}
		if d.n > d.placed {
			n, _ := rt.rg.ReplicasIn(d.dc)
			return need{}, &QuorumError{Op: op, Needed: d.n, Replicas: d.placed, N: n, DC: d.dc, Last: ErrTooFewReplicas}
		}
	}
	return nd, nil
}

// dcIndex returns the index in dcs of the need for datacenter dc, or -1.
func dcIndex(dcs []dcNeed, dc string) int {
	for i, d := range dcs {
		if d.dc == dc {
			return i
		}
	}
	return -1
}

// localDC is the datacenter of this node in rt's ring.
func (c *Coordinator) localDC(rt route) string { return rt.rg.DC(c.self) }

// targetsIn counts rt's targets in datacenter dc.
func (rt route) targetsIn(dc string) int {
	k := 0
	for _, tg := range rt.targets {
		if rt.rg.DC(tg.Node) == dc {
			k++
		}
	}
	return k
}

// primariesIn counts rt's primaries in datacenter dc.
func (rt route) primariesIn(dc string) int {
	k := 0
	for _, node := range rt.pref {
		if rt.rg.DC(node) == dc {
			k++
		}
	}
	return k
}

// forwardOrder is the order a node that is not a replica of the key tries
// its primaries in: those the failure detector says are up first, and
// among them, on a ring with ReplicasPerDC, those of the local datacenter
// local first (so a datacenter level is coordinated on the client's side
// of a cut between datacenters).
func (c *Coordinator) forwardOrder(rt route, local string) []string {
	_, perDC := rt.rg.ReplicasIn("")
	rank := func(node string) int {
		r := 0
		if !c.cluster.Alive(node) {
			r += 2
		}
		if perDC && rt.rg.DC(node) != local {
			r++
		}
		return r
	}
	order := make([]string, 0, len(rt.pref))
	for r := range 4 {
		for _, node := range rt.pref {
			if rank(node) == r {
				order = append(order, node)
			}
		}
	}
	return order
}
