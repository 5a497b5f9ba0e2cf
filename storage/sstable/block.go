package sstable

import (
	"bytes"
	"encoding/binary"

	"github.com/ringkv/ringkv/storage/base"
)

// blockWriter builds one block in memory.
type blockWriter struct {
	restartInterval int
	buf             []byte
	restarts        []uint32
	counter         int // entries since the last restart point
	lastKey         []byte
	entries         int
}

func newBlockWriter(restartInterval int) *blockWriter {
	return &blockWriter{restartInterval: restartInterval, counter: restartInterval}
}

func (b *blockWriter) reset() {
	b.buf = b.buf[:0]
	b.restarts = b.restarts[:0]
	b.counter = b.restartInterval
	b.lastKey = b.lastKey[:0]
	b.entries = 0
}

func (b *blockWriter) empty() bool { return b.entries == 0 }

// size is the size the block would have if finished now.
func (b *blockWriter) size() int { return len(b.buf) + 4*len(b.restarts) + 4 }

// entrySize estimates how much adding key/value would grow the block (an
// upper bound: no prefix sharing, a new restart point).
func entrySize(key, value []byte) int {
	return 3*binary.MaxVarintLen32 + len(key) + len(value) + 4
}

func (b *blockWriter) add(key, value []byte) {
	shared := 0
	if b.counter >= b.restartInterval {
		b.restarts = append(b.restarts, uint32(len(b.buf)))
		b.counter = 0
	} else {
		shared = commonPrefix(b.lastKey, key)
	}
	b.buf = binary.AppendUvarint(b.buf, uint64(shared))
	b.buf = binary.AppendUvarint(b.buf, uint64(len(key)-shared))
	b.buf = binary.AppendUvarint(b.buf, uint64(len(value)))
	b.buf = append(b.buf, key[shared:]...)
	b.buf = append(b.buf, value...)
	b.lastKey = append(b.lastKey[:0], key...)
	b.counter++
	b.entries++
}

// finish appends the restart array and returns the block contents, valid
// until the next reset.
func (b *blockWriter) finish() []byte {
	for _, r := range b.restarts {
		b.buf = binary.LittleEndian.AppendUint32(b.buf, r)
	}
	b.buf = binary.LittleEndian.AppendUint32(b.buf, uint32(len(b.restarts)))
	return b.buf
}

func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// BlockIter iterates over the entries of one uncompressed block. It accepts
// arbitrary bytes: malformed blocks make it stop with an error wrapping
// base.ErrCorruption, never panic. Key and Value are valid until the next
// positioning call; Value (and Key, at restart points) alias the block.
//
// First and Next work on any block; SeekGE treats keys as encoded internal
// keys ordered by base.Compare, and reports keys shorter than a trailer as
// corruption.
type BlockIter struct {
	data        []byte
	restartsOff int // offset of the restart array: the end of the entries
	numRestarts int

	offset     int // offset of the current entry
	nextOffset int // offset of the entry after it
	key        []byte
	keyBuf     []byte
	keyInBuf   bool // key points into keyBuf (not into data)
	val        []byte
	valid      bool
	err        error
}

// NewBlockIter returns an iterator over block, or an error if the block's
// restart array is malformed.
func NewBlockIter(block []byte) (*BlockIter, error) {
	it := &BlockIter{}
	if err := it.Init(block); err != nil {
		return nil, err
	}
	return it, nil
}

// Init resets the iterator to iterate over block, keeping its buffers.
func (it *BlockIter) Init(block []byte) error {
	*it = BlockIter{keyBuf: it.keyBuf[:0]}
	if len(block) < 4 {
		it.err = corruptf("sstable: block of %d bytes is too short for a restart count", len(block))
		return it.err
	}
	n := uint64(binary.LittleEndian.Uint32(block[len(block)-4:]))
	if 4+4*n > uint64(len(block)) {
		it.err = corruptf("sstable: block of %d bytes claims %d restart points", len(block), n)
		return it.err
	}
	it.data = block
	it.numRestarts = int(n)
	it.restartsOff = len(block) - 4 - 4*int(n)
	if n == 0 && it.restartsOff != 0 {
		it.err = corruptf("sstable: block has %d bytes of entries but no restart point", it.restartsOff)
		return it.err
	}
	if n > 0 && binary.LittleEndian.Uint32(block[it.restartsOff:]) != 0 {
		it.err = corruptf("sstable: block's first restart point is %d, want 0", binary.LittleEndian.Uint32(block[it.restartsOff:]))
		return it.err
	}
	it.nextOffset = 0
	return nil
}

// Valid reports whether the iterator is at an entry.
func (it *BlockIter) Valid() bool { return it.valid }

// Key returns the current entry's key.
func (it *BlockIter) Key() []byte { return it.key }

// Value returns the current entry's value.
func (it *BlockIter) Value() []byte { return it.val }

// Error returns the first error met.
func (it *BlockIter) Error() error { return it.err }

func (it *BlockIter) fail(err error) bool {
	if it.err == nil {
		it.err = err
	}
	it.valid = false
	it.key, it.val = nil, nil
	return false
}

// First positions at the first entry.
func (it *BlockIter) First() bool {
	if it.err != nil {
		return false
	}
	it.key = nil
	it.keyInBuf = false
	return it.decodeAt(0)
}

// Next advances to the next entry.
func (it *BlockIter) Next() bool {
	if it.err != nil || !it.valid {
		it.valid = false
		return false
	}
	return it.decodeAt(it.nextOffset)
}

