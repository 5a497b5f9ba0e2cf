package antientropy

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/version"
)

// Tombstones are purged by this rule (see "Deletes" in docs/semantics.md):
// a scan of a partition notes its tombstones (keys whose every sibling is
// a delete) at time t; they are removed once every other replica of the
// partition has been verified against this one by an exchange that began
// after t (so each of them holds the tombstone, or something newer), and
// TombstoneGrace has passed since t. A tombstone that changed meanwhile is
// kept. Age alone never purges: a replica that is down, cut off or not yet
// verified keeps every replica's tombstones of their shared partitions.
// Nor does a member that is not an owner of the partition but may hold it
// (an old owner yet to hand over, a streaming node, a fallback): see
// heldElsewhere.

// After a purge, the node remembers the tombstones it removed for a while
// (purgedMemory × TombstoneGrace, at most maxPurgedMemory of them), and
// neither pulls nor accepts through an exchange the same tombstone from a
// replica that has not purged it yet: otherwise replicas would hand a
// tombstone back and forth until all purged it in the same round. (A
// coordinator's write or a hint may still store it again; it is purged
// again later.)
const (
	purgedMemory    = 3
	maxPurgedMemory = 1 << 20
)

type purgedTombstone struct {
	hash uint64
	at   time.Time
}

// wasPurged reports whether this node recently purged key's tombstone
// with that hash.
func (s *Service) wasPurged(key string, hash uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	pt, ok := s.purged[key]
	return ok && pt.hash == hash
}

// forgetPurged drops the memory of purges older than the retention.
func (s *Service) forgetPurged(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, pt := range s.purged {
		if now.Sub(pt.at) > purgedMemory*s.o.TombstoneGrace {
			delete(s.purged, k)
		}
	}
}

// candidates are the tombstones one scan of a partition found.
type candidates struct {
	at   time.Time
	keys map[string]uint64 // key -> ObjectHash of its tombstone when noted
}

// purge runs after a round: for each partition this node replicates, it
// removes the tombstones noted earlier that the rule allows, and notes the
// partition's tombstones again when it has none noted.
func (s *Service) purge(rg *ring.Ring) {
	if s.o.TombstoneGrace < 0 {
		return
	}
	now := s.o.Now()
	s.forgetPurged(now)
	var ready []int
	for p := range rg.Partitions() {
		pref := rg.Preference(p)
		if !slices.Contains(pref, s.self) {
			delete(s.noted, p)
			continue
		}
		if c := s.noted[p]; c != nil && now.Sub(c.at) >= s.o.TombstoneGrace && len(pref) >= rg.Replicas() && s.verifiedAfter(p, pref, c.at) {
			ready = append(ready, p)
		}
	}
	held := s.heldElsewhere(rg, ready)
	for p := range rg.Partitions() {
		if s.ctx.Err() != nil {
			return
		}
		if !slices.Contains(rg.Preference(p), s.self) {
			continue
		}
		c := s.noted[p]
		if c != nil && slices.Contains(ready, p) && !held[p] {
			s.removeTombstones(c)
			c = nil
			delete(s.noted, p)
		}
		if c == nil && now.Sub(s.lastNoted[p]) >= s.o.TombstoneGrace {
			s.lastNoted[p] = now
			if c = s.noteTombstones(p, now); c != nil {
				s.noted[p] = c
			}
		}
	}
}

// heldElsewhere returns the partitions of parts that a member other than
// their owners may hold: an old owner that has not handed them over and
// dropped them yet (it was down during the move, or an owner was down when
// it tried), a fallback holding writes for them, a node streaming them.
// Such a copy may be older than a tombstone: were the tombstone purged,
// the handover would bring the deleted value back. So a tombstone stays
// while any member that is not an owner of its partition holds the
// partition or is down (a member that is down may hold anything). A left
// member is asked too while it is up: it hands what it still holds to the
// owners before it is stopped; once down it is not waited for (a left node
// is refused if it restarts). A member's answer is its tree's root, as an
// exchange reads it: trusted and empty, or it may hold keys.
func (s *Service) heldElsewhere(rg *ring.Ring, parts []int) map[int]bool {
	held := make(map[int]bool)
	if len(parts) == 0 {
		return held
	}
	for _, m := range rg.Members() {
		if m.ID == s.self || m.State == ring.StateLeft && !s.peers.Alive(m.ID) {
			continue
		}
		var ask []int
		for _, p := range parts {
			if !held[p] && !slices.Contains(rg.Preference(p), m.ID) {
				ask = append(ask, p)
			}
		}
		if len(ask) == 0 {
			continue
		}
		holds, err := s.peerHolds(m.ID, ask)
		if err != nil {
			for _, p := range ask {
				held[p] = true
			}
			continue
		}
		for i, p := range ask {
			held[p] = held[p] || holds[i]
		}
	}
	return held
}

// peerHolds asks peer, by its roots, whether it may hold keys of each of
// parts (an untrusted tree may).
func (s *Service) peerHolds(peer string, parts []int) ([]bool, error) {
	if !s.peers.Alive(peer) {
		return nil, fmt.Errorf("%s is down", peer)
	}
	holds := make([]bool, 0, len(parts))
	for len(parts) > 0 {
		chunk := parts[:min(len(parts), rootsPerMessage)]
		parts = parts[len(chunk):]
		reply, err := s.call(peer, KindRoots, appendUvarints(nil, chunk))
		if err != nil {
			return nil, err
		}
		if len(reply) != 9*len(chunk)+8 {
			return nil, errMalformed
		}
		for i := range chunk {
			holds = append(holds, reply[9*i] != 1 || binary.BigEndian.Uint64(reply[9*i+1:]) != 0)
		}
	}
	return holds, nil
}

// verifiedAfter reports whether every replica of partition p but this node
// was verified against it by an exchange that began after t.
func (s *Service) verifiedAfter(p int, pref []string, t time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, peer := range pref {
		if peer == s.self {
			continue
		}
		if v, ok := s.verified[verifiedKey{p, peer}]; !ok || !v.After(t) {
			return false
		}
	}
	return true
}

// noteTombstones scans partition p for tombstones; nil if there are none.
func (s *Service) noteTombstones(p int, at time.Time) *candidates {
	first, last := s.trees.PartitionRange(p)
	c := &candidates{at: at, keys: map[string]uint64{}}
	err := s.store.Scan(first, last, func(e replica.Entry) bool {
		if len(e.Object.Siblings) > 0 && e.Object.IsDeleted() {
			c.keys[string(e.Key)] = replica.ObjectHash(e.Key, e.Object.Encode(nil))
		}
		return s.ctx.Err() == nil
	})
	if err != nil {
		s.o.Logf("antientropy: scanning partition %d for tombstones: %v", p, err)
		return nil
	}
	if len(c.keys) == 0 {
		return nil
	}
	return c
}

// removeTombstones removes the noted tombstones still stored as noted.
func (s *Service) removeTombstones(c *candidates) {
	n := 0
	for key, hash := range c.keys {
		removed, err := s.store.RemoveIf([]byte(key), func(cur *version.Object) bool {
			return cur.IsDeleted() && replica.ObjectHash([]byte(key), cur.Encode(nil)) == hash
		})
		if err != nil {
			s.o.Logf("antientropy: purging the tombstone of %q: %v", key, err)
			continue
		}
		if removed {
			n++
			s.mu.Lock()
			if len(s.purged) < maxPurgedMemory {
				s.purged[key] = purgedTombstone{hash, s.o.Now()}
			}
			s.mu.Unlock()
		}
	}
	s.mu.Lock()
	s.st.TombstonesPurged += uint64(n)
	s.mu.Unlock()
}
