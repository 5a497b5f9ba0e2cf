package replica

import (
	"fmt"

	"github.com/ringkv/ringkv/version"
)

// RemoveIfCovered removes key's object physically (not a tombstone: the
// key is as if never written here) when by descends it, i.e. when by holds
// every write the stored object holds. It reports whether it removed it.
// A node uses it to drop a copy it kept for a key it does not replicate,
// once the key's replica acknowledged a version covering it.
func (s *Store) RemoveIfCovered(key []byte, by *version.Object) (bool, error) {
	return s.RemoveIf(key, func(cur *version.Object) bool { return by.Descends(cur) })
}

// RemoveIf removes key's object physically when keep returns true for it,
// under the key's lock, so that no write to the key interleaves: keep sees
// the latest state (also one still being committed) and the removal is
// ordered after it. It reports whether it removed the object; an absent
// key is not removed. The store's Observer hears of the removal.
func (s *Store) RemoveIf(key []byte, remove func(cur *version.Object) bool) (bool, error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return false, ErrClosed
	}
	held := s.locks.lockAll([][]byte{key})
	defer held.unlock()
	ekey := EncodeKey(nil, key)
	cur, _, hash, err := s.currentFrom(held, ekey)
	if err != nil || cur == nil || !remove(cur) {
		return false, err
	}
	s.removeMu.Lock()
	defer s.removeMu.Unlock()
	b := s.db.NewBatch()
	b.Delete(ekey)
	// The key's context goes: raise the counter floor with it, durably and
	// atomically with the removal (see floor.go).
	raise := cur.Context[s.actor]
	if raise > s.floor.Load() {
		b.Set(metaCounterFloor, counterFloorRecord(s.actor, raise))
	}
	if err := b.Err(); err != nil {
		return false, fmt.Errorf("replica remove %q: %w", key, err)
	}
	var changes []Change
	if s.observer != nil {
		changes = []Change{{Token: tokenOf(ekey), Old: hash}}
		s.observer.Changing(changes)
	}
	// Committed with the lock held (removals are rare): a writer of the key
	// must not read the old state from the engine while the removal is in
	// flight, or an Observer would count the old state out twice.
	commit := s.db.Stage(b, nil)
	ok := false
	if s.observer != nil {
		defer func() { s.observer.Changed(changes, ok) }()
	}
	if err := commit(); err != nil {
		return false, fmt.Errorf("replica remove %q: %w", key, err)
	}
	ok = true
	if raise > s.floor.Load() {
		s.floor.Store(raise) // removals are serialised by removeMu
	}
	// A writer that staged the state just removed may not have unstaged
	// it yet (it waits for this lock to do so); the next writer must build
	// on the absence the engine now shows, not on that state.
	kl := held.locks[i0(held, ekey)]
	for st := kl.stagedFor(ekey); st != nil; st = kl.stagedFor(ekey) {
		kl.unstage(st)
	}
	return true, nil
}
