// Package manifest encodes and decodes version edits, the records of the
// engine's manifest file. The manifest is a wal-format log (see package wal)
// whose records are encoded VersionEdits; replaying them in order rebuilds
// the set of live tables. Applying edits and writing the file are the
// engine's job; this package is only the codec.
//
// # Encoding
//
// An edit is a sequence of fields, each a uvarint tag followed by the
// field's data. Integers are uvarints; byte strings are a uvarint length
// followed by the bytes.
//
//	tag 1  LogNumber       uvarint
//	tag 2  NextFileNumber  uvarint
//	tag 3  LastSeq         uvarint (<= base.SeqNumMax)
//	tag 4  DeletedFile     level, num
//	tag 5  NewFile         level, num, size, smallest, largest, smallestSeq, largestSeq
//	tag 6  Quarantined     level, num, smallest, largest, reason
//
// Tags 1-3 appear at most once. Encode writes them in tag order, then every
// deleted file, then every added file, then every quarantined file, each
// list in its slice order; Decode
// accepts the fields in any order but keeps the order within each list.
// Unknown tags are rejected: an older binary must not silently drop a field
// it does not understand.
package manifest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/ringkv/ringkv/storage/base"
)

// NumLevels is the number of levels of the LSM tree; levels are
// 0..NumLevels-1. It must equal storage.NumLevels (this package cannot
// import storage, which imports it).
const NumLevels = 7

// Field tags. Values are part of the on-disk format: never renumber.
const (
	tagLogNumber      = 1
	tagNextFileNumber = 2
	tagLastSeq        = 3
	tagDeletedFile    = 4
	tagNewFile        = 5
	tagQuarantined    = 6
)

// MaxReasonLen bounds the reason recorded with a quarantined table.
const MaxReasonLen = 1024

// FileMeta describes one table.
type FileMeta struct {
	// Num is the table's file number.
	Num uint64
	// Size is the table's size in bytes.
	Size uint64
	// Smallest and Largest are the smallest and largest encoded internal
	// keys (see package base) in the table; Smallest <= Largest by
	// base.Compare.
	Smallest, Largest []byte
	// SmallestSeq and LargestSeq bound the sequence numbers of the table's
	// keys; SmallestSeq <= LargestSeq <= base.SeqNumMax.
	SmallestSeq, LargestSeq base.SeqNum
}

// NewFile adds a table to a level.
type NewFile struct {
	Level int
	Meta  FileMeta
}

// DeletedFile removes table Num from a level.
type DeletedFile struct {
	Level int
	Num   uint64
}

// QuarantinedFile records a table the engine took out of its version
// because its contents failed a check, and moved aside instead of deleting.
// The edit that quarantines a table also deletes it from its level; a
// manifest's first edit repeats the records of the tables still kept aside,
// so that every later Open knows them.
type QuarantinedFile struct {
	// Level is the level the table was on.
	Level int
	Num   uint64
	// Smallest and Largest are the table's smallest and largest user keys
	// (not internal keys): the range whose data the engine no longer has.
	Smallest, Largest []byte
	// Reason says what check failed, for people.
	Reason string
}

// VersionEdit is one change to the set of live tables and the engine's
// counters. A scalar field is meaningful only when its Has flag is set; an
// unset field is left unchanged by the edit.
type VersionEdit struct {
	// LogNumber: commit logs numbered below it are obsolete (their contents
	// are all in tables).
	LogNumber    uint64
	HasLogNumber bool
	// NextFileNumber is the next unused file number.
	NextFileNumber    uint64
	HasNextFileNumber bool
	// LastSeq is the last sequence number assigned.
	LastSeq    base.SeqNum
	HasLastSeq bool
	// Deleted lists tables removed by the edit; Added lists tables added.
	// Applying an edit removes Deleted before adding Added, so a table moved
	// between levels appears in both.
	Deleted []DeletedFile
	Added   []NewFile
	// Quarantined records tables taken out of the version as damaged.
	Quarantined []QuarantinedFile
}

