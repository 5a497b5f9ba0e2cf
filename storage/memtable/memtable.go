// Package memtable is the storage engine's in-memory write buffer: a skiplist
// of internal keys (see package base) whose nodes, keys and values all live in
// one byte arena allocated up front.
//
// # Why an arena
//
// Every node, key and value is carved out of a single []byte whose size is
// fixed by New, and nodes point at each other with uint32 offsets rather than
// Go pointers. Inserting therefore does no Go heap allocation, the garbage
// collector never scans the memtable (the arena holds no pointers), and the
// whole structure is released at once when the engine drops the memtable
// after flushing it, or emptied at once by Reset for the engine's next
// memtable. Memory is never reused or compacted inside an arena while the
// memtable lives: an entry, once added, stays at the same address until
// Reset, which is why Get and iterators can hand out slices that alias the
// arena without copying (and why Reset is only for a memtable nothing
// references any longer).
//
// When an entry does not fit, Add returns ErrArenaFull and the engine rotates
// to a fresh memtable. An entry that could not fit even in an empty memtable
// of this size gets ErrEntryTooLarge instead, so that rotation does not loop;
// ArenaSizeFor tells the engine how large a dedicated memtable must be.
//
// # Concurrency contract
//
//   - Writers: exactly one goroutine may call Add at a time. The memtable does
//     not lock; the engine already serializes writes under its commit lock, and
//     a single writer lets the insert path use plain loads of its own state,
//     a non-atomic RNG and no CAS retry loops.
//   - Readers: Get, NewIter and all iterator methods, Len, Empty and
//     ApproximateSize may run from any number of goroutines concurrently with
//     each other and with the single writer, without locks.
//
// This works because a node is written completely (header, tower, key,
// value) before it becomes reachable, and it is published by atomic stores
// of its predecessors' next pointers from level 0 upwards. A reader that
// atomically loads a next pointer and finds the new node is therefore
// guaranteed (by the Go memory model's synchronized-before edge on atomics)
// to see all of its bytes. Publishing level 0 first means that once a node
// is in any upper-level list it is already in the base list, so a reader
// descending the towers can never skip past it into inconsistency; at worst
// a reader does not yet see an entry being inserted, which the engine
// tolerates because it filters by snapshot sequence number anyway.
//
// An individual iterator is not safe for concurrent use by several
// goroutines; create one iterator per goroutine.
package memtable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"math/rand/v2"
	"sync/atomic"
	"unsafe"

	"github.com/ringkv/ringkv/storage/base"
)

// Errors returned by Add.
var (
	// ErrArenaFull means the entry does not fit in the space left in the
	// arena. The memtable is unchanged; the engine should rotate to a new
	// memtable and retry there.
	ErrArenaFull = errors.New("ringkv/memtable: arena full")
	// ErrEntryTooLarge means the entry would not fit even in an empty
	// memtable of this arena size, so rotating to another memtable of the
	// same size cannot help. Size a dedicated memtable with ArenaSizeFor.
	ErrEntryTooLarge = errors.New("ringkv/memtable: entry larger than memtable arena")
	// ErrDuplicateKey means an entry with the same internal key (user key,
	// sequence number and kind) is already present. The engine assigns unique
	// sequence numbers so this indicates a bug; the memtable is unchanged and
	// the existing entry wins.
	ErrDuplicateKey = errors.New("ringkv/memtable: internal key already present")
)

