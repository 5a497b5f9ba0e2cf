// Package base holds the key types shared by every layer of the storage
// engine: internal keys (a user key plus a sequence number and a kind), their
// ordering, and the iterator interface that memtables, tables and merging
// iterators all implement.
//
// An internal key is encoded as userKey || trailer, where trailer is 8 bytes
// little-endian holding seq<<8 | kind. Internal keys sort by user key
// ascending, then by trailer descending, so the newest version of a user key
// comes first.
package base

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind says what an internal key records.
type Kind uint8

const (
	// KindDelete is a tombstone: the user key has no value at this sequence.
	KindDelete Kind = 0
	// KindSet records a value.
	KindSet Kind = 1
	// KindMax is the largest kind; a seek key uses it so that it sorts before
	// every real key with the same user key and sequence.
	KindMax Kind = KindSet
)

func (k Kind) String() string {
	switch k {
	case KindDelete:
		return "DEL"
	case KindSet:
		return "SET"
	}
	return fmt.Sprintf("KIND(%d)", uint8(k))
}

// SeqNum orders every write in the engine. The zero value is never assigned
// to a write.
type SeqNum uint64

// SeqNumMax is larger than any sequence number ever assigned (56 bits).
const SeqNumMax SeqNum = 1<<56 - 1

// TrailerLen is the length of the trailer appended to a user key.
const TrailerLen = 8

// ErrCorruption is wrapped by every error that reports damaged on-disk data.
var ErrCorruption = errors.New("ringkv/storage: corruption")

// CorruptionErrorf returns an error that wraps ErrCorruption.
func CorruptionErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruption, fmt.Sprintf(format, args...))
}

// MakeTrailer packs a sequence number and a kind.
func MakeTrailer(seq SeqNum, kind Kind) uint64 {
	return uint64(seq)<<8 | uint64(kind)
}

// MakeInternalKey appends the encoded internal key to dst.
func MakeInternalKey(dst, userKey []byte, seq SeqNum, kind Kind) []byte {
	dst = append(dst, userKey...)
	return binary.LittleEndian.AppendUint64(dst, MakeTrailer(seq, kind))
}

// MakeSeekKey returns the internal key that sorts before every version of
// userKey visible at snapshot seq (that is, every version with seqnum <= seq).
func MakeSeekKey(dst, userKey []byte, seq SeqNum) []byte {
	return MakeInternalKey(dst, userKey, seq, KindMax)
}

// Valid reports whether ikey is long enough to be an internal key.
func Valid(ikey []byte) bool { return len(ikey) >= TrailerLen }

// UserKey returns the user-key part of an encoded internal key.
func UserKey(ikey []byte) []byte { return ikey[:len(ikey)-TrailerLen] }

// Trailer returns the trailer of an encoded internal key.
func Trailer(ikey []byte) uint64 {
	return binary.LittleEndian.Uint64(ikey[len(ikey)-TrailerLen:])
}

// Seq returns the sequence number of an encoded internal key.
func Seq(ikey []byte) SeqNum { return SeqNum(Trailer(ikey) >> 8) }

// KindOf returns the kind of an encoded internal key.
func KindOf(ikey []byte) Kind { return Kind(Trailer(ikey) & 0xff) }

// Compare orders encoded internal keys: user key ascending, then trailer
// descending (newest first).
func Compare(a, b []byte) int {
	if c := bytes.Compare(UserKey(a), UserKey(b)); c != 0 {
		return c
	}
	ta, tb := Trailer(a), Trailer(b)
	switch {
	case ta > tb:
		return -1
	case ta < tb:
		return 1
	}
	return 0
}

// Format renders an internal key for errors and debugging.
func Format(ikey []byte) string {
	if !Valid(ikey) {
		return fmt.Sprintf("invalid(%q)", ikey)
	}
	return fmt.Sprintf("%q#%d,%s", UserKey(ikey), Seq(ikey), KindOf(ikey))
}

// InternalIterator walks internal keys in Compare order. Memtables, tables,
// levels and merging iterators implement it.
//
// Key and Value are valid until the next positioning call; a caller that
// keeps them must copy them.
type InternalIterator interface {
	// SeekGE positions at the first key >= ikey (an encoded internal key).
	SeekGE(ikey []byte) bool
	// First positions at the first key.
	First() bool
	// Next advances; it returns false at the end or on error.
	Next() bool
	// Valid reports whether the iterator is positioned at a key.
	Valid() bool
	// Key returns the encoded internal key at the current position.
	Key() []byte
	// Value returns the value at the current position.
	Value() []byte
	// Error returns the first error met, if any.
	Error() error
	// Close releases resources; it returns Error().
	Close() error
}
