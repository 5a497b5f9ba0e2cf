package main

import "time"

// dropInfo is what one old owner showed of its drop: the removal, once a
// change is over, of the partitions it no longer replicates.
type dropInfo struct {
	seen, done  time.Duration // offsets from the start of the steady load
	partitions  int
	keysRemoved int
	active      bool
}

// pollDrops reads every node's transfers and notes its drops: when one was
// first seen, and when the last one finished with none running.
func pollDrops(nodes []*node, drops map[string]*dropInfo, at time.Duration) {
	for _, n := range nodes {
		var ts transfersStatus
		if getJSON(n.http, "/v1/transfers", &ts) != nil {
			continue
		}
		d := drops[n.id]
		active, finished := false, false
		parts, removed := 0, 0
		for _, t := range ts.Transfers {
			if t.Kind != "drop" || t.Node != n.id {
				continue
			}
			if d == nil {
				d = &dropInfo{seen: at}
				drops[n.id] = d
			}
			parts += t.PartitionsTotal
			removed += t.KeysRemoved
			if t.State == "done" {
				finished = true
			} else {
				active = true
			}
		}
		if d == nil {
			continue
		}
		d.partitions, d.keysRemoved = parts, removed
		if finished && !active && (d.active || d.done == 0) {
			d.done = at
		}
		if active {
			d.done = 0
		}
		d.active = active
	}
}

// dropsDone reports whether every node has finished a drop and runs none.
func dropsDone(nodes []*node, drops map[string]*dropInfo) bool {
	for _, n := range nodes {
		if d := drops[n.id]; d == nil || d.done == 0 {
			return false
		}
	}
	return true
}
