package coordinator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/transport"

	"github.com/ringkv/ringkv/version"
)

// Peer message kinds.
const (
	// kindRead asks a replica for its object of a key.
	// Request: key. Reply: encoded object, or empty when absent.
	kindRead uint8 = 1
	// kindReplicate sends a version to a replica, which merges it.
	// Request: uvarint len(key) | key | encoded object. Reply: empty.
	kindReplicate uint8 = 2
	// kindCoordinate asks a replica to coordinate a client write.
	// Request: see encodeWrite. Reply: the new encoded object.
	kindCoordinate uint8 = 3
	// kindReplicateBatch sends several versions to a replica, which merges
	// them with one engine batch. Request: see encodeReplicateBatch.
	// Reply: empty.
	kindReplicateBatch uint8 = 4
	// kindReadBatch asks a replica for its objects of several keys.
	// Request: see encodeKeys. Reply: uvarint count | count × (uvarint
	// len(object) | encoded object), a length of 0 for an absent key.
	kindReadBatch uint8 = 5
	// kindHandoff sends versions to a fallback standing in for a primary
	// that is down (sloppy quorum). The fallback keeps them durably as
	// hints for that primary and merges them into its store before it
	// answers. Request: see encodeHandoff. Reply: empty.
	kindHandoff uint8 = 6
	// kindReadBatchDigest is kindReadBatch carrying, per key, the hash
	// (replica.ObjectHash) of the asker's state: a replica whose state
	// hashes the same answers "same" instead of sending it. Request: see
	// encodeDigestKeys. Reply: see decodeDigestReply. A node that predates
	// it refuses it as an unknown kind.
	//
	// Kinds 7 and 8 are left unused: a reverted change briefly gave them
	// to writes.
	kindReadBatchDigest uint8 = 9
	// kindReadDigest is kindRead with the hash of the asker's state: a
	// replica whose state hashes the same answers "same". Request: see
	// encodeDigestKey. Reply: see decodeDigestAnswer.
	kindReadDigest uint8 = 10
	// kindReplicateCovering sends the versions of checked blind writes
	// (see checked.go): the replica stores each one only if it descends
	// what the replica holds for its key (replica.Store.ApplyCovering).
	// Request: as kindReplicateBatch. Reply: see encodeCoveringReply. A
	// node that predates it refuses it as an unknown kind, having stored
	// nothing.
	kindReplicateCovering uint8 = 11
)

// encodeCoveringReply: uvarint count | count entries, each a tag:
// coveringStored; coveringNotStored; or coveringHeld followed by uvarint
// len(state) | state, the replica's encoded object for the key (not
// stored, and this is what the replica holds, for the sender to learn).
// States are included while the reply stays under coveringReplyStates
// bytes; past that, coveringNotStored.
func encodeCoveringReply(stored []bool, held []*version.Object) []byte {
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(stored)), uint64(len(stored)))
	for i, ok := range stored {
		switch {
		case ok:
			b = append(b, coveringStored)
		case held != nil && held[i] != nil && len(b)+1+binary.MaxVarintLen64+held[i].EncodedSize()+len(stored)-i < coveringReplyStates:
			b = append(b, coveringHeld)
			enc := held[i].Encode(nil)
			b = binary.AppendUvarint(b, uint64(len(enc)))
			b = append(b, enc...)
		default:
			b = append(b, coveringNotStored)
		}
	}
	return b
}

// Tags of a kindReplicateCovering reply's entries.
const (
	coveringNotStored byte = 0
	coveringStored    byte = 1
	coveringHeld      byte = 2
)

// coveringReplyStates bounds the states a kindReplicateCovering reply
// carries (well under the transport's frame limit).
const coveringReplyStates = 1 << 20

// decodeCoveringReply decodes a reply of want entries: whether each was
// stored, and the state the replica holds for each one it did not store
// (nil when it did not say).
func decodeCoveringReply(b []byte, want int) (stored []bool, held []*version.Object, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n != uint64(want) {
		return nil, nil, errMalformed
	}
	b = b[w:]
	stored = make([]bool, want)
	for i := range want {
		if len(b) == 0 {
			return nil, nil, errMalformed
		}
		tag := b[0]
		b = b[1:]
		switch tag {
		case coveringNotStored:
		case coveringStored:
			stored[i] = true
		case coveringHeld:
			var enc []byte
			if enc, b, err = readBytes(b); err != nil {
				return nil, nil, err
			}
			obj, err := version.DecodeObject(enc)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: held state: %v", errMalformed, err)
			}
			if held == nil {
				held = make([]*version.Object, want)
			}
			held[i] = obj
		default:
			return nil, nil, errMalformed
		}
	}
	if len(b) != 0 {
		return nil, nil, errMalformed
	}
	return stored, held, nil
}