const (
	// maxHeight bounds tower height. With p = 1/4 a list of 4^15 (~10^9)
	// entries is still well balanced, far more than any memtable holds, and
	// the head node's tower costs only 4*maxHeight bytes.
	maxHeight = 16

	// Node layout, 4-byte aligned so tower slots can be accessed atomically:
	//
	//	+0  keyOff uint32  absolute arena offset of the internal key
	//	+4  keyLen uint32  internal key length (user key + 8-byte trailer)
	//	+8  valLen uint32  value length; the value follows the key
	//	+12 tower  [height]uint32 next-node offsets, level 0 first
	//	    key bytes, then value bytes
	//
	// The header and tower come first so a comparison touches the header, then
	// the key right after the tower, usually within one or two cache lines.
	nodeHeaderSize = 12
	towerSlotSize  = 4
	nodeAlign      = 4

	// Offset 0 is the nil node, so the head node starts just past it.
	headOffset = nodeAlign
	headSize   = nodeHeaderSize + maxHeight*towerSlotSize
	// minArenaSize holds just the head node: an empty memtable.
	minArenaSize = headOffset + headSize
)

// MemTable is an arena-backed skiplist of internal keys. See the package
// documentation for the concurrency contract: one writer, many readers.
type MemTable struct {
	arena []byte
	head  uint32
	// capacity is the number of bytes an empty memtable of this size offers
	// to entries; an entry whose worst-case size exceeds it can never fit.
	capacity uint64

	// used is the arena high-water mark. Only the writer changes it, but it
	// is atomic because ApproximateSize may be called from any goroutine.
	used atomic.Uint64
	// height is the number of levels currently in use, so searches need not
	// start at maxHeight. It only grows.
	height atomic.Uint32
	count  atomic.Int64

	// rng is the writer's private tower-height generator; it needs no
	// synchronisation because there is only one writer.
	rng uint64

	// index makes point lookups O(1): an open-addressing hash table (linear
	// probing) from user key to the node of its newest entry. A skiplist
	// descent costs a cache miss per node visited, and the replica layer
	// looks every key up before writing it. Slots are written by the writer
	// only, after the node is published, and read atomically. When the
	// table reaches its load limit, new keys are no longer indexed and
	// indexFull sends lookups of unindexed keys to the skiplist.
	// A slot holds a 32-bit tag from the key's hash in its high half and the
	// node offset in its low half, so probing past other keys compares tags
	// in the table instead of loading their keys from the arena.
	index     []atomic.Uint64
	indexMask uint32
	indexed   int // distinct keys indexed (writer only)
	indexMax  int
	indexFull atomic.Bool
	seed      maphash.Seed
	// filter answers most lookups of keys the memtable does not hold, as
	// most of a large key space's are, without probing the index: the
	// index is 8 bytes a slot over millions of slots, so a probe is a
	// cache (and TLB) miss, where the filter is a sixteenth of its size
	// and stays in the caches. It is a blocked Bloom filter over the
	// user key of every entry (indexed or not): one 64-bit word per key,
	// three bits set in it, about 1% false positives at a typical
	// memtable's fill. Add sets a key's bits before it publishes the
	// entry, so a key a reader may find is never reported absent.
	filter      []atomic.Uint64
	filterShift uint // 64 - log2(len(filter))

	// fingers let Add skip most of the skiplist descent when keys carry a
	// uniformly distributed 8-byte field (a hash or a ring token) at
	// fingerOff; see UseFingers. A key's bucket is the top bits of that
	// field. For each of the fingerLevels lowest levels there is a row of
	// fingerSlots fingers: row L's finger of bucket b is a node in level L
	// that sorts before bucket b, the last such node when the finger is up
	// to date, an earlier one when inserts have passed it by, 0 when none
	// is known yet. Writer only: readers never look at them.
	fingers     []uint32
	fingerSlots uint32
	fingerOff   int
	fingerShift uint
	fingerHits  int // inserts placed from a finger (writer only; for tests)
}

// minEntryGuess is the arena size of a small entry, used to size the index.
const minEntryGuess = 64

