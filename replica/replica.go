// Package replica is a node's versioned store on top of the storage engine.
// Each key holds a version.Object: its causal context and its siblings
// (tombstones included). A write coordinated here stamps a new dot; a
// version received from another replica is merged, never overwritten, so
// concurrent writes survive as siblings. A coordinator may also stamp
// writes and hold them unstored, their keys locked (Prepare), while it
// asks the other replicas whether they cover what those hold
// (ApplyCovering).
//
// On disk a key is stored as
//
//	'd' | token (8 bytes, big-endian) | user key
//
// where token is ring.Token(key), so the keys of one ring partition form one
// contiguous range of the engine and streaming or Merkle sync of a partition
// is a range scan.
//
// # Incarnations
//
// The dots this store mints carry its actor, version.Actor(node ID,
// incarnation), not the bare node ID. The incarnation is a random number
// kept in the engine under the meta key 'm' "incarnation", with a flag
// saying whether the last run closed the store cleanly. Open mints a new
// incarnation for a new data directory and after an unclean shutdown: in
// either case this node may have lost writes it had already stamped and
// sent to its peers (the coordinator replicates in parallel with the local
// fsync), and stamping again from the counters it still has would mint
// dots its peers have seen, which they would drop as already known. A new
// actor starts a fresh counter sequence that no peer has seen. The cost is
// one more context entry in each key the new incarnation writes.
package replica

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ringkv/ringkv/batchkeys"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/version"
)

// dataPrefix marks user data in the engine; other prefixes (hints, Merkle
// state, ring state) share the engine without colliding.
const dataPrefix = 'd'

// metaPrefix marks the store's own records: metaIncarnation holds the
// incarnation and the clean-shutdown flag.
const metaPrefix = 'm'

var metaIncarnation = []byte{metaPrefix, 'i', 'n', 'c', 'a', 'r', 'n', 'a', 't', 'i', 'o', 'n'}

// incarnationFormat is the first byte of the incarnation record:
//
//	byte     format (1)
//	byte     clean (1: the store was closed cleanly, 0: it is open or crashed)
//	uvarint  incarnation
const incarnationFormat = 1

var (
	// ErrClosed is returned by writes coordinated after Close.
	ErrClosed = errors.New("replica: store closed")
	// ErrUnknownContext is version.ErrUnknownContext: a client context
	// names writes the key never had.
	ErrUnknownContext = version.ErrUnknownContext
	// ErrObjectTooLarge is version.ErrObjectTooLarge: the write would make
	// the key's object larger than version.MaxObjectSize.
	ErrObjectTooLarge = version.ErrObjectTooLarge
)

// Store is a node's versioned store.
type Store struct {
	db          *storage.DB
	node        string // node ID
	actor       string // what this store's dots carry
	incarnation uint64
	minted      string // why Open minted the incarnation; "" when kept
	persist     bool   // made by Open: Close records a clean shutdown
	locks       *keyLocks
	observer    Observer      // nil: no one to tell of changes
	floor       atomic.Uint64 // see floor.go
	retries     atomic.Uint64 // writes not stamped again: see RetriesRecognized
	removeMu    sync.Mutex    // serialises removals, so the floor record only grows

	// closeMu is held shared by every coordinated write from stamping to
	// commit, and exclusively by Close, so that no dot is stamped after
	// the clean-shutdown flag is written.
	closeMu sync.RWMutex
	closed  bool
}

// New wraps an open engine, stamping writes with actor as given (a node
// ID, which is a legacy actor, or version.Actor(node, incarnation)). It
// keeps no incarnation record: Open is what a server uses; New is for
// tests and tools.
func New(db *storage.DB, actor string) *Store {
	node, inc, ok := version.SplitActor(actor)
	if !ok {
		node = actor // writes fail with version.ErrBadActor
	}
	return &Store{db: db, node: node, actor: actor, incarnation: inc, locks: newKeyLocks()}
}