// encodeDigestKey: uvarint len(key) | key | 8-byte little-endian hash.
func encodeDigestKey(key []byte, hash uint64) []byte {
	b := binary.AppendUvarint(make([]byte, 0, len(key)+binary.MaxVarintLen64+8), uint64(len(key)))
	b = append(b, key...)
	return binary.LittleEndian.AppendUint64(b, hash)
}

func decodeDigestKey(b []byte) ([]byte, uint64, error) {
	key, rest, err := readBytes(b)
	if err != nil || len(rest) != 8 {
		return nil, 0, errMalformed
	}
	return key, binary.LittleEndian.Uint64(rest), nil
}

// appendDigestAnswer appends one key's answer to a digest read: a tag
// (digestAbsent, digestSame, digestObject), and for digestObject uvarint
// len(raw) | raw, the replica's stored bytes.
func appendDigestAnswer(b []byte, raw []byte, hash uint64, found bool, askerHash uint64) []byte {
	switch {
	case !found:
		return append(b, digestAbsent)
	case hash == askerHash:
		return append(b, digestSame)
	}
	b = append(b, digestObject)
	b = binary.AppendUvarint(b, uint64(len(raw)))
	return append(b, raw...)
}

// decodeDigestAnswer parses a kindReadDigest reply: one answer as
// appendDigestAnswer writes it.
func decodeDigestAnswer(b []byte) (obj *version.Object, same bool, err error) {
	objs, sames, rest, err := decodeDigestAnswers(b, 1)
	if err != nil || len(rest) != 0 {
		return nil, false, errMalformed
	}
	return objs[0], sames[0], nil
}

// encodeDigestKeys: uvarint count | count × (uvarint len(key) | key |
// 8-byte little-endian hash).
func encodeDigestKeys(keys [][]byte, hashes []uint64) []byte {
	size := binary.MaxVarintLen64
	for _, k := range keys {
		size += len(k) + binary.MaxVarintLen64 + 8
	}
	b := binary.AppendUvarint(make([]byte, 0, size), uint64(len(keys)))
	for i, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.LittleEndian.AppendUint64(b, hashes[i])
	}
	return b
}

func decodeDigestKeys(b []byte) ([][]byte, []uint64, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > maxBatchEntries || n > uint64(len(b)) {
		return nil, nil, errMalformed
	}
	b = b[w:]
	keys, hashes := make([][]byte, 0, n), make([]uint64, 0, n)
	for range n {
		k, rest, err := readBytes(b)
		if err != nil || len(rest) < 8 {
			return nil, nil, errMalformed
		}
		keys, hashes = append(keys, k), append(hashes, binary.LittleEndian.Uint64(rest))
		b = rest[8:]
	}
	if len(b) != 0 {
		return nil, nil, errMalformed
	}
	return keys, hashes, nil
}

// Entries of a kindReadBatchDigest reply.
const (
	digestAbsent = 0 // the replica holds nothing for the key
	digestSame   = 1 // its state hashes as the asker's
	digestObject = 2 // followed by uvarint len(object) | encoded object
)

// decodeDigestReply parses a kindReadBatchDigest reply for want keys:
// uvarint count | count answers as appendDigestAnswer writes them. An
// absent key's object is nil; same[i] says the replica's state is the
// asker's (objs[i] nil).
func decodeDigestReply(b []byte, want int) (objs []*version.Object, same []bool, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n != uint64(want) {
		return nil, nil, errMalformed
	}
	objs, same, rest, err := decodeDigestAnswers(b[w:], want)
	if err != nil || len(rest) != 0 {
		return nil, nil, errMalformed
	}
	return objs, same, nil
}

// decodeDigestAnswers parses n digest answers from b, returning what
// follows them.
func decodeDigestAnswers(b []byte, n int) (objs []*version.Object, same []bool, rest []byte, err error) {
	objs, same = make([]*version.Object, n), make([]bool, n)
	for i := range objs {
		if len(b) == 0 {
			return nil, nil, nil, errMalformed
		}
		tag := b[0]
		b = b[1:]
		switch tag {
		case digestAbsent:
		case digestSame:
			same[i] = true
		case digestObject:
			enc, after, err := readBytes(b)
			if err != nil || len(enc) == 0 {
				return nil, nil, nil, errMalformed
			}
			if objs[i], err = version.DecodeObject(enc); err != nil {
				return nil, nil, nil, fmt.Errorf("%w: digest read object %d: %v", errMalformed, i, err)
			}
			b = after
		default:
			return nil, nil, nil, errMalformed
		}
	}
	return objs, same, b, nil
}