// decodeAt decodes the entry at off, whose predecessor's key is it.key (or
// which is a restart point).
func (it *BlockIter) decodeAt(off int) bool {
	if off >= it.restartsOff {
		it.valid = false
		it.key, it.val = nil, nil
		return false
	}
	p := it.data[off:it.restartsOff]
	shared, unshared, vlen, h := decodeHeader(p)
	if h == 0 {
		return it.fail(corruptf("sstable: bad entry header at block offset %d", off))
	}
	rest := uint64(len(p) - h)
	if shared > uint64(len(it.key)) || unshared > rest || vlen > rest-unshared {
		return it.fail(corruptf("sstable: entry at block offset %d overruns (shared %d of %d, unshared %d, value %d, %d bytes left)",
			off, shared, len(it.key), unshared, vlen, rest))
	}
	suffix := p[h : h+int(unshared)]
	if shared == 0 {
		it.key = suffix
		it.keyInBuf = false
	} else {
		if !it.keyInBuf {
			it.keyBuf = append(it.keyBuf[:0], it.key[:shared]...)
		} else {
			it.keyBuf = it.keyBuf[:shared]
		}
		it.keyBuf = append(it.keyBuf, suffix...)
		it.key = it.keyBuf
		it.keyInBuf = true
	}
	vs := h + int(unshared)
	it.val = p[vs : vs+int(vlen) : vs+int(vlen)]
	it.offset = off
	it.nextOffset = off + vs + int(vlen)
	it.valid = true
	return true
}

// decodeHeader decodes an entry header (shared, unshared and value lengths)
// from p, returning its length h, or h = 0 if it is malformed.
func decodeHeader(p []byte) (shared, unshared, vlen uint64, h int) {
	if len(p) >= 3 && p[0]|p[1]|p[2] < 0x80 {
		// Fast path: all three lengths fit in one byte.
		return uint64(p[0]), uint64(p[1]), uint64(p[2]), 3
	}
	shared, n1 := binary.Uvarint(p)
	if n1 <= 0 {
		return 0, 0, 0, 0
	}
	unshared, n2 := binary.Uvarint(p[n1:])
	if n2 <= 0 {
		return 0, 0, 0, 0
	}
	vlen, n3 := binary.Uvarint(p[n1+n2:])
	if n3 <= 0 {
		return 0, 0, 0, 0
	}
	return shared, unshared, vlen, n1 + n2 + n3
}

// restartKey returns the (full) key of restart point i.
func (it *BlockIter) restartKey(i int) ([]byte, error) {
	off := int(binary.LittleEndian.Uint32(it.data[it.restartsOff+4*i:]))
	if off >= it.restartsOff {
		return nil, corruptf("sstable: restart point %d at block offset %d is past the entries (%d bytes)", i, off, it.restartsOff)
	}
	p := it.data[off:it.restartsOff]
	shared, unshared, _, h := decodeHeader(p)
	if h == 0 {
		return nil, corruptf("sstable: bad entry header at block offset %d", off)
	}
	if shared != 0 {
		return nil, corruptf("sstable: restart point %d at block offset %d does not hold a full key", i, off)
	}
	if unshared > uint64(len(p)-h) {
		return nil, corruptf("sstable: key at block offset %d overruns the block", off)
	}
	return p[h : h+int(unshared)], nil
}

// compareTarget compares an encoded internal key with the target
// (userKey, trailer). ok is false if key is not a valid internal key.
func compareTarget(key, userKey []byte, trailer uint64) (c int, ok bool) {
	if len(key) < base.TrailerLen {
		return 0, false
	}
	n := len(key) - base.TrailerLen
	if c := bytes.Compare(key[:n], userKey); c != 0 {
		return c, true
	}
	t := binary.LittleEndian.Uint64(key[n:])
	switch {
	case t > trailer:
		return -1, true
	case t < trailer:
		return 1, true
	}
	return 0, true
}

// splitTarget splits a seek key into user key and trailer. A key too short
// to be an internal key is taken as a user key with the largest trailer, so
// it sorts before every version of that user key.
func splitTarget(ikey []byte) ([]byte, uint64) {
	if len(ikey) < base.TrailerLen {
		return ikey, ^uint64(0)
	}
	return base.UserKey(ikey), base.Trailer(ikey)
}

// SeekGE positions at the first entry whose key is >= ikey in base.Compare
// order.
func (it *BlockIter) SeekGE(ikey []byte) bool {
	uk, tr := splitTarget(ikey)
	return it.seekGE(uk, tr)
}

func (it *BlockIter) badKey() bool {
	return it.fail(corruptf("sstable: key %q at block offset %d is too short for an internal key", it.key, it.offset))
}

func (it *BlockIter) seekGE(userKey []byte, trailer uint64) bool {
	if it.err != nil {
		return false
	}
	// Find the first restart point whose key is >= the target; the answer
	// lies between the restart point before it and it.
	lo, hi := 0, it.numRestarts
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		k, err := it.restartKey(mid)
		if err != nil {
			return it.fail(err)
		}
		c, ok := compareTarget(k, userKey, trailer)
		if !ok {
			return it.fail(corruptf("sstable: restart key %q is too short for an internal key", k))
		}
		if c < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	start := 0
	if lo > 0 {
		start = int(binary.LittleEndian.Uint32(it.data[it.restartsOff+4*(lo-1):]))
	}
	it.key = nil
	it.keyInBuf = false
	for ok := it.decodeAt(start); ok; ok = it.decodeAt(it.nextOffset) {
		c, valid := compareTarget(it.key, userKey, trailer)
		if !valid {
			return it.badKey()
		}
		if c >= 0 {
			return true
		}
	}
	return false
}
