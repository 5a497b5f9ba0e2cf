package replica

import (
	"bytes"
	"hash/maphash"
	"slices"
	"sync"

	"github.com/ringkv/ringkv/version"
)

// keyLocks serialises the read-modify-write cycles of a key. Two writes
// wait for each other only when they are on the same key: a write holds its
// lock until its commit-log write (and, in batch sync mode, its fsync) is
// done, so locks shared by unrelated keys (stripes) would queue a write
// behind other keys' fsyncs, and a batch holding many keys behind many.
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
	staged []stagedObject
}

type stagedObject struct {
	ekey []byte
	obj  *version.Object
}

// stagedFor returns the object staged for ekey, or nil. mu must be held.
func (kl *keyLock) stagedFor(ekey []byte) *version.Object {
	for _, st := range kl.staged {
		if bytes.Equal(st.ekey, ekey) {
			return st.obj
		}
	}
	return nil
}

// stage records obj as ekey's newest staged state. mu must be held.
func (kl *keyLock) stage(ekey []byte, obj *version.Object) {
	for i := range kl.staged {
		if bytes.Equal(kl.staged[i].ekey, ekey) {
			kl.staged[i].obj = obj
			return
		}
	}
	kl.staged = append(kl.staged, stagedObject{ekey: ekey, obj: obj})
}

// unstage forgets ekey's staged state if it is still obj (a later writer
// may have staged a newer one). mu must be held.
func (kl *keyLock) unstage(ekey []byte, obj *version.Object) {
	for i := range kl.staged {
		if bytes.Equal(kl.staged[i].ekey, ekey) {
			if kl.staged[i].obj == obj {
				kl.staged = slices.Delete(kl.staged, i, i+1)
			}
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

// lock blocks until the caller holds key's lock. Every lock must be
// released with unlock(key, the returned lock).
func (l *keyLocks) lock(key []byte) *keyLock { return l.lockHash(l.hash(key)) }

func (l *keyLocks) unlock(key []byte, kl *keyLock) { kl.mu.Unlock(); l.release(l.hash(key), kl) }

func (l *keyLocks) hash(key []byte) uint64 { return maphash.Bytes(l.seed, key) }

func (l *keyLocks) lockHash(h uint64) *keyLock {
	sh := &l.shards[h%keyLockShards]
	sh.mu.Lock()
	kl := sh.m[h]
	if kl == nil {
		kl = keyLockPool.Get().(*keyLock)
		sh.m[h] = kl
	}
	kl.refs++
	sh.mu.Unlock()
	kl.mu.Lock()
	return kl
}

// release drops one reference to kl (its mutex already unlocked).
func (l *keyLocks) release(h uint64, kl *keyLock) {
	sh := &l.shards[h%keyLockShards]
	sh.mu.Lock()
	kl.refs--
	if kl.refs == 0 {
		delete(sh.m, h)
		kl.staged = nil
		keyLockPool.Put(kl)
	}
	sh.mu.Unlock()
}

// heldLocks is the locks of a set of keys, taken by lockAll.
type heldLocks struct {
	l      *keyLocks
	hashes []uint64 // sorted, distinct
	locks  []*keyLock
}

// lockAll locks every key of keys (repeats allowed). Each lock is taken
// once, in hash order, so that two callers holding several keys cannot
// deadlock.
func (l *keyLocks) lockAll(keys [][]byte) *heldLocks {
	hashes := make([]uint64, len(keys))
	for i, k := range keys {
		hashes[i] = l.hash(k)
	}
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	h := &heldLocks{l: l, hashes: hashes, locks: make([]*keyLock, len(hashes))}
	for i, x := range hashes {
		h.locks[i] = l.lockHash(x)
	}
	return h
}

// of returns the held lock of key.
func (h *heldLocks) of(key []byte) *keyLock {
	i, _ := slices.BinarySearch(h.hashes, h.l.hash(key))
	return h.locks[i]
}

// unlock releases every lock.
func (h *heldLocks) unlock() {
	for i, kl := range h.locks {
		kl.mu.Unlock()
		h.l.release(h.hashes[i], kl)
	}
}

// commitStaged is how a read-modify-write ends once its engine batch is
// staged: it records each key's new state (ekeys[i] -> objs[i]; the last
// entry for a key wins) where the key's next writer will find it, unlocks
// the keys (keeping a reference to their locks) so that the next writer
// need not wait for this write's fsync, waits for the commit, then forgets
// the states it recorded and releases the locks. It returns commit's error.
func (h *heldLocks) commitStaged(commit func() error, ekeys [][]byte, objs []*version.Object) error {
	for i := range ekeys {
		if objs[i] != nil {
			h.locks[i0(h, ekeys[i])].stage(ekeys[i], objs[i])
		}
	}
	for _, kl := range h.locks {
		kl.mu.Unlock()
	}
	err := commit()
	for _, kl := range h.locks {
		kl.mu.Lock()
	}
	for i := range ekeys {
		if objs[i] != nil {
			h.locks[i0(h, ekeys[i])].unstage(ekeys[i], objs[i])
		}
	}
	for i, kl := range h.locks {
		kl.mu.Unlock()
		h.l.release(h.hashes[i], kl)
	}
	return err
}

// i0 is the index in h of the lock of an engine key (its user key is what
// was hashed).
func i0(h *heldLocks, ekey []byte) int {
	i, _ := slices.BinarySearch(h.hashes, h.l.hash(ekey[9:]))
	return i
}
