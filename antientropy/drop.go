package antientropy

import (
	"errors"
	"fmt"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/version"
)

// Holds reports whether this node may hold keys of partition p: its tree
// is not known empty (an untrusted tree counts as holding).
func (s *Service) Holds(p int) bool {
	root, trusted := s.trees.Root(p)
	return !trusted || root != 0
}

// DropPartition hands partition p, which this node no longer replicates,
// to its owners and removes this node's copy. It reads every key of p,
// then hands p over to every owner: a Merkle comparison that sends this
// node's version of every key that differs (the owner merges it) and takes
// nothing back, so after all of them each owner holds every key read. Then
// each key read is removed (physically, raising the counter floor: see
// replica.RemoveIf) if what is stored now holds nothing the read state did
// not: a key written since is kept, for the next pass. Nothing is removed
// unless every owner was verified.
//
// dropped is asked before the removal begins and before each key: once it
// says the partition is no longer to be dropped (a ring change gave it
// back to this node), nothing more is removed. The removal never overlaps
// a SyncPartitions stream, so a stream that sees the partition as gained
// either runs after the removal, or before it and then dropped says no.
// It returns the number of keys removed.
func (s *Service) DropPartition(p int, owners []string, dropped func() bool) (removed int, err error) {
	if len(owners) == 0 {
		return 0, errors.New("no owners to hand the partition to")
	}
	first, last := s.trees.PartitionRange(p)
	var held []replica.Entry
	if err := s.store.Scan(first, last, func(e replica.Entry) bool {
		held = append(held, e)
		return true
	}); err != nil {
		return 0, fmt.Errorf("partition %d: reading it: %w", p, err)
	}
	if len(held) == 0 {
		// Nothing to hand over. An untrusted tree (after a quarantine)
		// would keep saying this node may hold the partition: rebuild it
		// from the empty range.
		if !s.trees.Trusted(p) {
			s.rebuild(p)
		}
		return 0, nil
	}
	for _, o := range owners {
		if o == s.self {
			return 0, fmt.Errorf("partition %d: this node is an owner", p)
		}
		verified, err := s.exchange(o, []int{p}, modeHandover)
		if err != nil || len(verified) != 1 {
			return 0, fmt.Errorf("partition %d: not verified against owner %s (%v): nothing removed", p, o, err)
		}
	}
	s.moving.Lock()
	defer s.moving.Unlock()
	// Counted before dropped is first asked: a move that sees this node
	// gain p after that sees the count (see Removals).
	s.mu.Lock()
	if s.removals == nil {
		s.removals = map[int]uint64{}
	}
	s.removals[p]++
	s.mu.Unlock()
	for _, e := range held {
		if !dropped() {
			return removed, fmt.Errorf("partition %d: %w", p, ErrRegained)
		}
		read := e.Object
		ok, err := s.store.RemoveIf(e.Key, func(cur *version.Object) bool { return read.Descends(cur) })
		if err != nil {
			return removed, fmt.Errorf("partition %d: removing %q: %w", p, e.Key, err)
		}
		if ok {
			removed++
		}
	}
	return removed, nil
}

// Removals returns how many removals of partition p DropPartition has
// begun. A gained partition verified while it was n stands only while it
// is still n: a removal since may have taken what the verification saw.
func (s *Service) Removals(p int) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removals[p]
}

// ErrRegained is DropPartition's error when the partition stopped being
// one to drop while it was being removed.
var ErrRegained = errors.New("this node replicates it again: removal stopped")