// Open wraps an open engine for node nodeID with its incarnation: the one
// recorded in the engine when the last run closed the store cleanly, else
// a new random one (a new data directory, or a crash: see the package
// doc). Before returning it records the incarnation as open (not clean),
// with a synced write, so that a crash from now on is detected. Close the
// Store before closing the engine.
func Open(db *storage.DB, nodeID string) (*Store, error) {
	if err := version.CheckNodeID(nodeID); err != nil {
		return nil, fmt.Errorf("replica: %w", err)
	}
	inc, why, err := recoverIncarnation(db)
	if err != nil {
		return nil, err
	}
	if why != "" {
		if inc, err = mintIncarnation(inc); err != nil {
			return nil, err
		}
	}
	if err := writeIncarnation(db, inc, false); err != nil {
		return nil, err
	}
	s := New(db, version.Actor(nodeID, inc))
	s.minted, s.persist = why, true
	floor, err := loadCounterFloor(db, s.actor)
	if err != nil {
		return nil, err
	}
	s.floor.Store(floor)
	return s, nil
}

// recoverIncarnation reads the incarnation record: the incarnation to keep
// (why == ""), or the reason a new one is needed (with the old one, if any,
// so that the new one differs).
func recoverIncarnation(db *storage.DB) (inc uint64, why string, err error) {
	rec, err := db.Get(metaIncarnation)
	if errors.Is(err, storage.ErrNotFound) {
		it := db.NewIter(&storage.IterOptions{LowerBound: []byte{dataPrefix}, UpperBound: []byte{dataPrefix + 1}})
		hasData := it.First()
		if err := it.Close(); err != nil {
			return 0, "", fmt.Errorf("replica open: %w", err)
		}
		if hasData {
			return 0, "the data directory holds data but no incarnation (written by an older release)", nil
		}
		return 0, "new data directory", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("replica open: read incarnation: %w", err)
	}
	inc, n := binary.Uvarint(rec[min(2, len(rec)):])
	switch {
	case len(rec) < 3 || rec[0] != incarnationFormat || rec[1] > 1 || n <= 0 || 2+n != len(rec) || inc == 0 || inc > version.MaxIncarnation:
		return 0, fmt.Sprintf("unreadable incarnation record %x", rec), nil
	case rec[1] != 1:
		return inc, "the last run did not shut down cleanly (writes it had sent to peers may be missing here)", nil
	}
	return inc, "", nil
}

// mintIncarnation returns a random incarnation in 1..MaxIncarnation other
// than old.
func mintIncarnation(old uint64) (uint64, error) {
	for {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return 0, fmt.Errorf("replica: mint incarnation: %w", err)
		}
		inc := binary.LittleEndian.Uint64(b[:]) & version.MaxIncarnation
		if inc != 0 && inc != old {
			return inc, nil
		}
	}
}

// writeIncarnation records inc and the clean flag with a synced write.
func writeIncarnation(db *storage.DB, inc uint64, clean bool) error {
	rec := []byte{incarnationFormat, 0}
	if clean {
		rec[1] = 1
	}
	rec = binary.AppendUvarint(rec, inc)
	b := db.NewBatch()
	b.Set(metaIncarnation, rec)
	if err := db.Apply(b, &storage.WriteOptions{Sync: true}); err != nil {
		return fmt.Errorf("replica: record incarnation: %w", err)
	}
	return nil
}

// Close records a clean shutdown (a synced write), after waiting for the
// writes being coordinated; later coordinated writes fail with ErrClosed.
// Merging versions from other replicas (Apply) stays possible until the
// engine closes: it mints no dot. Close does not close the engine. A
// Store made by New has nothing to record.
func (s *Store) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.persist {
		return nil
	}
	return writeIncarnation(s.db, s.incarnation, true)
}

// Node returns this node's ID.
func (s *Store) Node() string { return s.node }

// Actor returns the actor this store stamps its writes with
// (version.Actor(Node(), Incarnation())).
func (s *Store) Actor() string { return s.actor }

// Incarnation returns the incarnation of this store's data (0 for a
// legacy actor given to New).
func (s *Store) Incarnation() uint64 { return s.incarnation }

// Minted returns why Open minted a new incarnation, or "" when it kept the
// recorded one (and for a Store made by New).
func (s *Store) Minted() string { return s.minted }

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
	var buf [64]byte // the engine key of a usual key, without an allocation
	return s.get(EncodeKey(buf[:0], key))
}

// load returns the stored bytes of an engine key (found is false when the
// engine has none), uncopied when they come from a table: they may alias
// the engine's memory (storage.DB.GetShared) and must not be modified.
func (s *Store) load(ekey []byte) (raw []byte, found bool, err error) {
	raw, err = s.db.GetShared(ekey)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("replica get: %w", err)
	}
	return raw, true, nil
}