// Encode appends the encoding of e to dst and returns the result. It does
// not check e; an edit that fails Validate encodes to bytes that Decode
// rejects, so a writer should validate first.
func (e *VersionEdit) Encode(dst []byte) []byte {
	if e.HasLogNumber {
		dst = binary.AppendUvarint(dst, tagLogNumber)
		dst = binary.AppendUvarint(dst, e.LogNumber)
	}
	if e.HasNextFileNumber {
		dst = binary.AppendUvarint(dst, tagNextFileNumber)
		dst = binary.AppendUvarint(dst, e.NextFileNumber)
	}
	if e.HasLastSeq {
		dst = binary.AppendUvarint(dst, tagLastSeq)
		dst = binary.AppendUvarint(dst, uint64(e.LastSeq))
	}
	for _, d := range e.Deleted {
		dst = binary.AppendUvarint(dst, tagDeletedFile)
		dst = binary.AppendUvarint(dst, uint64(d.Level))
		dst = binary.AppendUvarint(dst, d.Num)
	}
	for _, a := range e.Added {
		m := &a.Meta
		dst = binary.AppendUvarint(dst, tagNewFile)
		dst = binary.AppendUvarint(dst, uint64(a.Level))
		dst = binary.AppendUvarint(dst, m.Num)
		dst = binary.AppendUvarint(dst, m.Size)
		dst = binary.AppendUvarint(dst, uint64(len(m.Smallest)))
		dst = append(dst, m.Smallest...)
		dst = binary.AppendUvarint(dst, uint64(len(m.Largest)))
		dst = append(dst, m.Largest...)
		dst = binary.AppendUvarint(dst, uint64(m.SmallestSeq))
		dst = binary.AppendUvarint(dst, uint64(m.LargestSeq))
	}
	for _, q := range e.Quarantined {
		dst = binary.AppendUvarint(dst, tagQuarantined)
		dst = binary.AppendUvarint(dst, uint64(q.Level))
		dst = binary.AppendUvarint(dst, q.Num)
		dst = binary.AppendUvarint(dst, uint64(len(q.Smallest)))
		dst = append(dst, q.Smallest...)
		dst = binary.AppendUvarint(dst, uint64(len(q.Largest)))
		dst = append(dst, q.Largest...)
		dst = binary.AppendUvarint(dst, uint64(len(q.Reason)))
		dst = append(dst, q.Reason...)
	}
	return dst
}

// Validate checks the invariants Decode enforces: levels in range, keys at
// least base.TrailerLen bytes with Smallest <= Largest, sequence numbers in
// range and ordered, no table added twice, no (level, table) deleted twice,
// and quarantine records with a level in range, Smallest <= Largest, a
// reason of at most MaxReasonLen bytes and no table twice. Errors wrap
// base.ErrCorruption.
func (e *VersionEdit) Validate() error {
	if e.HasLastSeq && e.LastSeq > base.SeqNumMax {
		return corruptf("last sequence number %d exceeds the maximum %d", e.LastSeq, base.SeqNumMax)
	}
	var deleted map[DeletedFile]bool
	if len(e.Deleted) > 1 {
		deleted = make(map[DeletedFile]bool, len(e.Deleted))
	}
	for i, d := range e.Deleted {
		if d.Level < 0 || d.Level >= NumLevels {
			return corruptf("deleted file %d (table %d): level %d out of range 0..%d", i, d.Num, d.Level, NumLevels-1)
		}
		if deleted != nil {
			if deleted[d] {
				return corruptf("deleted file %d: table %d deleted from level %d twice", i, d.Num, d.Level)
			}
			deleted[d] = true
		}
	}
	var added map[uint64]bool
	if len(e.Added) > 1 {
		added = make(map[uint64]bool, len(e.Added))
	}
	for i := range e.Added {
		a := &e.Added[i]
		if err := validateNewFile(a); err != nil {
			return corruptf("new file %d (table %d): %v", i, a.Meta.Num, err)
		}
		if added != nil {
			if added[a.Meta.Num] {
				return corruptf("new file %d: table %d added twice", i, a.Meta.Num)
			}
			added[a.Meta.Num] = true
		}
	}
	var quarantined map[uint64]bool
	if len(e.Quarantined) > 1 {
		quarantined = make(map[uint64]bool, len(e.Quarantined))
	}
	for i := range e.Quarantined {
		q := &e.Quarantined[i]
		switch {
		case q.Level < 0 || q.Level >= NumLevels:
			return corruptf("quarantined file %d (table %d): level %d out of range 0..%d", i, q.Num, q.Level, NumLevels-1)
		case bytes.Compare(q.Smallest, q.Largest) > 0:
			return corruptf("quarantined file %d (table %d): smallest key %q > largest key %q", i, q.Num, q.Smallest, q.Largest)
		case len(q.Reason) > MaxReasonLen:
			return corruptf("quarantined file %d (table %d): reason is %d bytes, more than %d", i, q.Num, len(q.Reason), MaxReasonLen)
		}
		if quarantined != nil {
			if quarantined[q.Num] {
				return corruptf("quarantined file %d: table %d quarantined twice", i, q.Num)
			}
			quarantined[q.Num] = true
		}
	}
	return nil
}