// New returns an empty memtable whose arena holds arenaSize bytes in total,
// including a small fixed overhead for the list head. Sizes below that
// overhead are rounded up. New panics if arenaSize is negative or does not
// fit the 32-bit node offsets.
func New(arenaSize int) *MemTable {
	if arenaSize < 0 || uint64(arenaSize) > math.MaxUint32 {
		panic(fmt.Sprintf("memtable: arena size %d out of range", arenaSize))
	}
	if arenaSize < minArenaSize {
		arenaSize = minArenaSize
	}
	// Allocate as []uint64 so the base is 8-byte aligned; the atomic tower
	// accesses need (at least) 4-byte alignment, which a []byte does not
	// promise.
	words := make([]uint64, (arenaSize+7)/8)
	arena := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), arenaSize)
	adviseHugePages(memoryOf(arena))

	m := &MemTable{arena: arena, rng: rand.Uint64()}
	m.used.Store(headOffset)
	head, ok := m.alloc(headSize)
	if !ok {
		panic("memtable: arena cannot hold head node") // excluded above
	}
	// The head has an empty key; it is never compared, but keeping its
	// header well-formed makes keyOf safe on it.
	m.putHeader(head, head+headSize, 0, 0)
	m.head = head
	m.height.Store(1)
	m.capacity = uint64(arenaSize) - m.used.Load()
	return m
}

// Reset empties the memtable for reuse: its arena, index, filter and
// fingers stay allocated, so a new memtable costs no allocation, no zeroing
// of the arena and no page faults (a fresh arena of tens of MiB costs all
// three, on the writer that rotates). The arena itself is not cleared: a
// node is written completely before it is reachable, and only the head's
// tower is read before being written. The caller must make sure nothing
// uses the memtable any longer: no writer, no reader, no iterator, and no
// slice that Get or an iterator handed out (they alias the arena, which the
// next Adds overwrite).
func (m *MemTable) Reset() {
	clear(m.arena[:minArenaSize])
	m.used.Store(headOffset)
	head, _ := m.alloc(headSize) // fits: New checked
	m.putHeader(head, head+headSize, 0, 0)
	m.head = head
	m.height.Store(1)
	m.count.Store(0)
	if m.index != nil {
		clear(m.index)
		clear(m.filter)
		m.indexed = 0
		m.indexFull.Store(false)
	}
	clear(m.fingers)
	m.fingerHits = 0
}

// Release withdraws what New, NewIndexed and UseFingers asked of the
// kernel for the memtable's memory (huge pages, on Linux), for a memtable
// that will not be used again and is left to the garbage collector. It
// changes no content: a memtable still in use only loses speed.
func (m *MemTable) Release() {
	withdrawHugePages(memoryOf(m.arena))
	withdrawHugePages(memoryOf(m.index))
	withdrawHugePages(memoryOf(m.fingers))
}

// memoryOf returns the address and size in bytes of s's elements, for
// adviseHugePages and withdrawHugePages.
func memoryOf[T any](s []T) (unsafe.Pointer, int) {
	var zero T
	return unsafe.Pointer(unsafe.SliceData(s)), len(s) * int(unsafe.Sizeof(zero))
}

// ArenaSize is the arena size the memtable was made with (New's arenaSize,
// rounded up to its minimum).
func (m *MemTable) ArenaSize() int { return len(m.arena) }

// NewIndexed is New plus a hash index for O(1) point lookups (see the
// index field). The index takes about arenaSize/8 more bytes and a hash
// probe per Add; it pays off where keys are read soon after they are
// written, as the replica layer does on every write.
func NewIndexed(arenaSize int) *MemTable {
	m := New(arenaSize)
	slots := 64
	for slots < len(m.arena)/minEntryGuess && slots < 1<<24 {
		slots <<= 1
	}
	m.index = make([]atomic.Uint64, slots)
	adviseHugePages(memoryOf(m.index))
	m.indexMask = uint32(slots - 1)
	m.indexMax = slots / 2
	m.seed = maphash.MakeSeed()
	words := slots / 16 // 4 filter bits per index slot
	m.filter = make([]atomic.Uint64, words)
	m.filterShift = uint(64 - bits.TrailingZeros(uint(words)))
	return m
}

