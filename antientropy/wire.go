package antientropy

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ringkv/ringkv/version"
)

// Peer message kinds of the exchange. Kinds 64 to 71 belong to this
// package; the node's transport handler passes them to Service.Handle.
const (
	// KindRoots asks for the roots of some partitions' trees.
	// Request: uvarint count | count × uvarint partition.
	// Reply: count × (trusted byte | 8-byte root) | 8-byte incarnation of
	// the replying store (a new one voids earlier verifications).
	KindRoots uint8 = 64
	// KindLeaves asks for one partition's leaves.
	// Request: uvarint partition. Reply: trusted byte | Leaves × 8 bytes
	// (only the byte when untrusted).
	KindLeaves uint8 = 65
	// KindKeys asks for the keys and hashes stored in some leaves of a
	// partition. Request: uvarint partition | uvarint count | count ×
	// uvarint leaf. Reply: uvarint count | count × (uvarint len(key) | key |
	// 8-byte hash), in token order.
	KindKeys uint8 = 66
	// KindGet asks for the objects of some keys.
	// Request: uvarint count | count × (uvarint len(key) | key).
	// Reply: count × (uvarint len(object) | object), 0 for an absent key.
	KindGet uint8 = 67
	// KindPut gives objects to merge.
	// Request: uvarint count | count × (uvarint len(key) | key | uvarint
	// len(object) | object). Reply: empty.
	KindPut uint8 = 68
)

// Owns reports whether a peer message kind belongs to this package.
func Owns(kind uint8) bool { return kind >= 64 && kind <= 71 }

// Bounds a request or reply may declare, checked before anything is
// allocated for it.
const (
	maxEntries    = 1 << 16  // partitions, leaves or keys in one message
	maxReplyBytes = 12 << 20 // below the transport's 16 MiB frame
)

var errMalformed = errors.New("antientropy: malformed message")

// errTooMany is a KindKeys request whose reply would not fit a frame; the
// asker splits it.
var errTooMany = errors.New("antientropy: too many keys for one reply")

func appendUvarints(dst []byte, vs []int) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(vs)))
	for _, v := range vs {
		dst = binary.AppendUvarint(dst, uint64(v))
	}
	return dst
}

// readUvarints reads a count and that many values, each below limit.
func readUvarints(b []byte, limit int) ([]int, []byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > maxEntries || n > uint64(len(b)) {
		return nil, nil, errMalformed
	}
	b = b[w:]
	vs := make([]int, n)
	for i := range vs {
		v, w := binary.Uvarint(b)
		if w <= 0 || v >= uint64(limit) {
			return nil, nil, fmt.Errorf("%w: value out of range", errMalformed)
		}
		vs[i], b = int(v), b[w:]
	}
	return vs, b, nil
}

func readBytes(b []byte) (field, rest []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, errMalformed
	}
	return b[w : w+int(n)], b[w+int(n):], nil
}

func appendBytes(dst, field []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(field)))
	return append(dst, field...)
}

// keyHash is one key of a KindKeys reply.
type keyHash struct {
	key  string
	hash uint64
}

func decodeKeyHashes(b []byte) ([]keyHash, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)/9) { // each entry takes 9 bytes at least
		return nil, errMalformed
	}
	b = b[w:]
	out := make([]keyHash, 0, n)
	for range n {
		k, rest, err := readBytes(b)
		if err != nil || len(rest) < 8 {
			return nil, errMalformed
		}
		out = append(out, keyHash{string(k), binary.BigEndian.Uint64(rest)})
		b = rest[8:]
	}
	if len(b) != 0 {
		return nil, errMalformed
	}
	return out, nil
}

func encodeKeys(keys []string) []byte {
	b := binary.AppendUvarint(nil, uint64(len(keys)))
	for _, k := range keys {
		b = appendBytes(b, []byte(k))
	}
	return b
}

func decodeKeys(b []byte) ([][]byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > maxEntries || n > uint64(len(b)) {
		return nil, errMalformed
	}
	b = b[w:]
	keys := make([][]byte, 0, n)
	for range n {
		k, rest, err := readBytes(b)
		if err != nil {
			return nil, err
		}
		keys, b = append(keys, k), rest
	}
	if len(b) != 0 {
		return nil, errMalformed
	}
	return keys, nil
}

// decodeObjects reads a KindGet reply for want keys (nil for absent ones).
func decodeObjects(b []byte, want int) ([]*version.Object, error) {
	objs := make([]*version.Object, want)
	for i := range objs {
		enc, rest, err := readBytes(b)
		if err != nil {
			return nil, err
		}
		if len(enc) > 0 {
			if objs[i], err = version.DecodeObject(enc); err != nil {
				return nil, fmt.Errorf("%w: object %d: %v", errMalformed, i, err)
			}
		}
		b = rest
	}
	if len(b) != 0 {
		return nil, errMalformed
	}
	return objs, nil
}

func decodePut(b []byte) ([][]byte, []*version.Object, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > maxEntries || n > uint64(len(b)) {
		return nil, nil, errMalformed
	}
	b = b[w:]
	keys := make([][]byte, 0, n)
	objs := make([]*version.Object, 0, n)
	for range n {
		k, rest, err := readBytes(b)
		if err != nil {
			return nil, nil, err
		}
		enc, rest, err := readBytes(rest)
		if err != nil {
			return nil, nil, err
		}
		obj, err := version.DecodeObject(enc)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: object of %q: %v", errMalformed, k, err)
		}
		keys, objs, b = append(keys, k), append(objs, obj), rest
	}
	if len(b) != 0 {
		return nil, nil, errMalformed
	}
	return keys, objs, nil
}
