// Package replica is a node's versioned store on top of the storage engine.
// Each key holds a version.Object: its causal context and its siblings
// (tombstones included). A write coordinated here stamps a new dot; a
// version received from another replica is merged, never overwritten, so
// concurrent writes survive as siblings.
//
// On disk a key is stored as
//
//	'd' | token (8 bytes, big-endian) | user key
//
// where token is ring.Token(key), so the keys of one ring partition form one
// contiguous range of the engine and streaming or Merkle sync of a partition
// is a range scan.
package replica

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/version"
)

// dataPrefix marks user data in the engine; other prefixes (hints, Merkle
// state, ring state) share the engine without colliding.
const dataPrefix = 'd'

// Store is a node's versioned store.
type Store struct {
	db    *storage.DB
	node  string
	locks *keyLocks
}

// New wraps an open engine. node is this node's ID, the name its dots carry.
func New(db *storage.DB, node string) *Store {
	return &Store{db: db, node: node, locks: newKeyLocks()}
}

// Node returns the ID this store stamps its writes with.
func (s *Store) Node() string { return s.node }

// DB returns the underlying engine.
func (s *Store) DB() *storage.DB { return s.db }

// TokenOffset is where an engine key's ring token starts: the 8 bytes
// from it are a hash of the user key, uniformly distributed, which is what
// storage.Options.MemTableFingers wants to know.
const TokenOffset = 1

// EncodeKey appends the engine key of a user key to dst: the data prefix,
// the key's ring token (big-endian, so a partition is one contiguous range),
// then the key.
func EncodeKey(dst, key []byte) []byte {
	if dst == nil {
		dst = make([]byte, 0, 9+len(key))
	}
	dst = append(dst, dataPrefix)
	dst = binary.BigEndian.AppendUint64(dst, ring.Token(key))
	return append(dst, key...)
}

// DecodeKey returns the user key and token of an engine key.
func DecodeKey(ekey []byte) (key []byte, token uint64, err error) {
	if len(ekey) < 9 || ekey[0] != dataPrefix {
		return nil, 0, fmt.Errorf("replica: %q is not a data key", ekey)
	}
	return ekey[9:], binary.BigEndian.Uint64(ekey[1:9]), nil
}

// Get returns the stored object of key, or nil if the key was never written
// (or its tombstones were collected).
func (s *Store) Get(key []byte) (*version.Object, error) {
	return s.get(EncodeKey(nil, key))
}

// load returns the stored bytes of an engine key; found is false when the
// engine has none.
func (s *Store) load(ekey []byte) (raw []byte, found bool, err error) {
	raw, err = s.db.Get(ekey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("replica get: %w", err)
	}
	return raw, true, nil
}

func (s *Store) get(ekey []byte) (*version.Object, error) {
	raw, found, err := s.load(ekey)
	if err != nil || !found {
		return nil, err
	}
	obj, err := version.DecodeObject(raw)
	if err != nil {
		return nil, fmt.Errorf("replica get %q: %w", ekey[9:], err)
	}
	return obj, nil
}

// GetLive returns the value LWW picks for key, which is what Redis GET
// answers, without decoding the stored object into a version.Object.
// found is false for a key never written, one with no siblings, and one
// whose winning sibling is a tombstone.
func (s *Store) GetLive(key []byte) (value []byte, found bool, err error) {
	var buf [64]byte
	raw, found, err := s.load(EncodeKey(buf[:0], key))
	if err != nil || !found {
		return nil, false, err
	}
	value, deleted, ok, err := version.DecodeWinner(raw)
	if err != nil {
		return nil, false, fmt.Errorf("replica get %q: %w", key, err)
	}
	return value, ok && !deleted, nil
}

// Coordinate applies a client write on this replica: it stamps a new dot
// for this node and stores the result. With a nil context the write
// supersedes everything this replica holds for the key (a blind write, as
// Redis SET); otherwise it supersedes exactly the versions ctx covers.
// It returns the whole new object, which the coordinator sends to the other
// replicas.
func (s *Store) Coordinate(key []byte, ctx version.Clock, value []byte, deleted bool, ts int64) (*version.Object, error) {
	return s.CoordinateThen(key, ctx, value, deleted, ts, nil)
}

// CoordinateThen is Coordinate with a hook: stamped (if not nil) is called
// with the new object after it is stamped and before it is written to the
// engine, so that the coordinator can send it to the other replicas while
// the local write (and its fsync) is in progress. stamped must not modify
// the object.
func (s *Store) CoordinateThen(key []byte, ctx version.Clock, value []byte, deleted bool, ts int64, stamped func(*version.Object)) (*version.Object, error) {
	var stampedAll func([]*version.Object)
	if stamped != nil {
		stampedAll = func(objs []*version.Object) { stamped(objs[0]) }
	}
	objs, errs, err := s.CoordinateBatch([]Write{{Key: key, Value: value, Ctx: ctx, Deleted: deleted}}, ts, stampedAll)
	if err == nil {
		err = errs[0]
	}
	if err != nil {
		return nil, err
	}
	return objs[0], nil
}