// filterBits returns the filter word and the three bits in it of a key
// whose hash is h: the word from the top bits of h multiplied by an odd
// constant (which mix all of h's bits), the bits from three 6-bit fields
// of h's upper half.
func (m *MemTable) filterBits(h uint64) (word uint64, mask uint64) {
	return h * 0x9e3779b97f4a7c15 >> m.filterShift, 1<<(h>>32&63) | 1<<(h>>38&63) | 1<<(h>>44&63)
}

// keyHash is the hash the index and the filter use for userKey.
func (m *MemTable) keyHash(userKey []byte) uint64 { return maphash.Bytes(m.seed, userKey) }

// UseFingers speeds up Add for keys that hold a uniformly distributed 8-byte
// field, such as a hash or a ring token, starting at byte offset after a
// prefix that all keys share. Such keys land at random places in the list,
// and a descent from the head costs a cache miss per node visited. With
// fingers, Add finds a new entry's neighbours on each of its levels by
// walking that level from the last node before the key's bucket (a bucket
// is a narrow range of that field, a few entries when the memtable is
// full), and descends from the head only for the rare entries taller than
// fingerLevels and when no finger serves. Fingers are hints, checked before
// use: the order, the readers and every result are the same with or without
// them, and keys without such a field are only not faster. They take
// arena/32 bytes (a bucket per 512 arena bytes, four levels). Call
// UseFingers before the first Add.
func (m *MemTable) UseFingers(offset int) {
	if offset < 0 {
		panic(fmt.Sprintf("memtable: finger offset %d is negative", offset))
	}
	slots := 64
	for slots < len(m.arena)/512 && slots < 1<<22 {
		slots <<= 1
	}
	m.fingers = make([]uint32, fingerLevels*slots)
	adviseHugePages(memoryOf(m.fingers))
	m.fingerSlots = uint32(slots)
	m.fingerOff = offset
	m.fingerShift = uint(64 - bits.TrailingZeros(uint(slots)))
}

const (
	// fingerLevels is how many of the lowest levels have fingers: all but
	// one entry in 256 is no taller.
	fingerLevels = 4
	// maxFingerSteps bounds the walk from a finger on one level; past it
	// Add descends from the head instead.
	maxFingerSteps = 16
	// maxFingerSpan bounds how many buckets one insert re-points at the new
	// node on one level; fingers beyond stay behind, still valid.
	maxFingerSpan = 16
)

// bucket returns the finger bucket of userKey: the top bits of the 8 bytes
// at fingerOff, zero-padded when the key is shorter.
func (m *MemTable) bucket(userKey []byte) uint32 {
	var field [8]byte
	if m.fingerOff < len(userKey) {
		copy(field[:], userKey[m.fingerOff:])
	}
	return uint32(binary.BigEndian.Uint64(field[:]) >> m.fingerShift)
}

// fingerSearch finds the neighbours of (userKey, trailer) on levels
// 0..height-1 by walking each level from bucket b's finger. ok is false
// when a finger is missing, does not sort before the key (keys whose
// prefixes differ), or its walk gets too long; the caller then descends
// from the head. dup reports an entry with the same internal key.
func (m *MemTable) fingerSearch(b uint32, userKey []byte, trailer uint64, height int, prev, next *[maxHeight]uint32) (ok, dup bool) {
	if height > fingerLevels {
		return false, false
	}
	for level := range height {
		x := m.fingers[uint32(level)*m.fingerSlots+b]
		if x == 0 {
			return false, false
		}
		if c := m.compareAt(x, userKey, trailer); c >= 0 {
			return false, c == 0
		}
		var dup, ok bool
		prev[level], next[level], dup, ok = m.walk(x, level, userKey, trailer, 0, maxFingerSteps)
		if !ok || dup {
			return false, dup
		}
	}
	return true, false
}

