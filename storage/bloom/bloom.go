// Package bloom implements the per-table bloom filter: a compact,
// self-describing bit array that answers "is this user key possibly in the
// table?" so that point reads can skip tables that certainly do not hold the
// key without reading any of their data blocks.
//
// # Hash
//
// Keys are hashed once with Hash (MurmurHash3 x86_32 with a fixed seed, see
// below); the filter works on those 32-bit hashes only. Because filters are
// persisted inside tables, Hash and the probe scheme are part of the on-disk
// format and must never change. Golden tests pin both.
//
// # Filter format
//
// A filter is a cache-line-blocked bloom filter:
//
//	filter = block[0] block[1] ... block[n-1] k
//
// where every block is 64 bytes (512 bits, one CPU cache line) and the final
// byte k is the number of probes, 1 <= k <= 30. n >= 1 is implied by the
// length: n = (len(filter)-1) / 64. A key hash h is mapped to
//
//	block index  b  = (uint64(h) * n) >> 32          (multiply-shift range reduction)
//	probe state  p  = mix(h)                           (see mix32; a bijection)
//	for i in 0..k-1:
//	    p  = p * 0x9E3779B9  (mod 2^32)
//	    bit = p >> 23                                  (top 9 bits: 0..511)
//	    byte block[b][bit>>3], mask 1<<(bit&7)
//
// All k probes of a key therefore land in the same 64-byte line, so a lookup
// costs at most one cache miss however large k is. The price is a slightly
// higher false-positive rate than an unblocked filter of the same size
// (about 1% instead of 0.8% at 10 bits per key), which is why Build uses
// a k a little below the classic bitsPerKey*ln2 optimum.
//
// Any byte string that does not have this shape (too short, length not
// 1 mod 64, k outside 1..30) is treated as "may contain everything": a
// damaged or unknown filter must never hide data, it may only cost a read.
// k values above 30 are reserved for future encodings, as in LevelDB.
package bloom

import (
	"encoding/binary"
	"math/bits"
)

// BlockSize is the size in bytes of one filter block (one cache line).
const BlockSize = 64

const (
	blockBits = BlockSize * 8 // 512
	// maxProbes bounds k; larger trailer values are reserved.
	maxProbes = 30
	// probeMul is the odd multiplier that steps the probe state; it is
	// 2^32 divided by the golden ratio, whose top bits are well spread.
	probeMul = 0x9E3779B9
	// hashSeed is the MurmurHash3 seed used by Hash. Part of the format.
	hashSeed = 0xbc9f1d34
)

// Hash returns the 32-bit hash of a user key that filters are built from and
// probed with. It is MurmurHash3 x86_32 (Austin Appleby's public-domain
// algorithm) with seed 0xbc9f1d34:
//
//	h = seed
//	for each little-endian 4-byte word w:
//	    w *= 0xcc9e2d51; w = rotl(w, 15); w *= 0x1b873593
//	    h ^= w; h = rotl(h, 13); h = h*5 + 0xe6546b64
//	tail (1..3 bytes t0,t1,t2): w = t0 | t1<<8 | t2<<16,
//	    w *= 0xcc9e2d51; w = rotl(w, 15); w *= 0x1b873593; h ^= w
//	h ^= len(key)
//	h ^= h>>16; h *= 0x85ebca6b; h ^= h>>13; h *= 0xc2b2ae35; h ^= h>>16
//
// The value is persisted in filters, so it must never change.
func Hash(key []byte) uint32 {
	return murmur3(key, hashSeed)
}

// murmur3 is MurmurHash3 x86_32. It is kept separate from Hash so tests can
// check it against the reference vectors published for arbitrary seeds.
func murmur3(key []byte, seed uint32) uint32 {
	const (
		c1 = 0xcc9e2d51
		c2 = 0x1b873593
	)
	h := seed
	n := len(key)
	b := key
	for len(b) >= 4 {
		w := binary.LittleEndian.Uint32(b)
		w *= c1
		w = bits.RotateLeft32(w, 15)
		w *= c2
		h ^= w
		h = bits.RotateLeft32(h, 13)
		h = h*5 + 0xe6546b64
		b = b[4:]
	}
	var w uint32
	switch len(b) {
	case 3:
		w |= uint32(b[2]) << 16
		fallthrough
	case 2:
		w |= uint32(b[1]) << 8
		fallthrough
	case 1:
		w |= uint32(b[0])
		w *= c1
		w = bits.RotateLeft32(w, 15)
		w *= c2
		h ^= w
	}
	h ^= uint32(n)
	return fmix32(h)
}