// current returns the state a read-modify-write of ekey (whose lock is in
// held) builds on: the object a writer staged and has not yet seen
// committed, or else the engine's. The caller may modify the result.
func (s *Store) current(held *heldLocks, ekey []byte) (*version.Object, error) {
	obj, _, err := s.currentFrom(held, ekey)
	return obj, err
}

// currentFrom is current, also returning the staged write the state comes
// from (nil when it is the engine's): a caller that writes nothing must
// wait for that write's commit before it reports the state as stored.
func (s *Store) currentFrom(held *heldLocks, ekey []byte) (*version.Object, *stagedObject, error) {
	if st := held.locks[i0(held, ekey)].stagedFor(ekey); st != nil {
		return st.obj.Clone(), st, nil
	}
	obj, err := s.get(ekey)
	return obj, nil, err
}

// unlockAndWait releases held and waits for the staged writes a caller
// relied on without writing anything itself, returning the first error.
func unlockAndWait(held *heldLocks, from []*stagedObject) error {
	held.unlock()
	for _, st := range from {
		<-st.done
		if st.err != nil {
			return st.err
		}
	}
	return nil
}

// Write is one client write in a CoordinateBatch: as the arguments of
// CoordinateThen.
type Write struct {
	Key, Value []byte
	// Ctx is the causal context (nil for a blind write).
	Ctx     version.Clock
	Deleted bool
}

// CoordinateBatch applies several client writes as CoordinateThen would
// apply them one after another, in order (a later write to a key that also
// appears earlier in the batch supersedes it as it would in sequence), but
// stores them with one engine batch: one commit-log write and, in batch sync
// mode, one fsync for all of them. stamped (if not nil) is called once,
// before the engine write, with the new object of each write (nil for a
// write that failed), so that the coordinator can send them to the other
// replicas meanwhile.
//
// A write that cannot be applied (its key's stored object does not decode,
// or the new object is over the engine's limits) gets its own error in
// errs and is neither stamped nor stored; the others go ahead. err is the
// engine batch's error, which fails every write of the batch: the batch is
// all or nothing.
func (s *Store) CoordinateBatch(writes []Write, ts int64, stamped func(objs []*version.Object)) (objs []*version.Object, errs []error, err error) {
	ekeys := make([][]byte, len(writes))
	for i, w := range writes {
		ekeys[i] = EncodeKey(nil, w.Key)
	}
	keys := make([][]byte, len(writes))
	for i, w := range writes {
		keys[i] = w.Key
	}
	held := s.locks.lockAll(keys)

	// First every new object, so that a write that fails is known before
	// anything is stamped (and sent to other replicas).
	objs = make([]*version.Object, len(writes))
	errs = make([]error, len(writes))
	encoded := make([][]byte, len(writes))
	var latest map[string]int // engine key -> index of its latest good write in this batch
	if len(writes) > 1 {
		latest = make(map[string]int, len(writes))
	}
	for i, w := range writes {
		var obj *version.Object
		if j, ok := latest[string(ekeys[i])]; ok {
			obj = objs[j].Clone() // objects handed to stamped are never modified
		} else {
			var err error
			if obj, err = s.current(held, ekeys[i]); err != nil {
				errs[i] = err
				continue
			}
			if obj == nil {
				obj = &version.Object{}
			}
		}
		if w.Ctx == nil {
			obj.WriteBlind(s.node, w.Value, w.Deleted, ts)
		} else {
			obj.Write(s.node, w.Ctx, w.Value, w.Deleted, ts)
		}
		enc := obj.Encode(nil)
		if len(ekeys[i]) > storage.MaxKeySize {
			errs[i] = fmt.Errorf("replica put %q: %w: %d-byte engine key (limit %d)", w.Key, storage.ErrKeyTooLarge, len(ekeys[i]), storage.MaxKeySize)
			continue
		}
		if len(enc) > storage.MaxValueSize {
			errs[i] = fmt.Errorf("replica put %q: %w: %d-byte object (limit %d)", w.Key, storage.ErrValueTooLarge, len(enc), storage.MaxValueSize)
			continue
		}
		objs[i], encoded[i] = obj, enc
		if latest != nil {
			latest[string(ekeys[i])] = i
		}
	}

	b := s.db.NewBatch()
	for i := range writes {
		if errs[i] == nil {
			b.Set(ekeys[i], encoded[i])
		}
	}
	if err := b.Err(); err != nil { // excluded by the checks above
		held.unlock()
		return objs, errs, fmt.Errorf("replica put batch: %w", err)
	}
	if b.Count() == 0 {
		held.unlock()
		return objs, errs, nil
	}
	if stamped != nil {
		stamped(objs)
	}
	if err := held.commitStaged(s.db.Stage(b, nil), ekeys, objs); err != nil {
		return objs, errs, fmt.Errorf("replica put batch of %d: %w", b.Count(), err)
	}
	return objs, errs, nil
}