// walk moves right along level from node x, which sorts before (userKey,
// trailer), to the last node that does: prev, and its successor next (0 at
// the end of the level). stop is a node known to sort after the key, met
// without a comparison (0 for none). steps bounds the moves (negative: no
// bound); ok is false when they run out. dup reports an entry with the
// same internal key.
func (m *MemTable) walk(x uint32, level int, userKey []byte, trailer uint64, stop uint32, steps int) (prev, next uint32, dup, ok bool) {
	for ; steps != 0; steps-- {
		nx := m.next(x, level).Load()
		if nx == 0 || nx == stop {
			return x, nx, false, true
		}
		c := m.compareAt(nx, userKey, trailer)
		if c < 0 {
			x = nx
			continue
		}
		return x, nx, c == 0, true
	}
	return 0, 0, false, false
}

// moveFingers records node nd, just added to bucket b with next[level] as
// its successor on each of its levels, as the finger of the buckets it now
// ends on that level: those after b up to the successor's bucket, which no
// node of that level sorts into between nd and its successor. A finger that
// is not moved stays valid, only further behind.
func (m *MemTable) moveFingers(b, nd uint32, height int, next *[maxHeight]uint32) {
	for level := range min(height, fingerLevels) {
		last := m.fingerSlots - 1
		if nx := next[level]; nx != 0 {
			k := m.keyOf(nx)
			last = m.bucket(k[:len(k)-base.TrailerLen])
			if last < b { // keys with different prefixes: no order to use
				continue
			}
		}
		row := m.fingers[uint32(level)*m.fingerSlots : uint32(level+1)*m.fingerSlots]
		for d := b + 1; d <= min(last, b+maxFingerSpan); d++ {
			row[d] = nd
		}
	}
}

// userKeyOf returns the user-key part of node nd's key and its trailer.
func (m *MemTable) userKeyOf(nd uint32) ([]byte, uint64) {
	k := m.keyOf(nd)
	n := len(k) - base.TrailerLen
	return k[:n], binary.LittleEndian.Uint64(k[n:])
}

// indexAdd records node nd (user key userKey, trailer) as its key's newest
// entry unless a newer one is indexed. Writer only, after publication.
func (m *MemTable) indexAdd(nd uint32, userKey []byte, trailer uint64, h uint64) {
	tag := h >> 32
	for i := uint32(h) & m.indexMask; ; i = (i + 1) & m.indexMask {
		cur := m.index[i].Load()
		if cur == 0 {
			if m.indexed >= m.indexMax {
				m.indexFull.Store(true)
				return
			}
			m.indexed++
			m.index[i].Store(tag<<32 | uint64(nd))
			return
		}
		if cur>>32 != tag {
			continue
		}
		if uk, t := m.userKeyOf(uint32(cur)); bytes.Equal(uk, userKey) {
			if trailer > t {
				m.index[i].Store(tag<<32 | uint64(nd))
			}
			return
		}
	}
}

// indexGet looks userKey up in the index. It returns the node of the newest
// entry (0 if the key is not in the memtable) with its trailer, and whether
// the answer is final; when it is not, the caller searches the skiplist.
func (m *MemTable) indexGet(userKey []byte) (nd uint32, trailer uint64, final bool) {
	if m.index == nil {
		return 0, 0, false
	}
	h := m.keyHash(userKey)
	if w, mask := m.filterBits(h); m.filter[w].Load()&mask != mask {
		return 0, 0, true // never added
	}
	tag := h >> 32
	for i := uint32(h) & m.indexMask; ; i = (i + 1) & m.indexMask {
		cur := m.index[i].Load()
		if cur == 0 {
			return 0, 0, !m.indexFull.Load()
		}
		if cur>>32 != tag {
			continue
		}
		if uk, t := m.userKeyOf(uint32(cur)); bytes.Equal(uk, userKey) {
			return uint32(cur), t, true
		}
	}
}

// entrySize is the worst-case number of arena bytes an entry takes: a
// maximum-height tower plus alignment padding.
func entrySize(keyLen, valueLen uint64) uint64 {
	return nodeHeaderSize + maxHeight*towerSlotSize + keyLen + base.TrailerLen + valueLen + nodeAlign - 1
}