func (s *Store) get(ekey []byte) (*version.Object, error) {
	obj, _, err := s.getHashed(ekey, false)
	return obj, err
}

// GetHashed is Get, also returning the ObjectHash of the stored bytes (0
// when absent): the state a digest read compares.
func (s *Store) GetHashed(key []byte) (*version.Object, uint64, error) {
	var buf [64]byte
	return s.getHashed(EncodeKey(buf[:0], key), true)
}

// GetRaw returns key's stored bytes (an encoded version.Object) and their
// ObjectHash without decoding them; found is false when there are none.
// raw may alias the engine's memory: the caller must not modify it.
func (s *Store) GetRaw(key []byte) (raw []byte, hash uint64, found bool, err error) {
	var buf [64]byte // the engine key of a usual key, without an allocation
	raw, found, err = s.load(EncodeKey(buf[:0], key))
	if err != nil || !found {
		return nil, 0, false, err
	}
	return raw, ObjectHash(key, raw), true, nil
}

// getHashed is get, also returning the ObjectHash of the stored bytes when
// hashed is true (0 when absent or not asked).
func (s *Store) getHashed(ekey []byte, hashed bool) (*version.Object, uint64, error) {
	return s.getDecoded(ekey, hashed, version.DecodeObject)
}

// getDecoded is getHashed with the decoding of the stored bytes given.
func (s *Store) getDecoded(ekey []byte, hashed bool, decode func([]byte) (*version.Object, error)) (*version.Object, uint64, error) {
	raw, found, err := s.load(ekey)
	if err != nil || !found {
		return nil, 0, err
	}
	obj, err := decode(raw)
	if err != nil {
		return nil, 0, fmt.Errorf("replica get %q: %w", string(ekey[9:]), err) // a copy: ekey does not escape
	}
	var hash uint64
	if hashed {
		hash = ObjectHash(ekey[9:], raw)
	}
	return obj, hash, nil
}

// GetLive returns the value LWW picks for key, which is what Redis GET
// answers, without decoding the stored object into a version.Object.
// found is false for a key never written, one with no siblings, and one
// whose winning sibling is a tombstone. value may alias the engine's
// memory: the caller must not modify it.
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
// with this store's actor and stores the result. With a nil context the
// write supersedes everything this replica holds for the key (a blind
// write, as Redis SET); otherwise it supersedes exactly the versions ctx
// covers. It returns the whole new object, which the coordinator sends to
// the other replicas. See CoordinateBatch for the errors.
func (s *Store) Coordinate(key []byte, ctx version.Clock, value []byte, deleted bool, ts int64) (*version.Object, error) {
	return s.CoordinateThen(Write{Key: key, Value: value, Ctx: ctx, Deleted: deleted}, ts, nil)
}

