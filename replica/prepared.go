package replica

import (
	"fmt"

	"github.com/ringkv/ringkv/batchkeys"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/version"
)

// Prepared is a batch of client writes stamped and not yet stored
// (Prepare): its keys stay locked until Commit or Drop, so no other write
// of them on this replica can mint a dot in between. CoordinateBatch is
// Prepare then Commit; a coordinator that must learn something before it
// stores (see coordinator's checked blind writes) holds a Prepared across
// that exchange.
type Prepared struct {
	s         *Store
	held      *heldLocks
	ekeys     [][]byte
	objs      []*version.Object
	encoded   [][]byte
	oldHashes []uint64
	errs      []error
	count     int  // writes stamped without error
	ended     bool // committed or dropped
}

// Prepare stamps writes as CoordinateBatch would (same order rules, same
// per-write errors) and returns them unstored, their keys locked. The
// caller must end it with Commit or Drop, soon: other writes of the keys
// wait for it, and so does Close.
func (s *Store) Prepare(writes []Write, ts int64) (*Prepared, error) {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, ErrClosed
	}
	p := &Prepared{s: s, ekeys: make([][]byte, len(writes))}
	keys := make([][]byte, len(writes))
	for i, w := range writes {
		p.ekeys[i] = EncodeKey(nil, w.Key)
		keys[i] = w.Key
	}
	p.held = s.locks.lockAll(keys)
	ok := false
	defer func() {
		if !ok { // a panic while stamping
			p.Drop()
		}
	}()

	// First every new object, so that a write that fails is known before
	// anything is stamped (and sent to other replicas).
	p.objs = make([]*version.Object, len(writes))
	p.errs = make([]error, len(writes))
	p.encoded = make([][]byte, len(writes))
	p.oldHashes = make([]uint64, len(writes))
	// prev[i]: the batch's previous write to writes[i]'s key, -1 when none.
	var prev []int
	if len(writes) > 1 {
		prev = batchkeys.Previous(len(writes), func(i int) []byte { return writes[i].Key }, nil)
	}
	for i, w := range writes {
		ekey := p.ekeys[i]
		if len(ekey) > storage.MaxKeySize {
			p.errs[i] = fmt.Errorf("replica put %q: %w: %d-byte engine key (limit %d)", w.Key, storage.ErrKeyTooLarge, len(ekey), storage.MaxKeySize)
			continue
		}
		// The latest good write to the key in this batch, -1 when none.
		j := -1
		if prev != nil {
			for j = prev[i]; j >= 0 && p.objs[j] == nil; j = prev[j] {
			}
		}
		var obj *version.Object
		if j >= 0 {
			obj = p.objs[j].Clone() // objects handed out are never modified
		} else {
			var err error
			if w.Ctx == nil && w.ID == 0 { // a blind write supersedes every sibling
				obj, p.oldHashes[i], err = s.currentContext(p.held, ekey)
			} else {
				obj, p.oldHashes[i], err = s.current(p.held, ekey)
			}
			if err != nil {
				p.errs[i] = err
				continue
			}
			if obj == nil {
				obj = &version.Object{}
			}
		}
		if err := s.stamp(obj, w, ts); err != nil {
			p.errs[i] = fmt.Errorf("replica put %q: %w", w.Key, err)
			continue
		}
		enc := obj.Encode(nil)
		if len(enc) > version.MaxObjectSize { // excluded by Write; kept as the engine's guard
			p.errs[i] = fmt.Errorf("replica put %q: %w: %d-byte object (limit %d)", w.Key, version.ErrObjectTooLarge, len(enc), version.MaxObjectSize)
			continue
		}
		p.objs[i], p.encoded[i] = obj, enc
		p.count++
	}
	ok = true
	return p, nil
}

// Objects returns each write's new object (nil for one that failed). They
// must not be modified.
func (p *Prepared) Objects() []*version.Object { return p.objs }

// Encoded returns each write's new object encoded (nil for one that failed).
func (p *Prepared) Encoded() [][]byte { return p.encoded }

// Errors returns each write's own error (nil for one stamped).
func (p *Prepared) Errors() []error { return p.errs }

// Commit stores the stamped writes, or only those with keep[i] set (keep
// nil: all), with one engine batch, and ends p: the keys are unlocked once
// the batch is staged (a later write builds on it) and Commit returns after
// the commit (and, in batch sync mode, its fsync), with the engine's error.
// A write left out is dropped as by Drop. For a key written more than once
// in the batch, keep must keep either all its writes or none of them: a
// later write was stamped on top of the earlier ones.
func (p *Prepared) Commit(keep []bool) error {
	if p.ended {
		return fmt.Errorf("replica: prepared writes committed or dropped already")
	}
	p.ended = true
	defer p.s.closeMu.RUnlock()
	defer p.held.unlock() // a no-op once commitStaged has released them
	b := p.s.db.NewBatch()
	size := 0
	for i := range p.objs {
		size += storage.SetSize(p.ekeys[i], p.encoded[i])
	}
	b.Grow(size) // one allocation instead of a doubling per few records
	var ekeys, encoded [][]byte
	var objs []*version.Object
	var oldHashes []uint64
	for i := range p.objs {
		if p.errs[i] != nil || keep != nil && !keep[i] {
			continue
		}
		b.Set(p.ekeys[i], p.encoded[i])
		ekeys, encoded = append(ekeys, p.ekeys[i]), append(encoded, p.encoded[i])
		objs, oldHashes = append(objs, p.objs[i]), append(oldHashes, p.oldHashes[i])
	}
	if err := b.Err(); err != nil { // excluded by Prepare's checks
		return fmt.Errorf("replica put batch: %w", err)
	}
	if b.Count() == 0 {
		return nil
	}
	hashes, wrap := p.s.observe(ekeys, encoded, oldHashes)
	if err := p.held.commitStaged(wrap(p.s.db.Stage(b, nil)), ekeys, objs, hashes); err != nil {
		return fmt.Errorf("replica put batch of %d: %w", b.Count(), err)
	}
	return nil
}

// Drop ends p without storing anything, unlocking its keys. It is a no-op
// once p has ended.
func (p *Prepared) Drop() {
	if p.ended {
		return
	}
	p.ended = true
	p.held.unlock()
	p.s.closeMu.RUnlock()
}