// EntrySize returns an upper bound on the arena bytes Add may consume for a
// user key of keyLen bytes and a value of valueLen bytes. An entry for which
// EntrySize exceeds what an empty memtable offers gets ErrEntryTooLarge.
func (m *MemTable) EntrySize(keyLen, valueLen int) int {
	return int(entrySize(uint64(keyLen), uint64(valueLen)))
}

// ArenaSizeFor returns the smallest arenaSize for which New returns a
// memtable guaranteed to accept one entry with the given key and value
// lengths. The engine uses it to build a dedicated memtable for an entry
// too large for its normal memtable size.
func ArenaSizeFor(keyLen, valueLen int) int {
	return minArenaSize + int(entrySize(uint64(keyLen), uint64(valueLen)))
}

// alloc reserves size bytes, 4-byte aligned. Writer only.
func (m *MemTable) alloc(size uint64) (uint32, bool) {
	off := (m.used.Load() + nodeAlign - 1) &^ (nodeAlign - 1)
	end := off + size
	if end > uint64(len(m.arena)) {
		return 0, false
	}
	m.used.Store(end)
	return uint32(off), true
}

func (m *MemTable) putHeader(nd, keyOff, keyLen, valLen uint32) {
	h := m.arena[nd : nd+nodeHeaderSize]
	binary.LittleEndian.PutUint32(h[0:], keyOff)
	binary.LittleEndian.PutUint32(h[4:], keyLen)
	binary.LittleEndian.PutUint32(h[8:], valLen)
}

// next returns the tower slot of node nd at level. The header is written
// with plain stores before publication; tower slots are always accessed
// atomically because the writer updates them while readers traverse.
func (m *MemTable) next(nd uint32, level int) *atomic.Uint32 {
	p := &m.arena[nd+nodeHeaderSize+uint32(level)*towerSlotSize]
	return (*atomic.Uint32)(unsafe.Pointer(p))
}

// keyOf returns node nd's encoded internal key. The slice is capped so that
// a caller appending to it cannot overwrite the arena.
func (m *MemTable) keyOf(nd uint32) []byte {
	h := m.arena[nd : nd+nodeHeaderSize]
	ko := binary.LittleEndian.Uint32(h[0:])
	kl := binary.LittleEndian.Uint32(h[4:])
	return m.arena[ko : ko+kl : ko+kl]
}

// valueOf returns node nd's value, capped like keyOf.
func (m *MemTable) valueOf(nd uint32) []byte {
	h := m.arena[nd : nd+nodeHeaderSize]
	vo := binary.LittleEndian.Uint32(h[0:]) + binary.LittleEndian.Uint32(h[4:])
	vl := binary.LittleEndian.Uint32(h[8:])
	return m.arena[vo : vo+vl : vo+vl]
}

// compareAt orders node nd's key against (userKey, trailer) as base.Compare
// would, without building an encoded search key: user keys with
// bytes.Compare, then trailers as integers, descending.
func (m *MemTable) compareAt(nd uint32, userKey []byte, trailer uint64) int {
	k := m.keyOf(nd)
	n := len(k) - base.TrailerLen
	if c := bytes.Compare(k[:n], userKey); c != 0 {
		return c
	}
	t := binary.LittleEndian.Uint64(k[n:])
	switch {
	case t > trailer:
		return -1
	case t < trailer:
		return 1
	}
	return 0
}

// randomHeight draws a tower height with P(height > k) = 4^-k. One
// splitmix64 step yields 64 random bits; each pair of trailing zero bits is
// one more level.
func (m *MemTable) randomHeight() int {
	m.rng += 0x9e3779b97f4a7c15
	z := m.rng
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	h := 1 + bits.TrailingZeros64(z)/2
	if h > maxHeight {
		h = maxHeight
	}
	return h
}

