package membership

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/ringkv/ringkv/ring"
)

// Record is one node's entry in the ring state table. The node itself
// changes its record, bumping Version each time; everyone else keeps the
// highest version they have seen. The one exception is an operator's
// decommission or removal (Membership.SetMemberState), which any node may
// write: the states it sets, leaving and left, are never undone.
type Record struct {
	ring.Member
	// Advertised service addresses and the gossip address (host:port).
	PeerAddr, RespAddr, HTTPAddr, GossipAddr string
	// Version orders the owner's changes; higher wins.
	Version uint64
}

// MemberStatus is a record plus the failure detector's current verdict.
type MemberStatus struct {
	Record
	Alive bool
}

// wireRecord is a Record as it is gossiped and persisted: JSON with the
// state spelled out, readable in ring.json.
type wireRecord struct {
	ID       string `json:"id"`
	Weight   int    `json:"weight,omitempty"`
	DC       string `json:"dc,omitempty"`
	Rack     string `json:"rack,omitempty"`
	State    string `json:"state"`
	PeerAddr string `json:"peer,omitempty"`
	RespAddr string `json:"resp,omitempty"`
	HTTPAddr string `json:"http,omitempty"`
	Gossip   string `json:"gossip"`
	Version  uint64 `json:"version"`
	// Tokens is the ID whose tokens the node takes (a replacement).
	Tokens string `json:"tokens,omitempty"`
}

func toWire(r Record) wireRecord {
	return wireRecord{
		ID: r.ID, Weight: r.Weight, DC: r.DC, Rack: r.Rack, State: r.State.String(),
		PeerAddr: r.PeerAddr, RespAddr: r.RespAddr, HTTPAddr: r.HTTPAddr,
		Gossip: r.GossipAddr, Version: r.Version, Tokens: r.Tokens,
	}
}

func fromWire(w wireRecord) (Record, error) {
	st, err := ring.ParseState(w.State)
	if err != nil {
		return Record{}, err
	}
	return Record{
		Member:   ring.Member{ID: w.ID, Weight: w.Weight, DC: w.DC, Rack: w.Rack, State: st, Tokens: w.Tokens},
		PeerAddr: w.PeerAddr, RespAddr: w.RespAddr, HTTPAddr: w.HTTPAddr,
		GossipAddr: w.Gossip, Version: w.Version,
	}, nil
}

// metaMsg is what a node puts in its memberlist metadata.
type metaMsg struct {
	Cfg string     `json:"cfg"`
	Rec wireRecord `json:"rec"`
	// Repl is set in a gossiped replication change (and Rec is empty).
	Repl *wireRepl `json:"repl,omitempty"`
}

// stateMsg is the push/pull payload: the whole table.
type stateMsg struct {
	Format  int          `json:"format"`
	Cfg     string       `json:"cfg"`
	Records []wireRecord `json:"records"`
	Repl    *wireRepl    `json:"repl,omitempty"`
}

const stateFormat = 1

// ringKey renders a ring config with defaults applied, so two configs that
// build the same ring compare equal.
func ringKey(c ring.Config) string {
	q, v, n := c.Partitions, c.VNodesPerWeight, c.Replicas
	if q == 0 {
		q = ring.DefaultPartitions
	}
	if v == 0 {
		v = ring.DefaultVNodesPerWeight
	}
	var dcs []string
	if len(c.ReplicasPerDC) > 0 {
		sum := 0
		for _, dc := range slices.Sorted(maps.Keys(c.ReplicasPerDC)) {
			sum += c.ReplicasPerDC[dc]
			dcs = append(dcs, strconv.Quote(dc)+"="+strconv.Itoa(c.ReplicasPerDC[dc]))
		}
		if n == 0 {
			n = sum
		}
	} else if n == 0 {
		n = ring.DefaultReplicas
	}
	return fmt.Sprintf("partitions=%d replicas=%d vnodes=%d per_dc=[%s]", q, n, v, strings.Join(dcs, ","))
}

// fingerprint is a short hash of ringKey, cheap to carry in metadata.
func fingerprint(c ring.Config) string {
	h := fnv.New64a()
	h.Write([]byte(ringKey(c)))
	return strconv.FormatUint(h.Sum64(), 16)
}

