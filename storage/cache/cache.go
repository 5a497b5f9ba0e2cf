// Package cache implements the block cache shared by all tables of one
// engine. It maps (fileNum, offset) — a table file and the offset of a block
// in it — to the block's decoded bytes, bounded by a byte budget.
//
// # Design
//
// The cache is split into shards (a power of two, at most 64) chosen by a
// hash of the key, each with its own lock, map and replacement state, so
// readers of different blocks rarely touch the same lock. The capacity is
// divided among the shards; each shard enforces its share, so the total never
// exceeds the capacity. A value larger than its shard's share is not cached.
//
// Replacement is CLOCK (second chance) rather than strict LRU. A hit only
// needs a read lock and sets a "referenced" flag on the entry (skipping the
// store when the flag is already set, so hot entries' cache lines stay
// shared between cores); no list surgery happens on the read path, so
// concurrent hits on one shard do not serialize. Eviction sweeps a hand
// around the shard's ring: referenced entries lose their flag and survive
// one more lap, unreferenced ones are evicted. This approximates LRU: an
// entry read since the hand last passed it survives the next eviction.
//
// # Ownership
//
// After Set, the value belongs to the cache and to every reader that Get
// returns it to; nobody may modify it. Eviction merely drops the cache's
// reference: Go's garbage collector keeps the bytes alive for as long as a
// reader still holds them, so there is no reference counting or release
// call, and a reader may use a returned block for as long as it likes.
//
// A nil *Cache is valid and caches nothing, so callers need no special case
// for a disabled cache.
package cache

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"unsafe"
)

// EntryOverhead is the bytes charged per entry on top of len(value): the
// entry struct plus an estimate of its map slot. It keeps a cache full of
// tiny values from growing far beyond its budget in real memory.
const EntryOverhead = int64(unsafe.Sizeof(entry{})) + 32

const (
	maxShards = 64
	// minShardCapacity keeps shards big enough to hold a useful number of
	// blocks: with a small capacity, fewer shards beat many tiny ones that
	// could each hold only a block or two (and would reject large blocks).
	minShardCapacity = 1 << 20
)

// Metrics is a snapshot of the cache's counters.
type Metrics struct {
	// Hits and Misses count Get calls since New.
	Hits, Misses int64
	// Size is the current total charge of the cached entries; it never
	// exceeds Capacity.
	Size, Capacity int64
	// Count is the number of cached entries.
	Count int64
}

// HitRate returns Hits / (Hits + Misses), or 0 before any Get.
func (m Metrics) HitRate() float64 {
	total := m.Hits + m.Misses
	if total == 0 {
		return 0
	}
	return float64(m.Hits) / float64(total)
}

// Cache is a sharded, byte-bounded block cache. It is safe for concurrent use.
type Cache struct {
	shards   []shard
	mask     uint64
	capacity int64
}

type key struct {
	fileNum, offset uint64
}

// entry is a cached block. It sits on two intrusive doubly-linked rings: the
// shard's CLOCK ring, and the ring of entries of the same file, which lets
// EvictFile drop a table's blocks without scanning the whole shard.
type entry struct {
	key    key
	value  []byte
	charge int64
	// referenced is set by hits (under the read lock) and cleared by the
	// clock hand (under the write lock).
	referenced atomic.Bool

	next, prev         *entry // clock ring
	fileNext, filePrev *entry // per-file ring
}

type shard struct {
	shardState
	// Pad to a multiple of 64 bytes so neighbouring shards' locks and
	// counters, which every Get writes, do not share cache lines.
	_ [(64 - unsafe.Sizeof(shardState{})%64) % 64]byte
}

type shardState struct {
	mu       sync.RWMutex
	entries  map[key]*entry
	files    map[uint64]*entry // fileNum -> some entry of that file's ring
	hand     *entry            // next entry the clock looks at; nil if empty
	size     int64
	capacity int64

	hits, misses atomic.Int64
}

// New returns a cache holding at most capacity bytes of charge. A capacity
// of zero or less yields a cache that stores nothing.
func New(capacity int64) *Cache {
	if capacity < 0 {
		capacity = 0
	}
	n := maxShards
	for n > 1 && capacity/int64(n) < minShardCapacity {
		n /= 2
	}
	c := &Cache{
		shards:   make([]shard, n),
		mask:     uint64(n - 1),
		capacity: capacity,
	}
	// Hand out the remainder one byte at a time so the shares sum to
	// exactly capacity.
	per, rem := capacity/int64(n), capacity%int64(n)
	for i := range c.shards {
		s := &c.shards[i]
		s.capacity = per
		if int64(i) < rem {
			s.capacity++
		}
		s.entries = make(map[key]*entry)
		s.files = make(map[uint64]*entry)
	}
	return c
}

// shardFor picks the shard of a key. Blocks of one file sit at varied
// offsets and different files share offsets, so both halves are mixed
// (a 64-bit finalizer) before taking the top bits.
func (c *Cache) shardFor(k key) *shard {
	h := k.fileNum*0x9e3779b97f4a7c15 ^ bits.RotateLeft64(k.offset, 32)
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return &c.shards[h&c.mask]
}

