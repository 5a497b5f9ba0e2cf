package replica

import (
	"bytes"
	"errors"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/ringkv/ringkv/version"
)

// keyLocks serialises the read-modify-write cycles of a key. Two writes
// wait for each other only when they are on the same key, and only until
// the first one's engine batch is staged (its commit order fixed): the
// second builds on the first's staged object (keyLock.staged) while the
// first waits for its fsync. Locks shared by unrelated keys (stripes) made
// writes queue behind other keys' writes.
//
// Locks are found by the key's 64-bit hash, which saves copying the key
// into the map: two keys with the same hash (about 2^-64 for a pair) share
// a lock, which only makes them wait for each other.
type keyLocks struct {
	seed   maphash.Seed
	shards [keyLockShards]struct {
		mu sync.Mutex
		m  map[uint64]*keyLock
	}
}

const keyLockShards = 64

// keyLock is the lock of one key, in its shard's map while anyone holds or
// waits for it, or has a write of the key staged and not yet committed.
type keyLock struct {
	mu   sync.Mutex
	refs int // holders, waiters and staged writes; guarded by the shard's mutex
	// staged holds, per engine key, the newest object a writer staged
	// (storage.DB.Stage) and has not yet seen committed: the state the
	// key's next writer must build on, since the engine does not show it
	// yet. Guarded by mu. Almost always empty or one entry; more only when
	// keys share a lock (equal hashes).
	staged []*stagedObject
}

// stagedObject is one staged write's new state of a key.
type stagedObject struct {
	ekey []byte
	obj  *version.Object
	hash uint64 // ObjectHash of obj's encoding when the store has an Observer, else 0
	// done is closed once the write is committed or failed (err).
	done chan struct{}
	err  error
}

// stagedFor returns ekey's newest staged state, or nil. mu must be held.
func (kl *keyLock) stagedFor(ekey []byte) *stagedObject {
	for _, st := range kl.staged {
		if bytes.Equal(st.ekey, ekey) {
			return st
		}
	}
	return nil
}

// stage records obj as ekey's newest staged state. mu must be held.
func (kl *keyLock) stage(ekey []byte, obj *version.Object, hash uint64) *stagedObject {
	st := &stagedObject{ekey: ekey, obj: obj, hash: hash, done: make(chan struct{})}
	for i := range kl.staged {
		if bytes.Equal(kl.staged[i].ekey, ekey) {
			kl.staged[i] = st
			return st
		}
	}
	kl.staged = append(kl.staged, st)
	return st
}

// unstage forgets st if it is still its key's newest staged state (a later
// writer may have staged a newer one). mu must be held.
func (kl *keyLock) unstage(st *stagedObject) {
	for i := range kl.staged {
		if kl.staged[i] == st {
			kl.staged = slices.Delete(kl.staged, i, i+1)
			return
		}
	}
}

var keyLockPool = sync.Pool{New: func() any { return new(keyLock) }}

func newKeyLocks() *keyLocks {
	l := &keyLocks{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].m = make(map[uint64]*keyLock)
	}
	return l
}

func (l *keyLocks) hash(key []byte) uint64 { return maphash.Bytes(l.seed, key) }

func (l *keyLocks) lockHash(h uint64) *keyLock {
	kl := l.ref(h)
	kl.mu.Lock()
	return kl
}

// ref takes a reference to the lock of hash h (making it if needed),
// without locking it.
func (l *keyLocks) ref(h uint64) *keyLock {
	sh := &l.shards[h%keyLockShards]
	sh.mu.Lock()
	kl := sh.m[h]
	if kl == nil {
		kl = keyLockPool.Get().(*keyLock)
		sh.m[h] = kl
	}
	kl.refs++
	sh.mu.Unlock()
	return kl
}

// release drops one reference to kl (its mutex already unlocked).
func (l *keyLocks) release(h uint64, kl *keyLock) {
	sh := &l.shards[h%keyLockShards]
	sh.mu.Lock()
	kl.refs--
	if kl.refs == 0 {
		delete(sh.m, h)
		clear(kl.staged) // keep the slice for the lock's next user, not the objects
		kl.staged = kl.staged[:0]
		keyLockPool.Put(kl)
	}
	sh.mu.Unlock()
}

