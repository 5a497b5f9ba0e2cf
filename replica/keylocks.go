package replica

import (
	"bytes"
	"hash/maphash"
	"slices"
	"sync"
)

// keyLocks serialises the read-modify-write cycles of a key. Two writes
// wait for each other only when they are on the same key: a write holds its
// lock until its commit-log write (and, in batch sync mode, its fsync) is
// done, so locks shared by unrelated keys (stripes) would queue a write
// behind other keys' fsyncs, and a batch holding many keys behind many.
type keyLocks struct {
	seed   maphash.Seed
	shards [keyLockShards]struct {
		mu sync.Mutex
		m  map[string]*keyLock
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
		l.shards[i].m = make(map[string]*keyLock)
	}
	return l
}

// lock blocks until the caller holds key's lock. Every lock must be
// released with unlock(key, the returned lock).
func (l *keyLocks) lock(key []byte) *keyLock {
	sh := &l.shards[maphash.Bytes(l.seed, key)%keyLockShards]
	sh.mu.Lock()
	kl := sh.m[string(key)]
	if kl == nil {
		kl = keyLockPool.Get().(*keyLock)
		sh.m[string(key)] = kl
	}
	kl.refs++
	sh.mu.Unlock()
	kl.mu.Lock()
	return kl
}

func (l *keyLocks) unlock(key []byte, kl *keyLock) {
	kl.mu.Unlock()
	sh := &l.shards[maphash.Bytes(l.seed, key)%keyLockShards]
	sh.mu.Lock()
	kl.refs--
	if kl.refs == 0 {
		delete(sh.m, string(key))
		keyLockPool.Put(kl)
	}
	sh.mu.Unlock()
}

// lockAll locks every key of keys (repeats allowed), one at a time in key
// order, so that two callers holding several keys cannot deadlock (every
// other path holds one key at a time). It returns the function that
// releases them all.
func (l *keyLocks) lockAll(keys [][]byte) (unlock func()) {
	order := slices.Clone(keys)
	slices.SortFunc(order, bytes.Compare)
	order = slices.CompactFunc(order, bytes.Equal)
	held := make([]*keyLock, len(order))
	for i, k := range order {
		held[i] = l.lock(k)
	}
	return func() {
		for i, k := range order {
			l.unlock(k, held[i])
		}
	}
}
