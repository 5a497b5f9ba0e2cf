package replica

import (
	"encoding/binary"
	"math/bits"

	"github.com/ringkv/ringkv/ring"
)

// Observer learns of every change to the stored objects, so that a summary
// of them (package antientropy's hash trees) can be kept current without
// rescanning. Each change names the key's token and the hashes (ObjectHash)
// of its stored bytes before and after; 0 means absent.
//
// Changing is called before the changes may become visible in the engine
// and Changed after their commit returned, with ok false when it failed
// (the engine then holds the old state). Calls for different writes may
// interleave and arrive in any order, also for one key: a summary must
// combine them commutatively (adding New - Old does). Neither call may
// block for long; both run on the write path.
type Observer interface {
	Changing(changes []Change)
	Changed(changes []Change, ok bool)
}

// Change is one key's change of stored bytes, as an Observer sees it.
type Change struct {
	Token    uint64
	Old, New uint64
}

// SetObserver installs o. It must be called before the store is used by
// more than one goroutine (a server installs it before it serves).
func (s *Store) SetObserver(o Observer) { s.observer = o }

// ObjectHash is the hash anti-entropy compares for one stored key: of the
// user key and the object's encoding (which is canonical: equal objects
// encode to equal bytes). Never 0, which stands for an absent key.
func ObjectHash(key, encoded []byte) uint64 {
	h := bits.RotateLeft64(ring.Token(key), 17) ^ ring.Token(encoded)*0x9e3779b97f4a7c15
	if h == 0 {
		h = 1
	}
	return h
}

// tokenOf returns an engine key's token.
func tokenOf(ekey []byte) uint64 { return binary.BigEndian.Uint64(ekey[1:9]) }

// KeyHash is one key's hash in a range scan (ScanHashes).
type KeyHash struct {
	Key   []byte
	Token uint64
	Hash  uint64
}

// ScanHashes calls fn with the ObjectHash of every key whose token is in
// [start, end] (inclusive), in token order, without decoding objects, until
// fn returns false. Key is only valid during the call.
func (s *Store) ScanHashes(start, end uint64, fn func(KeyHash) bool) error {
	return s.scanRaw(start, end, func(key []byte, token uint64, raw []byte) bool {
		return fn(KeyHash{Key: key, Token: token, Hash: ObjectHash(key, raw)})
	})
}

// SnapshotHashes is ScanHashes over the store as it is when
// SnapshotHashes is called (an engine snapshot taken now); the returned
// scan may run later, once, and ignores every change made meanwhile.
func (s *Store) SnapshotHashes(start, end uint64) (scan func(fn func(KeyHash) bool) error) {
	it := s.rangeIter(start, end)
	return func(fn func(KeyHash) bool) error {
		return scanIter(it, func(key []byte, token uint64, raw []byte) bool {
			return fn(KeyHash{Key: key, Token: token, Hash: ObjectHash(key, raw)})
		})
	}
}

// TokenSpan returns the tokens of the data keys an engine key range
// [smallest, largest] (inclusive, engine keys as EncodeKey makes them)
// may hold; ok is false when it holds no data key (only hints or
// metadata).
func TokenSpan(smallest, largest []byte) (first, last uint64, ok bool) {
	token := func(k []byte, high bool) uint64 {
		switch {
		case len(k) == 0 || k[0] < dataPrefix:
			return 0
		case k[0] > dataPrefix:
			return ^uint64(0)
		case len(k) < 9:
			// A prefix of a data key: pad its token bytes.
			var b [8]byte
			if high {
				b = [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
			}
			copy(b[:], k[1:])
			return binary.BigEndian.Uint64(b[:])
		}
		return tokenOf(k)
	}
	if (len(largest) > 0 && largest[0] < dataPrefix) || (len(smallest) > 0 && smallest[0] > dataPrefix) {
		return 0, 0, false
	}
	return token(smallest, false), token(largest, true), true
}