// checkRecord rejects records that would make ring.New fail or that cannot
// be addressed.
func checkRecord(r Record, rc ring.Config) error {
	switch {
	case r.ID == "" || len(r.ID) > maxIDLen:
		return fmt.Errorf("bad node ID %q", r.ID)
	case r.Weight < 0 || r.Weight > ring.MaxWeight:
		return fmt.Errorf("node %q: bad weight %d", r.ID, r.Weight)
	case r.State > ring.StateLeft:
		return fmt.Errorf("node %q: bad state %d", r.ID, r.State)
	case r.GossipAddr == "":
		return fmt.Errorf("node %q: no gossip address", r.ID)
	}
	if len(rc.ReplicasPerDC) > 0 {
		if _, ok := rc.ReplicasPerDC[r.DC]; !ok {
			return fmt.Errorf("node %q: DC %q is not in the ring's replicas per DC", r.ID, r.DC)
		}
	}
	return nil
}

// mergeResult says what merging one record did to the table.
type mergeResult int

const (
	mergeIgnored   mergeResult = iota // not newer
	mergeApplied                      // table changed
	mergeConflict                     // ID collision: ignored, worth a log line
	mergeSelf                         // a version of our own record not older than ours: re-assert
	mergeSelfState                    // our own record moved to leaving or left by an operator: adopt
)

// table is the record table and the liveness facts the merge rules need.
// It is not safe for concurrent use; Membership guards it.
type table struct {
	self string
	recs map[string]Record
	// live maps the IDs memberlist currently reports alive to the gossip
	// address it sees them at.
	live map[string]string
}

// merge applies the last-writer-wins rule for one incoming record.
func (t *table) merge(r Record) mergeResult {
	if r.ID == t.self {
		me := t.recs[t.self]
		if r.State > me.State && r.State >= ring.StateLeaving {
			// An operator decommissioned or removed us (the record was
			// written by another node, perhaps while we were down, perhaps
			// at an older address): the state only moves forward.
			return mergeSelfState
		}
		if r.GossipAddr != me.GossipAddr {
			if r.Version < me.Version {
				return mergeIgnored // our own record from before a move
			}
			return mergeConflict // someone else claims our ID
		}
		if r.Version >= me.Version && r != me {
			return mergeSelf
		}
		return mergeIgnored
	}
	old, known := t.recs[r.ID]
	if known && r.Version <= old.Version && r.State >= ring.StateLeaving && r.State > old.State {
		// An operator's decommission or removal written on a version of
		// the record that the node itself has since bumped (a restart, an
		// address change): both are at the same version, or ours is
		// newer. The state only moves forward, so it is taken whatever
		// the version; the rest of our record stays. Were it ignored, the
		// nodes that saw the operator's record first would see the node
		// leaving and the others not, for good if the node is down.
		old.State = r.State
		t.recs[r.ID] = old
		return mergeApplied
	}
	if known && r.Version <= old.Version {
		return mergeIgnored
	}
	if known && old.State >= ring.StateLeaving && r.State < old.State {
		// Leaving and left are never undone: a removed node restarted from
		// an old data directory asserts its old state with a newer version,
		// and must not take its partitions back.
		return mergeIgnored
	}
	if addr, alive := t.live[r.ID]; alive && addr != r.GossipAddr {
		// The live node with this ID is elsewhere: this record is from
		// an impostor (or stale, from before a move).
		return mergeConflict
	}
	t.recs[r.ID] = r
	return mergeApplied
}

// sortedRecords returns the records sorted by ID.
func sortedRecords(recs map[string]Record) []Record {
	out := slices.Collect(maps.Values(recs))
	slices.SortFunc(out, func(a, b Record) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// ringMembers returns the members the ring is built from: every record, in
// every state. The ring itself places only Normal and Leaving members, so a
// Joining member is known but owns nothing and a Left member is remembered
// but owns nothing. A DC in ReplicasPerDC with no members yet (a multi-DC
// cluster starting one node at a time) gets no replicas until it has one.
func ringMembers(recs map[string]Record) []ring.Member {
	ms := make([]ring.Member, 0, len(recs))
	for _, r := range sortedRecords(recs) {
		ms = append(ms, r.Member)
	}
	return ms
}

// ringSignature is a string that changes exactly when the ring built from
// recs would change.
func ringSignature(recs map[string]Record) string {
	var b strings.Builder
	for _, r := range sortedRecords(recs) {
		fmt.Fprintf(&b, "%q %d %q %q %d %q\n", r.ID, r.Weight, r.DC, r.Rack, r.State, r.Tokens)
	}
	return b.String()
}

func encodeMeta(cfg string, r Record) []byte {
	b, _ := json.Marshal(metaMsg{Cfg: cfg, Rec: toWire(r)})
	return b
}

func decodeMeta(b []byte) (string, Record, error) {
	var m metaMsg
	if err := json.Unmarshal(b, &m); err != nil {
		return "", Record{}, fmt.Errorf("bad node metadata: %w", err)
	}
	r, err := fromWire(m.Rec)
	return m.Cfg, r, err
}
