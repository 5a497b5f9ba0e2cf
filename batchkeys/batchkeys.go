// Package batchkeys finds the keys a batch repeats.
//
// The write and apply paths take batches (a pipeline of SETs, a replication
// message) in which a key may appear more than once, and each must treat a
// repeated key's later writes differently (built on the earlier write, not
// read again; counted once). A map from the key as a string costs an
// allocation per key, which on the pipelined SET path was several per
// request; Previous finds the repeats with none per key: a direct
// comparison for a small batch, and for a larger one a hash table of the
// keys' indexes (on the stack up to stackKeys keys; the hash is seeded per
// process, so a client cannot choose keys that collide), comparing the
// bytes of keys whose hashes are equal.
package batchkeys

import (
	"bytes"
	"hash/maphash"
	"slices"
)

// directBelow: a batch of fewer keys compares every pair directly, which
// for short keys costs less than hashing them.
const directBelow = 6

// stackKeys is the largest batch whose table stays on the stack.
const stackKeys = 64

var seed = maphash.MakeSeed()

// Previous returns prev (reusing its storage when large enough) with
// prev[i] the index of the last key before i equal to key(i), or -1 when
// key(i) is the first of its value. key must return the same bytes for an
// index every time it is called.
func Previous(n int, key func(i int) []byte, prev []int) []int {
	return previous(n, key, prev, hashKey)
}

func hashKey(k []byte) uint64 { return maphash.Bytes(seed, k) }

// previous is Previous with the keys hashed by hash (a test's weak hash
// makes distinct keys collide).
func previous(n int, key func(i int) []byte, prev []int, hash func([]byte) uint64) []int {
	prev = slices.Grow(prev[:0], n)[:n]
	if n < directBelow {
		for i := range n {
			prev[i] = -1
			k := key(i)
			for j := i - 1; j >= 0; j-- {
				if bytes.Equal(key(j), k) {
					prev[i] = j
					break
				}
			}
		}
		return prev
	}
	// An open-addressing table of the keys seen so far, on the stack
	// for a batch of up to stackKeys: slot holds 1 + the index of the
	// last key seen with its hash's bits, 0 when empty.
	size := 1 // a power of two, at least twice the keys
	for size < 2*n {
		size <<= 1
	}
	var hashBuf [stackKeys]uint64
	var slotBuf [2 * stackKeys]int32
	hashes, slots := hashBuf[:0], slotBuf[:]
	if n > stackKeys {
		hashes, slots = make([]uint64, 0, n), make([]int32, size)
	}
	slots = slots[:size]
	mask := uint64(size - 1)
	for i := range n {
		k := key(i)
		h := hash(k)
		hashes = append(hashes, h)
		prev[i] = -1
		for s := h & mask; ; s = (s + 1) & mask {
			j := int(slots[s]) - 1
			if j < 0 {
				slots[s] = int32(i + 1)
				break
			}
			if hashes[j] == h && bytes.Equal(key(j), k) {
				prev[i] = j
				slots[s] = int32(i + 1)
				break
			}
		}
	}
	return prev
}

// First returns first (reusing its storage when large enough) with
// first[i] the index of the first key equal to key(i) (i itself when it is
// the first), from prev as Previous returns it. first may be prev itself,
// which it then overwrites.
func First(prev []int, first []int) []int {
	first = slices.Grow(first[:0], len(prev))[:len(prev)]
	for i, p := range prev {
		if p < 0 {
			first[i] = i
		} else {
			first[i] = first[p]
		}
	}
	return first
}