// Add inserts an entry. It must not be called concurrently with another Add
// (see the package documentation); it may run concurrently with readers.
//
// It returns ErrArenaFull if the entry does not fit in the remaining space,
// ErrEntryTooLarge if it could not fit in an empty memtable of this size,
// and ErrDuplicateKey if the same internal key is already present. On any
// error the memtable is unchanged. Add copies userKey and value.
func (m *MemTable) Add(seq base.SeqNum, kind base.Kind, userKey, value []byte) error {
	if seq > base.SeqNumMax {
		return fmt.Errorf("ringkv/memtable: sequence number %d exceeds maximum", seq)
	}
	keyLen := uint64(len(userKey)) + base.TrailerLen
	valLen := uint64(len(value))
	if entrySize(uint64(len(userKey)), valLen) > m.capacity {
		return ErrEntryTooLarge
	}
	trailer := base.MakeTrailer(seq, kind)

	// Find, at every level the new node will be in, the last node before
	// the new key (prev) and the first node after it (next). Levels above
	// the current list height are empty: their splice is (head, nil), which
	// the zero values below encode once prev is filled in.
	var prev, next [maxHeight]uint32
	listHeight := int(m.height.Load())
	height := m.randomHeight()
	var bucket uint32
	viaFinger := false
	if m.fingers != nil {
		bucket = m.bucket(userKey)
		var dup bool
		viaFinger, dup = m.fingerSearch(bucket, userKey, trailer, height, &prev, &next)
		if dup {
			return ErrDuplicateKey
		}
		if viaFinger {
			m.fingerHits++
		}
	}
	if !viaFinger {
		x := m.head
		// stop is the node that ended the search on the level above; it is
		// known to sort after the key, so meeting it again below needs no
		// comparison.
		var stop uint32
		for level := listHeight - 1; level >= 0; level-- {
			var dup bool
			x, stop, dup, _ = m.walk(x, level, userKey, trailer, stop, -1)
			if dup {
				return ErrDuplicateKey
			}
			prev[level], next[level] = x, stop
		}
	}
	for level := listHeight; level < height; level++ {
		prev[level] = m.head
	}

	towerLen := uint64(height) * towerSlotSize
	nd, ok := m.alloc(nodeHeaderSize + towerLen + keyLen + valLen)
	if !ok {
		return ErrArenaFull
	}

	// Write the whole node before anything points at it.
	keyOff := nd + nodeHeaderSize + uint32(towerLen)
	m.putHeader(nd, keyOff, uint32(keyLen), uint32(valLen))
	k := m.arena[keyOff : uint64(keyOff)+keyLen]
	n := copy(k, userKey)
	binary.LittleEndian.PutUint64(k[n:], trailer)
	copy(m.arena[uint64(keyOff)+keyLen:uint64(keyOff)+keyLen+valLen], value)
	for level := 0; level < height; level++ {
		m.next(nd, level).Store(next[level])
	}

	// The key's filter bits go first: a reader that finds the node must
	// not have been told the key is absent.
	var h uint64
	if m.index != nil {
		h = m.keyHash(userKey)
		w, mask := m.filterBits(h)
		m.filter[w].Or(mask)
	}

	// Publish bottom-up: the atomic store into the predecessor's tower is
	// the release that makes the fully written node visible to readers.
	for level := 0; level < height; level++ {
		m.next(prev[level], level).Store(nd)
	}
	if height > listHeight {
		m.height.Store(uint32(height))
	}
	if m.fingers != nil {
		m.moveFingers(bucket, nd, height, &next)
	}
	if m.index != nil {
		m.indexAdd(nd, userKey, trailer, h)
	}
	m.count.Add(1)
	return nil
}