func validateNewFile(a *NewFile) error {
	m := &a.Meta
	switch {
	case a.Level < 0 || a.Level >= NumLevels:
		return fmt.Errorf("level %d out of range 0..%d", a.Level, NumLevels-1)
	case !base.Valid(m.Smallest):
		return fmt.Errorf("smallest key is %d bytes, shorter than the %d-byte trailer", len(m.Smallest), base.TrailerLen)
	case !base.Valid(m.Largest):
		return fmt.Errorf("largest key is %d bytes, shorter than the %d-byte trailer", len(m.Largest), base.TrailerLen)
	case base.Compare(m.Smallest, m.Largest) > 0:
		return fmt.Errorf("smallest key %s > largest key %s", base.Format(m.Smallest), base.Format(m.Largest))
	case m.LargestSeq > base.SeqNumMax:
		return fmt.Errorf("largest sequence number %d exceeds the maximum %d", m.LargestSeq, base.SeqNumMax)
	case m.SmallestSeq > m.LargestSeq:
		return fmt.Errorf("smallest sequence number %d > largest %d", m.SmallestSeq, m.LargestSeq)
	}
	return nil
}

// Decode replaces e with the edit encoded in b. Malformed input (unknown or
// repeated tag, truncated or overlong varint, length beyond the input, or an
// edit that fails Validate) gives an error wrapping base.ErrCorruption that
// says what is wrong and where; e is then left zero. Decode copies what it
// keeps, so b may be reused afterwards.
func (e *VersionEdit) Decode(b []byte) error {
	*e = VersionEdit{}
	d := decoder{b: b}
	var ne VersionEdit
	for d.pos < len(b) {
		tagPos := d.pos
		tag, err := d.uvarint("tag")
		if err != nil {
			return err
		}
		switch tag {
		case tagLogNumber:
			if ne.HasLogNumber {
				return corruptf("repeated log number at byte %d", tagPos)
			}
			if ne.LogNumber, err = d.uvarint("log number"); err != nil {
				return err
			}
			ne.HasLogNumber = true
		case tagNextFileNumber:
			if ne.HasNextFileNumber {
				return corruptf("repeated next file number at byte %d", tagPos)
			}
			if ne.NextFileNumber, err = d.uvarint("next file number"); err != nil {
				return err
			}
			ne.HasNextFileNumber = true
		case tagLastSeq:
			if ne.HasLastSeq {
				return corruptf("repeated last sequence number at byte %d", tagPos)
			}
			v, err := d.uvarint("last sequence number")
			if err != nil {
				return err
			}
			ne.LastSeq, ne.HasLastSeq = base.SeqNum(v), true
		case tagDeletedFile:
			level, err := d.level("deleted file")
			if err != nil {
				return err
			}
			num, err := d.uvarint("deleted file number")
			if err != nil {
				return err
			}
			ne.Deleted = append(ne.Deleted, DeletedFile{Level: level, Num: num})
		case tagNewFile:
			nf, err := d.newFile()
			if err != nil {
				return err
			}
			ne.Added = append(ne.Added, nf)
		case tagQuarantined:
			q, err := d.quarantined()
			if err != nil {
				return err
			}
			ne.Quarantined = append(ne.Quarantined, q)
		default:
			return corruptf("unknown tag %d at byte %d", tag, tagPos)
		}
	}
	if err := ne.Validate(); err != nil {
		return err
	}
	*e = ne
	return nil
}