// CoordinateThen is Coordinate with a hook: stamped (if not nil) is called
// with the new object after it is stamped and before it is written to the
// engine, so that the coordinator can send it to the other replicas while
// the local write (and its fsync) is in progress. stamped must not modify
// the object.
func (s *Store) CoordinateThen(w Write, ts int64, stamped func(*version.Object)) (*version.Object, error) {
	var stampedAll func([]*version.Object)
	if stamped != nil {
		stampedAll = func(objs []*version.Object) { stamped(objs[0]) }
	}
	objs, errs, err := s.CoordinateBatch([]Write{w}, ts, stampedAll)
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
func (s *Store) current(held *heldLocks, ekey []byte) (*version.Object, uint64, error) {
	obj, _, hash, err := s.currentFrom(held, ekey)
	return obj, hash, err
}

// currentContext is current for a blind write, which supersedes every
// sibling (version.Object.WriteBlind) and so needs only the state's causal
// context: it returns that context in an object without siblings (nil when
// the key is absent), with the state's hash as current gives it, without
// decoding or copying the siblings' values.
func (s *Store) currentContext(held *heldLocks, ekey []byte) (*version.Object, uint64, error) {
	if st := held.locks[i0(held, ekey)].stagedFor(ekey); st != nil {
		if st.obj == nil {
			return nil, st.hash, nil
		}
		return &version.Object{Context: st.obj.Context.Clone()}, st.hash, nil
	}
	return s.getDecoded(ekey, s.observer != nil, decodeContextOnly)
}

// decodeContextOnly decodes a stored state's context alone, into an object
// without siblings.
func decodeContextOnly(raw []byte) (*version.Object, error) {
	ctx, err := version.DecodeContext(raw)
	if err != nil {
		return nil, err
	}
	return &version.Object{Context: ctx}, nil
}

// currentFor is currentFrom for a batch applying in, which usually
// supersedes the state entirely (a coordinator's write, replicated): then
// (supersedes) the state is decoded no further than its context, and cur
// holds that context alone; version.Merge(state, in) equals in.
func (s *Store) currentFor(held *heldLocks, ekey []byte, in *version.Object) (cur *version.Object, from *stagedObject, hash uint64, supersedes bool, err error) {
	if st := held.locks[i0(held, ekey)].stagedFor(ekey); st != nil {
		cur = st.obj.Clone()
		var ctx version.Clock
		if cur != nil {
			ctx = cur.Context
		}
		return cur, st, st.hash, supersedesAll(in, ctx), nil
	}
	cur, hash, err = s.getDecoded(ekey, s.observer != nil, func(raw []byte) (*version.Object, error) {
		obj, err := decodeContextOnly(raw)
		if err != nil {
			return nil, err
		}
		if supersedes = supersedesAll(in, obj.Context); supersedes {
			return obj, nil
		}
		return version.DecodeObject(raw)
	})
	if err != nil {
		return nil, nil, 0, false, err
	}
	if cur == nil {
		supersedes = supersedesAll(in, nil)
	}
	return cur, nil, hash, supersedes, nil
}

// supersedesAll reports whether in supersedes any state whose context is
// ctx (nil for an absent key) so entirely that version.Merge(state, in)
// equals in, and differs from the state: in's context descends ctx, and in
// has siblings (at most version.MaxSiblings, which Merge would cap), none
// of them covered by ctx. A state's siblings are all covered by its
// context (version.Object.Validate), so the merge drops every one of them
// and keeps every one of in's.
func supersedesAll(in *version.Object, ctx version.Clock) bool {
	if in == nil || len(in.Siblings) == 0 || len(in.Siblings) > version.MaxSiblings || !in.Context.Descends(ctx) {
		return false
	}
	for _, sib := range in.Siblings {
		if ctx.Covers(sib.Dot) {
			return false
		}
	}
	return true
}

// currentFrom is current, also returning the staged write the state comes
// from (nil when it is the engine's): a caller that writes nothing must
// wait for that write's commit before it reports the state as stored. hash
// is the state's ObjectHash when the store has an Observer (else 0; 0 also
// when absent).
func (s *Store) currentFrom(held *heldLocks, ekey []byte) (*version.Object, *stagedObject, uint64, error) {
	if st := held.locks[i0(held, ekey)].stagedFor(ekey); st != nil {
		return st.obj.Clone(), st, st.hash, nil
	}
	obj, hash, err := s.getHashed(ekey, s.observer != nil)
	return obj, nil, hash, err
}

// observe tells the Observer (if any) of new states about to be committed
// (encoded[i] the new bytes of ekeys[i], nil for none; oldHashes[i] the hash
// of what they replace; for a key listed twice the first old and the last
// new count). It returns the hashes of the new states (nil without an
// Observer) and wraps the engine's commit (from db.Stage, which must be
// called after observe) so that the Observer hears of its outcome.
func (s *Store) observe(ekeys, encoded [][]byte, oldHashes []uint64) (hashes []uint64, wrap func(commit func() error) func() error) {
	if s.observer == nil {
		return nil, func(commit func() error) func() error { return commit }
	}
	hashes = make([]uint64, len(ekeys))
	changes := make([]Change, 0, len(ekeys))
	// For a batch that may repeat keys: prev[i] is the previous entry of
	// ekeys[i], and at[i] the change of a key's first new state.
	var prev, at []int
	if len(ekeys) > 1 {
		prev = batchkeys.Previous(len(ekeys), func(i int) []byte { return ekeys[i] }, nil)
		at = make([]int, len(ekeys))
	}
	for i, ekey := range ekeys {
		if encoded[i] == nil {
			continue
		}
		hashes[i] = ObjectHash(ekey[9:], encoded[i])
		j := -1 // the key's latest earlier entry with a new state
		if prev != nil {
			for j = prev[i]; j >= 0 && encoded[j] == nil; j = prev[j] {
			}
		}
		if j >= 0 {
			at[i] = at[j]
			changes[at[i]].New = hashes[i]
			continue
		}
		if at != nil {
			at[i] = len(changes)
		}
		changes = append(changes, Change{Token: tokenOf(ekey), Old: oldHashes[i], New: hashes[i]})
	}
	s.observer.Changing(changes)
	return hashes, func(commit func() error) func() error {
		return func() (err error) {
			ok := false
			defer func() { s.observer.Changed(changes, ok) }() // also when commit panics
			err = commit()
			ok = err == nil
			return err
		}
	}
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
	// ID is the client's name for the write (0: none), the same in each
	// attempt of a retried write: a replica that already holds the write
	// (version.Object.WriteOnce) does not apply it again.
	ID uint64
	// Blind says that the client sent no context, also when Ctx is set:
	// the context a coordinator learned from a read quorum to stamp a
	// blind write with. Such a context covers an earlier attempt the
	// replica holds, yet the write is that attempt's retry, not a write
	// over it: with an ID, any held attempt is recognized.
	Blind bool
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
// A client context (Write.Ctx not nil) is checked against the key's stored
// object with version.Object.AdmitContext: one that names an actor the
// stored context lacks is refused (ErrUnknownContext: the client should
// read the key again), and an entry ahead of the stored one is clamped to
// it (a client cannot claim writes that do not exist). The coordinator
// merges into this replica what a read quorum holds before it coordinates
// a write with a context, so the stored object is the merge of a read
// quorum, which has every write a client could have read from an
// acknowledged write on.
//
// A write that cannot be applied gets its own error in errs and is neither
// stamped nor stored; the others go ahead. Such errors: its key's stored
// object does not decode; its context is refused (ErrUnknownContext); the
// new object would exceed version.MaxObjectSize (ErrObjectTooLarge, saying
// how many siblings of how many bytes: the client should resolve the
// siblings or write smaller values); this actor's counter for the key is
// exhausted; the key is over the engine's limit. err is the engine batch's
// error, which fails every write of the batch: the batch is all or
// nothing; after Close it is ErrClosed.
func (s *Store) CoordinateBatch(writes []Write, ts int64, stamped func(objs []*version.Object)) (objs []*version.Object, errs []error, err error) {
	p, err := s.Prepare(writes, ts)
	if err != nil {
		return nil, nil, err
	}
	defer p.Drop() // a no-op once committed
	if p.count == 0 {
		return p.objs, p.errs, nil
	}
	if stamped != nil {
		stamped(p.objs)
	}
	return p.objs, p.errs, p.Commit(nil)
}

// stamp applies one client write to obj, the key's current state (for a
// blind write without an ID, its context alone will do). A write whose ID
// obj already holds leaves obj as it is (version.Object.WriteOnce).
func (s *Store) stamp(obj *version.Object, w Write, ts int64) error {
	var ctx version.Clock
	if w.Ctx != nil {
		var err error
		if ctx, err = obj.AdmitContext(w.Ctx); err != nil {
			return err
		}
	}
	if w.Blind && w.Ctx != nil {
		if _, held := obj.Holds(w.ID, w.Value, w.Deleted); held {
			s.retries.Add(1)
			return nil
		}
	}
	s.applyFloor(obj)
	_, applied, err := obj.WriteOnce(s.actor, ctx, w.Ctx == nil, w.ID, w.Value, w.Deleted, ts)
	if err == nil && !applied {
		s.retries.Add(1)
	}
	return err
}

// RetriesRecognized counts the writes this store did not stamp because it
// already held them under their write ID (Write.ID): attempts of retried
// writes that reached a replica holding an earlier attempt. It counts at
// the stamp, so a checked write given back and stamped again counts twice.
func (s *Store) RetriesRecognized() uint64 { return s.retries.Load() }

// Apply merges a version received from another replica into the stored one.
// It reports the merged object and whether anything changed. An invalid
// incoming object (see version.Object.Validate) is refused with an error.
// The merge keeps the object within version.MaxSiblings and
// version.MaxObjectSize by dropping the oldest siblings (see version.Merge).
func (s *Store) Apply(key []byte, incoming *version.Object) (*version.Object, bool, error) {
	merged, changed, _, err := s.applyAll([][]byte{key}, []*version.Object{incoming}, false)
	if err != nil {
		return nil, false, err
	}
	return merged[0], changed[0], nil
}

// ApplyBatch is Apply for several versions at once (a batch of writes
// another replica coordinated), with one engine batch for every key that
// changed. A key may appear more than once; its versions are all merged.
func (s *Store) ApplyBatch(keys [][]byte, incoming []*version.Object) error {
	_, _, _, err := s.applyAll(keys, incoming, false)
	return err
}

// ApplyBatchMerged is ApplyBatch, also returning each key's state once
// merged (nil for a key still absent): what a coordinator that learned
// incoming from other replicas builds its write's context on.
func (s *Store) ApplyBatchMerged(keys [][]byte, incoming []*version.Object) ([]*version.Object, error) {
	merged, _, _, err := s.applyAll(keys, incoming, false)
	if err != nil {
		return nil, err
	}
	return merged, nil
}

// ApplyCovering is ApplyBatch for versions that must each supersede the
// key's state here entirely: version i is stored (stored[i]) only if it
// descends what this replica holds for keys[i] (version.Object.Descends),
// so that storing it is storing exactly it. A key another write is
// reading-and-writing at this moment (its lock is held) is not waited for:
// its version is not stored, as if it did not cover. Nothing is stored for
// a key whose version is not. For each version not stored, held[i] is what
// this replica holds for its key (so that the sender can learn it), or nil
// for a busy key. err is the engine's, or an invalid version's (then
// nothing is stored).
func (s *Store) ApplyCovering(keys [][]byte, incoming []*version.Object) (stored []bool, held []*version.Object, err error) {
	merged, _, stored, err := s.applyAll(keys, incoming, true)
	if err != nil {
		return nil, nil, err
	}
	held = make([]*version.Object, len(keys))
	for i := range keys {
		if !stored[i] {
			held[i] = merged[i]
		}
	}
	return stored, held, nil
}

// applyState is one distinct key of an applyAll batch.
type applyState struct {
	ekey    []byte
	cur     *version.Object // the key's state so far (nil: absent)
	oldHash uint64          // the hash of the state it replaces (see observe)
	changed bool
	read    bool // cur was read (a busy key of a covering batch is not)
}

// applyAll is ApplyBatch, also returning each key's merged object (nil for
// one absent; merged[i] is keys[i]'s state after the whole batch) and
// whether it changed; with covering, it is ApplyCovering, also returning
// which versions were stored.
func (s *Store) applyAll(keys [][]byte, incoming []*version.Object, covering bool) (merged []*version.Object, changed, stored []bool, err error) {
	// Decoded objects are valid (version.DecodeObject checks); this keeps
	// one built by hand from storing bytes that would no longer decode.
	for i, o := range incoming {
		if err := o.Validate(); err != nil {
			return nil, nil, nil, fmt.Errorf("replica apply %q: %w", keys[i], err)
		}
	}
	var held *heldLocks
	if covering {
		held = s.locks.tryLockAll(keys)
		stored = make([]bool, len(keys))
	} else {
		held = s.locks.lockAll(keys)
	}
	defer held.unlock() // a no-op once released below
	// states[at[i]] is keys[i]'s: a key listed more than once has one.
	states := make([]applyState, 0, len(keys))
	at := make([]int, len(keys))
	var prev []int // prev[i]: the previous entry of keys[i], -1 when none
	if len(keys) > 1 {
		prev = batchkeys.Previous(len(keys), func(i int) []byte { return keys[i] }, nil)
	}
	var waitFor []*stagedObject // staged writes whose state the batch relies on
	for i, key := range keys {
		var j int
		if prev != nil && prev[i] >= 0 {
			j = at[prev[i]]
		} else {
			j = len(states)
			states = append(states, applyState{ekey: EncodeKey(nil, key)})
		}
		at[i] = j
		st := &states[j]
		if covering && !held.holds(key) {
			continue // busy: not waited for (see ApplyCovering)
		}
		supersedes := false // incoming[i] supersedes st.cur: their merge is incoming[i]
		if !st.read {
			var from *stagedObject
			var err error
			if st.cur, from, st.oldHash, supersedes, err = s.currentFor(held, st.ekey, incoming[i]); err != nil {
				return nil, nil, nil, err
			}
			st.read = true
			if from != nil {
				waitFor = append(waitFor, from)
			}
		}
		cur := st.cur
		if cur == nil && (incoming[i] == nil || incoming[i].Empty()) {
			continue
		}
		var m *version.Object
		switch {
		case supersedes:
			// What version.Merge would build, without reading cur's
			// siblings (currentFor did not decode them).
			m = &version.Object{Context: incoming[i].Context.Clone(), Siblings: slices.Clone(incoming[i].Siblings)}
		case covering && !incoming[i].Descends(cur):
			continue
		default:
			m = version.Merge(cur, incoming[i])
		}
		if supersedes || cur == nil || !m.Equal(cur) {
			// A merge past the size limit is refused, not trimmed: trimming
			// would drop a write another replica acknowledged. This replica
			// does not acknowledge the version; the siblings stay on the
			// replicas that hold them until a client resolves them.
			if err := m.CheckSize(); err != nil {
				return nil, nil, nil, fmt.Errorf("replica apply %q: %w", key, err)
			}
			st.changed = true
		}
		st.cur = m
		if covering {
			stored[i] = true
		}
	}
	merged, changed = make([]*version.Object, len(keys)), make([]bool, len(keys))
	for i, j := range at {
		merged[i], changed[i] = states[j].cur, states[j].changed
	}
	var ekeys, encoded [][]byte
	var objs []*version.Object
	var oldHashes []uint64
	size := 0
	for _, st := range states {
		if st.changed {
			enc := st.cur.Encode(nil)
			size += storage.SetSize(st.ekey, enc)
			ekeys, objs, encoded = append(ekeys, st.ekey), append(objs, st.cur), append(encoded, enc)
			oldHashes = append(oldHashes, st.oldHash)
		}
	}
	b := s.db.NewBatch()
	b.Grow(size) // one allocation instead of a doubling per few records
	for i, ekey := range ekeys {
		b.Set(ekey, encoded[i])
	}
	if err := b.Err(); err != nil {
		// Checked first: a failed Set leaves the batch's count short.
		return nil, nil, nil, fmt.Errorf("replica apply batch: %w", err)
	}
	if b.Count() == 0 {
		// Nothing to write; the states relied on are stored once their
		// staged writes are. (When the batch writes, its own commit comes
		// after theirs and fails if theirs did.)
		if err := unlockAndWait(held, waitFor); err != nil {
			return nil, nil, nil, err
		}
		return merged, changed, stored, nil
	}
	hashes, wrap := s.observe(ekeys, encoded, oldHashes)
	if err := held.commitStaged(wrap(s.db.Stage(b, nil)), ekeys, objs, hashes); err != nil {
		return nil, nil, nil, fmt.Errorf("replica apply batch of %d: %w", b.Count(), err)
	}
	return merged, changed, stored, nil
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
	var decodeErr error
	err := s.scanRaw(start, end, func(key []byte, token uint64, raw []byte) bool {
		obj, err := version.DecodeObject(raw)
		if err != nil {
			decodeErr = fmt.Errorf("replica scan %q: %w", key, err)
			return false
		}
		return fn(Entry{Key: append([]byte(nil), key...), Token: token, Object: obj})
	})
	if decodeErr != nil {
		return decodeErr
	}
	return err
}

// scanRaw calls fn with the stored bytes of every key whose token is in
// [start, end], in token order, until fn returns false. key and raw are
// only valid during the call.
func (s *Store) scanRaw(start, end uint64, fn func(key []byte, token uint64, raw []byte) bool) error {
	return scanIter(s.rangeIter(start, end), fn)
}

// rangeIter opens an iterator over the data keys whose token is in
// [start, end]: a consistent snapshot of the engine as of now.
func (s *Store) rangeIter(start, end uint64) *storage.Iterator {
	lower := binary.BigEndian.AppendUint64([]byte{dataPrefix}, start)
	var upper []byte
	if end == ^uint64(0) {
		upper = []byte{dataPrefix + 1}
	} else {
		upper = binary.BigEndian.AppendUint64([]byte{dataPrefix}, end+1)
	}
	return s.db.NewIter(&storage.IterOptions{LowerBound: lower, UpperBound: upper})
}

// scanIter calls fn for every entry of it until fn returns false, then
// closes it.
func scanIter(it *storage.Iterator, fn func(key []byte, token uint64, raw []byte) bool) error {
	for ok := it.First(); ok; ok = it.Next() {
		key, token, err := DecodeKey(it.Key())
		if err != nil {
			it.Close()
			return err
		}
		if !fn(key, token, it.Value()) {
			break
		}
	}
	return it.Close()
}