// seekGE returns the first node whose key is >= (userKey, trailer), or 0.
// It is one descent from the top of the list.
func (m *MemTable) seekGE(userKey []byte, trailer uint64) uint32 {
	x := m.head
	var stop uint32
	for level := int(m.height.Load()) - 1; level >= 0; level-- {
		for {
			nx := m.next(x, level).Load()
			if nx == 0 || nx == stop {
				stop = nx
				break
			}
			if m.compareAt(nx, userKey, trailer) < 0 {
				x = nx
				continue
			}
			stop = nx
			break
		}
	}
	return stop
}

// Get returns the newest entry for userKey whose sequence number is <= seq.
// found is false if there is none. For a tombstone it returns kind
// base.KindDelete and found == true; the caller interprets kinds.
//
// value aliases the arena: it stays valid and unchanged until Reset (the
// arena is not reused before), but the caller must not modify it.
func (m *MemTable) Get(userKey []byte, seq base.SeqNum) (value []byte, kind base.Kind, found bool) {
	if seq > base.SeqNumMax {
		seq = base.SeqNumMax
	}
	if nd, t, final := m.indexGet(userKey); final {
		if nd == 0 {
			return nil, 0, false
		}
		if base.SeqNum(t>>8) <= seq {
			return m.valueOf(nd), base.Kind(t & 0xff), true
		}
		// The newest entry is past the snapshot: an older one may be in it.
	}
	nd := m.seekGE(userKey, base.MakeTrailer(seq, base.KindMax))
	if nd == 0 {
		return nil, 0, false
	}
	k := m.keyOf(nd)
	n := len(k) - base.TrailerLen
	if !bytes.Equal(k[:n], userKey) {
		return nil, 0, false
	}
	return m.valueOf(nd), base.Kind(binary.LittleEndian.Uint64(k[n:]) & 0xff), true
}

// ApproximateSize returns the number of arena bytes in use, including the
// fixed head-node overhead.
func (m *MemTable) ApproximateSize() int { return int(m.used.Load()) }

// Len returns the number of entries.
func (m *MemTable) Len() int { return int(m.count.Load()) }

// Empty reports whether the memtable has no entries.
func (m *MemTable) Empty() bool { return m.count.Load() == 0 }

// NewIter returns an iterator over the memtable's entries in base.Compare
// order. It may be used while the writer adds entries: entries added after
// the iterator was created, or ahead of its position, may or may not be
// seen, but every entry present when the iterator was created is seen, in
// order, and nothing is ever seen half-written.
//
// Key and Value alias the arena and, unlike the general
// base.InternalIterator contract, stay valid until Reset.
func (m *MemTable) NewIter() base.InternalIterator {
	return &iterator{m: m}
}

// iterator walks level 0 of the skiplist. Positioning costs no allocation:
// the position is a single arena offset.
type iterator struct {
	m   *MemTable
	nd  uint32 // current node; 0 when not positioned
	err error
}

var errInvalidSeekKey = errors.New("ringkv/memtable: seek key shorter than an internal-key trailer")

func (it *iterator) SeekGE(ikey []byte) bool {
	if !base.Valid(ikey) {
		it.err = errInvalidSeekKey
		it.nd = 0
		return false
	}
	it.nd = it.m.seekGE(base.UserKey(ikey), base.Trailer(ikey))
	return it.nd != 0
}

func (it *iterator) First() bool {
	it.nd = it.m.next(it.m.head, 0).Load()
	return it.nd != 0
}

func (it *iterator) Next() bool {
	if it.nd == 0 {
		return false
	}
	it.nd = it.m.next(it.nd, 0).Load()
	return it.nd != 0
}

func (it *iterator) Valid() bool { return it.nd != 0 }

func (it *iterator) Key() []byte {
	if it.nd == 0 {
		return nil
	}
	return it.m.keyOf(it.nd)
}

func (it *iterator) Value() []byte {
	if it.nd == 0 {
		return nil
	}
	return it.m.valueOf(it.nd)
}

func (it *iterator) Error() error { return it.err }

func (it *iterator) Close() error {
	it.nd = 0
	return it.err
}