// Apply merges a version received from another replica into the stored one.
// It reports the merged object and whether anything changed.
func (s *Store) Apply(key []byte, incoming *version.Object) (*version.Object, bool, error) {
	merged, changed, err := s.applyAll([][]byte{key}, []*version.Object{incoming})
	if err != nil {
		return nil, false, err
	}
	return merged[string(key)], changed[string(key)], nil
}

// ApplyBatch is Apply for several versions at once (a batch of writes
// another replica coordinated), with one engine batch for every key that
// changed. A key may appear more than once; its versions are all merged.
func (s *Store) ApplyBatch(keys [][]byte, incoming []*version.Object) error {
	_, _, err := s.applyAll(keys, incoming)
	return err
}

// applyAll is ApplyBatch, also returning each key's merged object (nil for
// a key never written) and whether it changed.
func (s *Store) applyAll(keys [][]byte, incoming []*version.Object) (merged map[string]*version.Object, changed map[string]bool, err error) {
	held := s.locks.lockAll(keys)
	merged = make(map[string]*version.Object, len(keys))
	changed = make(map[string]bool, len(keys))
	var waitFor []*stagedObject // staged writes whose state the batch relies on
	for i, key := range keys {
		cur, ok := merged[string(key)]
		if !ok {
			var from *stagedObject
			var err error
			if cur, from, err = s.currentFrom(held, EncodeKey(nil, key)); err != nil {
				held.unlock()
				return nil, nil, err
			}
			if from != nil {
				waitFor = append(waitFor, from)
			}
		}
		if cur == nil && (incoming[i] == nil || incoming[i].Empty()) {
			merged[string(key)] = nil
			continue
		}
		m := version.Merge(cur, incoming[i])
		if cur == nil || !m.Equal(cur) {
			changed[string(key)] = true
		}
		merged[string(key)] = m
	}
	b := s.db.NewBatch()
	var ekeys [][]byte
	var objs []*version.Object
	for key, ok := range changed {
		if ok {
			ekey := EncodeKey(nil, []byte(key))
			b.Set(ekey, merged[key].Encode(nil))
			ekeys, objs = append(ekeys, ekey), append(objs, merged[key])
		}
	}
	if err := b.Err(); err != nil {
		// Checked first: a failed Set leaves the batch's count short.
		held.unlock()
		return nil, nil, fmt.Errorf("replica apply batch: %w", err)
	}
	if b.Count() == 0 {
		// Nothing to write; the states relied on are stored once their
		// staged writes are. (When the batch writes, its own commit comes
		// after theirs and fails if theirs did.)
		if err := unlockAndWait(held, waitFor); err != nil {
			return nil, nil, err
		}
		return merged, changed, nil
	}
	if err := held.commitStaged(s.db.Stage(b, nil), ekeys, objs); err != nil {
		return nil, nil, fmt.Errorf("replica apply batch of %d: %w", b.Count(), err)
	}
	return merged, changed, nil
}

// Entry is one key of a range scan.
type Entry struct {
	Key    []byte
	Token  uint64
	Object *version.Object
}

// Scan calls fn for every key whose token is in [start, end] (inclusive, so
// the last partition can end at 2^64-1), in token order, until fn returns
// false.
func (s *Store) Scan(start, end uint64, fn func(Entry) bool) error {
	lower := binary.BigEndian.AppendUint64([]byte{dataPrefix}, start)
	var upper []byte
	if end == ^uint64(0) {
		upper = []byte{dataPrefix + 1}
	} else {
		upper = binary.BigEndian.AppendUint64([]byte{dataPrefix}, end+1)
	}
	it := s.db.NewIter(&storage.IterOptions{LowerBound: lower, UpperBound: upper})
	for ok := it.First(); ok; ok = it.Next() {
		key, token, err := DecodeKey(it.Key())
		if err != nil {
			it.Close()
			return err
		}
		obj, err := version.DecodeObject(it.Value())
		if err != nil {
			it.Close()
			return fmt.Errorf("replica scan %q: %w", key, err)
		}
		if !fn(Entry{Key: append([]byte(nil), key...), Token: token, Object: obj}) {
			break
		}
	}
	return it.Close()
}