type decoder struct {
	b   []byte
	pos int
}

func (d *decoder) uvarint(what string) (uint64, error) {
	v, n := binary.Uvarint(d.b[d.pos:])
	switch {
	case n == 0:
		return 0, corruptf("truncated varint for %s at byte %d", what, d.pos)
	case n < 0:
		return 0, corruptf("varint for %s at byte %d overflows 64 bits", what, d.pos)
	}
	d.pos += n
	return v, nil
}

func (d *decoder) level(what string) (int, error) {
	pos := d.pos
	v, err := d.uvarint(what + " level")
	if err != nil {
		return 0, err
	}
	if v >= NumLevels {
		return 0, corruptf("%s level %d at byte %d out of range 0..%d", what, v, pos, NumLevels-1)
	}
	return int(v), nil
}

// key reads a length-prefixed internal key and returns a copy.
func (d *decoder) key(what string) ([]byte, error) {
	pos := d.pos
	n, err := d.uvarint(what + " length")
	if err != nil {
		return nil, err
	}
	if rem := uint64(len(d.b) - d.pos); n > rem {
		return nil, corruptf("%s at byte %d claims %d bytes, only %d remain", what, pos, n, rem)
	}
	if n < base.TrailerLen {
		return nil, corruptf("%s at byte %d is %d bytes, shorter than the %d-byte trailer", what, pos, n, base.TrailerLen)
	}
	k := make([]byte, n)
	copy(k, d.b[d.pos:])
	d.pos += int(n)
	return k, nil
}

// bytes reads a length-prefixed byte string of at most max bytes and
// returns a copy (nil when empty).
func (d *decoder) bytes(what string, max uint64) ([]byte, error) {
	pos := d.pos
	n, err := d.uvarint(what + " length")
	if err != nil {
		return nil, err
	}
	if rem := uint64(len(d.b) - d.pos); n > rem {
		return nil, corruptf("%s at byte %d claims %d bytes, only %d remain", what, pos, n, rem)
	}
	if n > max {
		return nil, corruptf("%s at byte %d is %d bytes, more than %d", what, pos, n, max)
	}
	if n == 0 {
		return nil, nil
	}
	b := make([]byte, n)
	copy(b, d.b[d.pos:])
	d.pos += int(n)
	return b, nil
}

func (d *decoder) quarantined() (QuarantinedFile, error) {
	var q QuarantinedFile
	var err error
	if q.Level, err = d.level("quarantined file"); err != nil {
		return q, err
	}
	if q.Num, err = d.uvarint("quarantined file number"); err != nil {
		return q, err
	}
	if q.Smallest, err = d.bytes("quarantined file smallest key", math.MaxUint32); err != nil {
		return q, err
	}
	if q.Largest, err = d.bytes("quarantined file largest key", math.MaxUint32); err != nil {
		return q, err
	}
	reason, err := d.bytes("quarantined file reason", MaxReasonLen)
	if err != nil {
		return q, err
	}
	q.Reason = string(reason)
	return q, nil
}

func (d *decoder) newFile() (NewFile, error) {
	var nf NewFile
	var err error
	if nf.Level, err = d.level("new file"); err != nil {
		return nf, err
	}
	m := &nf.Meta
	if m.Num, err = d.uvarint("new file number"); err != nil {
		return nf, err
	}
	if m.Size, err = d.uvarint("new file size"); err != nil {
		return nf, err
	}
	if m.Smallest, err = d.key("new file smallest key"); err != nil {
		return nf, err
	}
	if m.Largest, err = d.key("new file largest key"); err != nil {
		return nf, err
	}
	v, err := d.uvarint("new file smallest sequence number")
	if err != nil {
		return nf, err
	}
	m.SmallestSeq = base.SeqNum(v)
	if v, err = d.uvarint("new file largest sequence number"); err != nil {
		return nf, err
	}
	m.LargestSeq = base.SeqNum(v)
	return nf, nil
}

func corruptf(format string, args ...any) error {
	return base.CorruptionErrorf("manifest: version edit: "+format, args...)
}