// encodeKeys: uvarint count | count × (uvarint len(key) | key).
func encodeKeys(keys [][]byte) []byte {
	size := binary.MaxVarintLen64
	for _, k := range keys {
		size += len(k) + binary.MaxVarintLen64
	}
	b := binary.AppendUvarint(make([]byte, 0, size), uint64(len(keys)))
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	return b
}

func decodeKeys(b []byte) ([][]byte, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > maxBatchEntries || n > uint64(len(b)) {
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

// decodeReadBatchReply parses a kindReadBatch reply for want keys.
func decodeReadBatchReply(b []byte, want int) ([]*version.Object, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n != uint64(want) {
		return nil, errMalformed
	}
	b = b[w:]
	objs := make([]*version.Object, want)
	for i := range objs {
		enc, rest, err := readBytes(b)
		if err != nil {
			return nil, err
		}
		if len(enc) > 0 {
			if objs[i], err = version.DecodeObject(enc); err != nil {
				return nil, fmt.Errorf("%w: read batch object %d: %v", errMalformed, i, err)
			}
		}
		b = rest
	}
	if len(b) != 0 {
		return nil, errMalformed
	}
	return objs, nil
}

// maxBatchEntries bounds the entries a kindReplicateBatch message may
// declare, so that a malformed count cannot make the receiver allocate.
const maxBatchEntries = 1 << 16

// encodeReplicateBatch: uvarint count | count × (uvarint len(key) | key |
// uvarint len(object) | encoded object). encoded holds the objects already
// encoded (see splitReplicateBatch).
func encodeReplicateBatch(keys, encoded [][]byte) []byte {
	size := binary.MaxVarintLen64
	for i := range keys {
		size += len(keys[i]) + len(encoded[i]) + 2*binary.MaxVarintLen64
	}
	b := binary.AppendUvarint(make([]byte, 0, size), uint64(len(keys)))
	for i, key := range keys {
		b = binary.AppendUvarint(b, uint64(len(key)))
		b = append(b, key...)
		b = binary.AppendUvarint(b, uint64(len(encoded[i])))
		b = append(b, encoded[i]...)
	}
	return b
}

func decodeReplicateBatch(b []byte) ([][]byte, []*version.Object, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n == 0 || n > maxBatchEntries || n > uint64(len(b)) {
		return nil, nil, errMalformed
	}
	b = b[w:]
	keys := make([][]byte, 0, n)
	objs := make([]*version.Object, 0, n)
	for range n {
		key, rest, err := readBytes(b)
		if err != nil {
			return nil, nil, err
		}
		enc, rest, err := readBytes(rest)
		if err != nil {
			return nil, nil, err
		}
		obj, err := version.DecodeObject(enc)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: object of %q: %v", errMalformed, key, err)
		}
		keys, objs, b = append(keys, key), append(objs, obj), rest
	}
	if len(b) != 0 {
		return nil, nil, errMalformed
	}
	return keys, objs, nil
}

// notReplicaRefusal is in the error a node answers a forwarded write with
// when its ring says it is not a replica of the key (the rings of the two
// nodes disagree while a change spreads): it applied nothing, so the
// forwarding node tries the next replica.
const notReplicaRefusal = "is not a replica of"

// writeRequest is a client write forwarded to a replica.
type writeRequest struct {
	key     []byte
	value   []byte
	deleted bool
	hasCtx  bool
	ctx     version.Clock
	w       int
	pw      int
	// dc is the local datacenter of a datacenter level (LOCAL_ONE,
	// LOCAL_QUORUM), set by the node that forwards the write: the
	// datacenter of the node the client talked to. "" means the
	// coordinating node's own.
	dc string
	// id is the client's name for the write (0: none; see replica.Write).
	id uint64
}

// levelBase is what levels are offset by in a write that carries a
// datacenter (flag 8): above the 2^20 that nodes before datacenter levels
// accept, so that they refuse such a write as malformed instead of
// reading LOCAL_QUORUM as another level.
const levelBase = 1<<21 + 8

// encodeWrite: flags byte (1 deleted, 2 has context, 4 has pw, 8 has a
// datacenter field, levels offset by levelBase) | uvarint w+3 (levels are
// negative; w+levelBase with flag 8) | [uvarint pw+levelBase, with flag 4]
// | [uvarint len(dc) | dc, with flag 8; dc may be empty] | [8 bytes
// write ID, big-endian, not 0, with flag 16] | uvarint len(key) | key |
// uvarint len(ctx) | ctx | value.
//
// A write with pw or a datacenter (level) sets flag 8: nodes before PW
// ignore flag 4 and would read the pw field as the key's length (and apply
// the write to another key), but they refuse a w field above 2^20 as
// malformed. Flag 4 is never sent without flag 8. A write with neither
// stays byte for byte what those nodes read. Nodes before write IDs refuse
// flag 16 as unknown, so a named write forwarded to one fails instead of
// being applied without its ID.
func encodeWrite(r writeRequest) []byte {
	var flags byte
	if r.deleted {
		flags |= 1
	}
	if r.pw != Default {
		flags |= 4
	}
	offset := 3
	dcFlag := r.dc != "" || isDCLevel(r.w) || r.pw != Default
	if dcFlag {
		flags |= 8
		offset = levelBase
	}
	var ctxBytes []byte
	if r.hasCtx {
		flags |= 2
		ctxBytes = version.EncodeClock(r.ctx)
	}
	if r.id != 0 {
		flags |= 16
	}
	b := []byte{flags}
	b = binary.AppendUvarint(b, uint64(r.w+offset))
	if r.pw != Default {
		b = binary.AppendUvarint(b, uint64(r.pw+offset))
	}
	if dcFlag {
		b = binary.AppendUvarint(b, uint64(len(r.dc)))
		b = append(b, r.dc...)
	}
	if r.id != 0 {
		b = binary.BigEndian.AppendUint64(b, r.id)
	}
	b = binary.AppendUvarint(b, uint64(len(r.key)))
	b = append(b, r.key...)
	b = binary.AppendUvarint(b, uint64(len(ctxBytes)))
	b = append(b, ctxBytes...)
	return append(b, r.value...)
}

var errMalformed = errors.New("malformed peer message")

// writeFlags are the flag bits decodeWrite knows; it refuses any other.
const writeFlags = 1 | 2 | 4 | 8 | 16

func decodeWrite(b []byte) (writeRequest, error) {
	var r writeRequest
	if len(b) < 1 {
		return r, errMalformed
	}
	flags := b[0]
	if flags&^writeFlags != 0 {
		// A field of a later release: refused rather than misread.
		return r, fmt.Errorf("%w: unknown write flags %#x", errMalformed, flags&^writeFlags)
	}
	r.deleted = flags&1 != 0
	r.hasCtx = flags&2 != 0
	b = b[1:]
	offset, lowest := uint64(3), uint64(0)
	if flags&8 != 0 {
		offset, lowest = levelBase, levelBase+EachQuorum
	}
	level := func() (int, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 || v < lowest || v > offset+1<<20 {
			return 0, errMalformed
		}
		b = b[n:]
		return int(v) - int(offset), nil
	}
	var err error
	if r.w, err = level(); err != nil {
		return r, err
	}
	if flags&4 != 0 {
		if r.pw, err = level(); err != nil {
			return r, err
		}
	}
	if flags&8 != 0 {
		var dc []byte
		if dc, b, err = readBytes(b); err != nil {
			return r, err
		}
		r.dc = string(dc)
	}
	if flags&16 != 0 {
		if len(b) < 8 {
			return r, errMalformed
		}
		if r.id = binary.BigEndian.Uint64(b); r.id == 0 {
			return r, fmt.Errorf("%w: write ID 0 written out", errMalformed)
		}
		b = b[8:]
	}
	if r.key, b, err = readBytes(b); err != nil {
		return r, err
	}
	var ctxBytes []byte
	if ctxBytes, b, err = readBytes(b); err != nil {
		return r, err
	}
	if r.hasCtx {
		if r.ctx, err = version.DecodeClock(ctxBytes); err != nil {
			return r, fmt.Errorf("%w: context: %v", errMalformed, err)
		}
	}
	r.value = b
	return r, nil
}

func readBytes(b []byte) (field, rest []byte, err error) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, errMalformed
	}
	return b[w : w+int(n)], b[w+int(n):], nil
}