// heldLocks is the locks of a set of keys, taken by lockAll. Its methods
// are meant to be paired with a deferred unlock, so that a panic (in a
// caller's hook, say) cannot leave a key locked: unlock releases whatever
// is still held and is a no-op once everything is released.
type heldLocks struct {
	l      *keyLocks
	hashes []uint64 // sorted, distinct
	locks  []*keyLock
	locked bool // the mutexes are held
	refs   bool // the references are held
}

// sortedHashes returns the distinct lock hashes of keys, in the order
// locks are taken.
func (l *keyLocks) sortedHashes(keys [][]byte) []uint64 {
	hashes := make([]uint64, len(keys))
	for i, k := range keys {
		hashes[i] = l.hash(k)
	}
	slices.Sort(hashes)
	return slices.Compact(hashes)
}

// lockAll locks every key of keys (repeats allowed). Each lock is taken
// once, in hash order, so that two callers holding several keys cannot
// deadlock.
func (l *keyLocks) lockAll(keys [][]byte) *heldLocks {
	hashes := l.sortedHashes(keys)
	h := &heldLocks{l: l, hashes: hashes, locks: make([]*keyLock, 0, len(hashes))}
	h.locked, h.refs = true, true
	for _, x := range hashes {
		h.locks = append(h.locks, l.lockHash(x))
	}
	return h
}

// tryLockAll is lockAll taking only the locks that are free now: a key
// whose lock another holder has is left out (holds reports which keys
// were taken). It never waits, so a caller that holds locks of its own
// (a Prepared write awaiting its peers) cannot deadlock with it.
func (l *keyLocks) tryLockAll(keys [][]byte) *heldLocks {
	hashes := l.sortedHashes(keys)
	h := &heldLocks{l: l, hashes: make([]uint64, 0, len(hashes)), locks: make([]*keyLock, 0, len(hashes))}
	h.locked, h.refs = true, true
	for _, x := range hashes {
		kl := l.ref(x)
		if !kl.mu.TryLock() {
			l.release(x, kl)
			continue
		}
		h.hashes = append(h.hashes, x)
		h.locks = append(h.locks, kl)
	}
	return h
}

// holds reports whether h holds key's lock.
func (h *heldLocks) holds(key []byte) bool {
	_, found := slices.BinarySearch(h.hashes, h.l.hash(key))
	return found
}

// unlock releases every lock and reference still held.
func (h *heldLocks) unlock() {
	if h.locked {
		h.locked = false
		for _, kl := range h.locks {
			kl.mu.Unlock()
		}
	}
	if h.refs {
		h.refs = false
		for i, kl := range h.locks {
			h.l.release(h.hashes[i], kl)
		}
	}
}

// commitStaged is how a read-modify-write ends once its engine batch is
// staged: it records each key's new state (ekeys[i] -> objs[i]; the last
// entry for a key wins) where the key's next writer will find it, unlocks
// the keys (keeping a reference to their locks) so that the next writer
// need not wait for this write's fsync, waits for the commit, then forgets
// the states it recorded and releases the locks. It returns commit's error.
// hashes (nil, or one per entry) are the ObjectHash of each new state.
// Should commit panic, the recorded states are still forgotten (marked
// failed for those waiting on them) and the locks released.
func (h *heldLocks) commitStaged(commit func() error, ekeys [][]byte, objs []*version.Object, hashes []uint64) (err error) {
	staged := make([]*stagedObject, len(ekeys))
	for i := range ekeys {
		if objs[i] != nil {
			var hash uint64
			if hashes != nil {
				hash = hashes[i]
			}
			staged[i] = h.locks[i0(h, ekeys[i])].stage(ekeys[i], objs[i], hash)
		}
	}
	for _, kl := range h.locks {
		kl.mu.Unlock()
	}
	h.locked = false
	finished := false
	defer func() {
		if !finished {
			err = errCommitAbandoned
		}
		for _, st := range staged {
			if st != nil {
				st.err = err
				close(st.done)
			}
		}
		for _, kl := range h.locks {
			kl.mu.Lock()
		}
		h.locked = true
		for i, st := range staged {
			if st != nil {
				h.locks[i0(h, ekeys[i])].unstage(st)
			}
		}
		h.unlock()
	}()
	err = commit()
	finished = true
	return err
}

// errCommitAbandoned is the error of a staged write whose commit panicked.
var errCommitAbandoned = errors.New("replica: engine commit abandoned")

// i0 is the index in h of the lock of an engine key (its user key is what
// was hashed).
func i0(h *heldLocks, ekey []byte) int {
	i, _ := slices.BinarySearch(h.hashes, h.l.hash(ekey[9:]))
	return i
}