// fmix32 is MurmurHash3's finalizer: a bijection on uint32 in which every
// input bit affects every output bit.
func fmix32(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// mix32 derives the in-block probe state from a key hash. The block index
// consumes mostly the high bits of h, so the probes must not simply reuse
// them: keys sharing a block would then also share probe positions. A
// bijective remix decorrelates the two while losing none of h's entropy.
// (The one hash whose state is 0 probes bit 0 k times; that is still correct,
// just a weak key, and it occurs for 1 in 2^32 keys.)
func mix32(h uint32) uint32 {
	return fmix32(h ^ 0x5bd1e995)
}

// Probes returns the number of probes Build uses for bitsPerKey (after
// clamping bitsPerKey to at least 1). It is exported for tests and tooling;
// readers take k from the filter itself.
func Probes(bitsPerKey int) int {
	if bitsPerKey < 1 {
		bitsPerKey = 1
	}
	// The unblocked optimum is bitsPerKey*ln2 (6.9 at 10 bits/key). Blocking
	// makes per-block load uneven, and the overloaded blocks dominate the
	// false positives; fewer probes fill them less, so the best k is a bit
	// lower. bitsPerKey*0.66 rounded down hits the measured optimum, or
	// lands within a few percent of it, from 5 to 20 bits per key (k=6 at
	// 10 bits/key: 0.97% false positives).
	k := bitsPerKey * 66 / 100
	if k < 1 {
		k = 1
	}
	if k > maxProbes {
		k = maxProbes
	}
	return k
}

// Build appends to dst a filter holding the given key hashes (each from Hash)
// at about bitsPerKey bits per key, and returns the extended slice.
// bitsPerKey below 1 is treated as 1. An empty hash list yields a one-block
// filter that rejects every key. Duplicate hashes are harmless.
func Build(dst []byte, hashes []uint32, bitsPerKey int) []byte {
	if bitsPerKey < 1 {
		bitsPerKey = 1
	}
	k := Probes(bitsPerKey)
	totalBits := uint64(len(hashes)) * uint64(bitsPerKey)
	nblocks := (totalBits + blockBits - 1) / blockBits
	if nblocks == 0 {
		nblocks = 1
	}
	// The block index is computed from 32 bits of hash, so more than 2^32
	// blocks could not be addressed; no table comes anywhere near that
	// (it would be a 256 GiB filter), but keep the arithmetic sound.
	if nblocks > 1<<32-1 {
		nblocks = 1<<32 - 1
	}
	size := int(nblocks) * BlockSize

	start := len(dst)
	dst = grow(dst, size+1)
	bitsArr := dst[start : start+size]
	clear(bitsArr)
	for _, h := range hashes {
		blk := bitsArr[blockOffset(h, nblocks):][:BlockSize]
		p := mix32(h)
		for i := 0; i < k; i++ {
			p *= probeMul
			bit := p >> 23
			blk[bit>>3] |= 1 << (bit & 7)
		}
	}
	dst[start+size] = byte(k)
	return dst
}

// grow extends b by n bytes, reusing spare capacity when there is enough.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, len(b)+n+len(b)/4)
	copy(nb, b)
	return nb
}

// blockOffset maps h onto one of nblocks blocks (Lemire's multiply-shift
// reduction: uniform like h % n but without a division) and returns the
// block's byte offset.
func blockOffset(h uint32, nblocks uint64) uint64 {
	return ((uint64(h) * nblocks) >> 32) * BlockSize
}

// MayContain reports whether a key with the given hash (from Hash) may be in
// the set the filter was built from. false is definite; true may be a false
// positive. It never panics: a filter that is empty, truncated or otherwise
// malformed answers true, so corruption can cost a read but never hide a key.
func MayContain(filter []byte, hash uint32) bool {
	n := len(filter)
	if n < BlockSize+1 || (n-1)%BlockSize != 0 {
		return true
	}
	k := int(filter[n-1])
	if k < 1 || k > maxProbes {
		return true
	}
	nblocks := uint64(n-1) / BlockSize
	blk := filter[blockOffset(hash, nblocks):][:BlockSize]
	p := mix32(hash)
	for i := 0; i < k; i++ {
		p *= probeMul
		bit := p >> 23
		if blk[bit>>3]&(1<<(bit&7)) == 0 {
			return false
		}
	}
	return true
}
