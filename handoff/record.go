package handoff

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ringkv/ringkv/version"
)

// A hint is stored under the key (after the store's hint prefix)
//
//	len(target) (1 byte) | target | sequence (8 bytes, big-endian) | user key
//
// so that one target's hints form one contiguous range, oldest first (the
// sequence grows with every hint this node keeps), and a target's ID cannot
// be the prefix of another's range. The value is
//
//	format (1) | uvarint created (Unix nanoseconds) | encoded version.Object
const recordFormat = 1

var errBadRecord = errors.New("handoff: malformed hint record")

// maxTarget is the longest target a record's one-byte length can hold.
// Node IDs are at most version.MaxNodeIDSize (< 256) bytes.
const maxTarget = 255

// errTargetTooLong: a hint's target does not fit a record's length byte.
var errTargetTooLong = fmt.Errorf("handoff: target longer than %d bytes", maxTarget)

// targetPrefix is the key prefix of target's hints (target at most
// maxTarget bytes: those read back from records, or checked by encodeKey).
func targetPrefix(target string) []byte {
	return append([]byte{byte(len(target))}, target...)
}

// encodeKey is the record key of a hint; it refuses a target longer than
// maxTarget bytes, whose length would not fit its byte (truncated, it
// would file the hint under another target's range).
func encodeKey(target string, seq uint64, key []byte) ([]byte, error) {
	if len(target) > maxTarget {
		return nil, fmt.Errorf("%w: %d", errTargetTooLong, len(target))
	}
	b := make([]byte, 0, 1+len(target)+8+len(key))
	b = append(b, targetPrefix(target)...)
	b = binary.BigEndian.AppendUint64(b, seq)
	return append(b, key...), nil
}

// decodeKey splits a hint record's key.
func decodeKey(rec []byte) (target string, seq uint64, key []byte, err error) {
	if len(rec) < 1 || len(rec) < 1+int(rec[0])+8 {
		return "", 0, nil, fmt.Errorf("%w: key %x", errBadRecord, rec)
	}
	n := int(rec[0])
	return string(rec[1 : 1+n]), binary.BigEndian.Uint64(rec[1+n:]), rec[1+n+8:], nil
}

func encodeValue(created time.Time, obj *version.Object) []byte {
	b := binary.AppendUvarint([]byte{recordFormat}, uint64(created.UnixNano()))
	return obj.Encode(b)
}

func decodeValue(v []byte) (created time.Time, obj *version.Object, err error) {
	if len(v) < 2 || v[0] != recordFormat {
		return time.Time{}, nil, fmt.Errorf("%w: value format", errBadRecord)
	}
	ns, n := binary.Uvarint(v[1:])
	if n <= 0 {
		return time.Time{}, nil, fmt.Errorf("%w: creation time", errBadRecord)
	}
	created = time.Unix(0, int64(ns))
	if obj, err = version.DecodeObject(v[1+n:]); err != nil {
		return time.Time{}, nil, fmt.Errorf("%w: %v", errBadRecord, err)
	}
	return created, obj, nil
}

// createdOf reads only the creation time of a hint record's value.
func createdOf(v []byte) (time.Time, error) {
	if len(v) < 2 || v[0] != recordFormat {
		return time.Time{}, fmt.Errorf("%w: value format", errBadRecord)
	}
	ns, n := binary.Uvarint(v[1:])
	if n <= 0 {
		return time.Time{}, fmt.Errorf("%w: creation time", errBadRecord)
	}
	return time.Unix(0, int64(ns)), nil
}

// recordSize is what a hint counts against its target's byte bound: its
// stored key (with the store's one-byte prefix) and value.
func recordSize(key, value []byte) int64 { return int64(1 + len(key) + len(value)) }