// Get returns the cached block at (fileNum, offset). The returned slice must
// not be modified. It does not allocate.
func (c *Cache) Get(fileNum, offset uint64) ([]byte, bool) {
	if c == nil {
		return nil, false
	}
	k := key{fileNum, offset}
	s := c.shardFor(k)
	s.mu.RLock()
	e := s.entries[k]
	if e == nil {
		s.mu.RUnlock()
		s.misses.Add(1)
		return nil, false
	}
	if !e.referenced.Load() {
		e.referenced.Store(true)
	}
	v := e.value
	s.mu.RUnlock()
	s.hits.Add(1)
	return v, true
}

// Set caches value as the block at (fileNum, offset), replacing any previous
// value, and evicts other entries as needed to stay within capacity. The
// cache takes ownership of value; the caller must not modify it afterwards.
// A value whose charge exceeds the shard's share of the capacity is not
// cached (and any older value for the key is dropped).
func (c *Cache) Set(fileNum, offset uint64, value []byte) {
	if c == nil {
		return
	}
	k := key{fileNum, offset}
	charge := int64(len(value)) + EntryOverhead
	s := c.shardFor(k)
	s.mu.Lock()
	defer s.mu.Unlock()

	if old := s.entries[k]; old != nil {
		s.remove(old)
	}
	if charge > s.capacity {
		return
	}
	for s.size+charge > s.capacity {
		s.evictOne()
	}
	e := &entry{key: k, value: value, charge: charge}
	s.entries[k] = e
	s.size += charge
	s.insertRing(e)
	s.insertFile(e)
}

// EvictFile drops every cached block of fileNum, typically because the table
// was deleted. Readers that already hold one of its blocks keep it.
func (c *Cache) EvictFile(fileNum uint64) {
	if c == nil {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		// Peek under the read lock first: most shards hold nothing of a
		// given file, and taking the write lock on all of them would stall
		// their readers for nothing.
		s.mu.RLock()
		_, ok := s.files[fileNum]
		s.mu.RUnlock()
		if !ok {
			continue
		}
		s.mu.Lock()
		for head := s.files[fileNum]; head != nil; head = s.files[fileNum] {
			s.remove(head)
		}
		s.mu.Unlock()
	}
}

// Metrics returns a snapshot of the counters. The per-shard values are read
// one shard at a time, so under concurrent use the snapshot is approximate,
// but Size never exceeds Capacity.
func (c *Cache) Metrics() Metrics {
	if c == nil {
		return Metrics{}
	}
	m := Metrics{Capacity: c.capacity}
	for i := range c.shards {
		s := &c.shards[i]
		m.Hits += s.hits.Load()
		m.Misses += s.misses.Load()
		s.mu.RLock()
		m.Size += s.size
		m.Count += int64(len(s.entries))
		s.mu.RUnlock()
	}
	return m
}

// evictOne advances the clock hand until it finds an unreferenced entry and
// evicts it, clearing the referenced flag of every entry it passes. It
// terminates within two laps because the first lap clears all flags. The
// caller holds s.mu and guarantees the ring is not empty.
func (s *shardState) evictOne() {
	for {
		e := s.hand
		s.hand = e.next
		if e.referenced.Load() {
			e.referenced.Store(false)
			continue
		}
		s.remove(e)
		return
	}
}

// remove unlinks e from the map and both rings. The caller holds s.mu.
func (s *shardState) remove(e *entry) {
	delete(s.entries, e.key)
	s.size -= e.charge

	if e.next == e {
		s.hand = nil
	} else {
		if s.hand == e {
			s.hand = e.next
		}
		e.prev.next = e.next
		e.next.prev = e.prev
	}
	e.next, e.prev = nil, nil

	f := e.key.fileNum
	if e.fileNext == e {
		delete(s.files, f)
	} else {
		if s.files[f] == e {
			s.files[f] = e.fileNext
		}
		e.filePrev.fileNext = e.fileNext
		e.fileNext.filePrev = e.filePrev
	}
	e.fileNext, e.filePrev = nil, nil
	// Drop the reference to the value now, not when the entry itself is
	// collected, in case something still points at the entry.
	e.value = nil
}

// insertRing puts e just behind the hand, so it is the last entry the clock
// reaches: a new block gets a full lap to be read before it can be evicted.
func (s *shardState) insertRing(e *entry) {
	if s.hand == nil {
		e.next, e.prev = e, e
		s.hand = e
		return
	}
	h := s.hand
	e.next, e.prev = h, h.prev
	h.prev.next = e
	h.prev = e
}

func (s *shardState) insertFile(e *entry) {
	head := s.files[e.key.fileNum]
	if head == nil {
		e.fileNext, e.filePrev = e, e
		s.files[e.key.fileNum] = e
		return
	}
	e.fileNext, e.filePrev = head, head.filePrev
	head.filePrev.fileNext = e
	head.filePrev = e
}
