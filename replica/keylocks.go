package replica

import (
	"hash/maphash"
	"slices"
	"sync"
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
// waits for it.
type keyLock struct {
	mu   sync.Mutex
	refs int // holders and waiters; guarded by the shard's mutex
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
func (l *keyLocks) lock(key []byte) *keyLock { return l.lockHash(maphash.Bytes(l.seed, key)) }

func (l *keyLocks) unlock(key []byte, kl *keyLock) { l.unlockHash(maphash.Bytes(l.seed, key), kl) }

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

func (l *keyLocks) unlockHash(h uint64, kl *keyLock) {
	kl.mu.Unlock()
	sh := &l.shards[h%keyLockShards]
	sh.mu.Lock()
	kl.refs--
	if kl.refs == 0 {
		delete(sh.m, h)
		keyLockPool.Put(kl)
	}
	sh.mu.Unlock()
}

// lockAll locks every key of keys (repeats allowed). Each lock is taken
// once, in hash order, so that two callers holding several keys cannot
// deadlock (every other path holds one key at a time). It returns the
// function that releases them all.
func (l *keyLocks) lockAll(keys [][]byte) (unlock func()) {
	hashes := make([]uint64, len(keys))
	for i, k := range keys {
		hashes[i] = maphash.Bytes(l.seed, k)
	}
	slices.Sort(hashes)
	hashes = slices.Compact(hashes)
	held := make([]*keyLock, len(hashes))
	for i, h := range hashes {
		held[i] = l.lockHash(h)
	}
	return func() {
		for i, h := range hashes {
			l.unlockHash(h, held[i])
		}
	}
}