func encodeReplicate(key []byte, obj *version.Object) []byte {
	b := binary.AppendUvarint(nil, uint64(len(key)))
	b = append(b, key...)
	return obj.Encode(b)
}

// appendReplicate appends a kindReplicate request for key with its object
// already encoded.
func appendReplicate(dst, key, encoded []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	return append(dst, encoded...)
}

// errLeft refuses a write sent to a node that has left the ring.
var errLeft = errors.New("this node has left the ring: it takes no more writes (send them to the key's owners)")

// Handle serves peer requests; the node's transport server calls it.
//
// A node that has left refuses writes (replication, stand-in copies): it
// is about to be stopped, and a write it acknowledged would leave with it.
// The sender keeps a hint, which goes to the key's owners once it sees the
// node left.
func (c *Coordinator) Handle(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
	switch kind {
	case kindReplicate, kindReplicateBatch, kindHandoff:
		if me, ok := c.cluster.Ring().Member(c.self); ok && me.State == ring.StateLeft {
			return nil, errLeft
		}
	}
	switch kind {
	case kindRead:
		obj, err := c.store.Get(payload)
		if err != nil || obj == nil {
			return nil, err
		}
		return obj.Encode(nil), nil
	case kindReplicate:
		key, rest, err := readBytes(payload)
		if err != nil {
			return nil, err
		}
		obj, err := version.DecodeObject(rest)
		if err != nil {
			return nil, fmt.Errorf("replicate %q: %w", key, err)
		}
		return nil, c.applyReplicated([][]byte{key}, []*version.Object{obj})
	case kindReplicateBatch:
		keys, objs, err := decodeReplicateBatch(payload)
		if err != nil {
			return nil, err
		}
		return nil, c.applyReplicated(keys, objs)
	case kindReplicateCovering:
		keys, objs, err := decodeReplicateBatch(payload)
		if err != nil {
			return nil, err
		}
		if me, ok := c.cluster.Ring().Member(c.self); ok && me.State == ring.StateLeft {
			// Refused as other writes are (errLeft), but answered so
			// that the sender knows nothing was stored.
			return encodeCoveringReply(make([]bool, len(keys)), nil), nil
		}
		stored, held, err := c.applyCovering(keys, objs)
		if err != nil {
			return nil, err
		}
		return encodeCoveringReply(stored, held), nil
	case kindHandoff:
		primary, keys, objs, err := decodeHandoff(payload)
		if err != nil {
			return nil, err
		}
		return nil, c.standIn(primary, keys, objs)
	case kindReadBatchDigest:
		keys, hashes, err := decodeDigestKeys(payload)
		if err != nil {
			return nil, err
		}
		reply := binary.AppendUvarint(nil, uint64(len(keys)))
		for i, key := range keys {
			raw, hash, found, err := c.store.GetRaw(key)
			if err != nil {
				return nil, err
			}
			reply = appendDigestAnswer(reply, raw, hash, found, hashes[i])
		}
		return reply, nil
	case kindReadDigest:
		key, askerHash, err := decodeDigestKey(payload)
		if err != nil {
			return nil, err
		}
		raw, hash, found, err := c.store.GetRaw(key)
		if err != nil {
			return nil, err
		}
		return appendDigestAnswer(nil, raw, hash, found, askerHash), nil
	case kindReadBatch:
		keys, err := decodeKeys(payload)
		if err != nil {
			return nil, err
		}
		reply := binary.AppendUvarint(nil, uint64(len(keys)))
		for _, key := range keys {
			obj, err := c.store.Get(key)
			if err != nil {
				return nil, err
			}
			if obj == nil {
				reply = append(reply, 0)
				continue
			}
			enc := obj.Encode(nil)
			reply = binary.AppendUvarint(reply, uint64(len(enc)))
			reply = append(reply, enc...)
		}
		return reply, nil
	case kindCoordinate:
		req, err := decodeWrite(payload)
		if err != nil {
			return nil, err
		}
		if c.o.IgnoreWriteIDs {
			req.id = 0
		}
		rt, err := c.route(req.key)
		if err != nil {
			return nil, err
		}
		if !contains(rt.pref, c.self) {
			// The ring changed under the forwarding node.
			return nil, fmt.Errorf("node %s %s %q", c.self, notReplicaRefusal, req.key)
		}
		obj, err := c.coordinateWrite(ctx, req, rt)
		if err != nil {
			return nil, err
		}
		return obj.Encode(nil), nil
	}
	return nil, fmt.Errorf("%s %d", unknownKindRefusal, kind)
}

// unknownKindRefusal starts the error a node returns for a message kind
// it does not know, before acting on it. Nodes of other releases look for
// it (unknownKind), so it must not change.
const unknownKindRefusal = "unknown peer message kind"

// unknownKind reports whether err is a peer's refusal of a message kind it
// does not know.
func unknownKind(err error) bool {
	var re *transport.RemoteError
	return errors.As(err, &re) && strings.HasPrefix(re.Message, unknownKindRefusal)
}
