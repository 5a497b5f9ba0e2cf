package version

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

var (
	// ErrMalformed wraps every decoding error caused by bytes that are not a
	// canonical encoding (truncated, out of order, broken invariants).
	ErrMalformed = errors.New("version: malformed encoding")
	// ErrUnknownFormat is returned for a format byte this build does not know
	// (e.g. data written by a newer release).
	ErrUnknownFormat = errors.New("version: unknown encoding format")
)

// objectFormat is the first byte of Object.Encode's output.
const objectFormat = 1

const (
	flagDeleted = 1 << 0
	flagWriteID = 1 << 1
)

// writeIDSize is the encoded size of a sibling's WriteID (when not 0).
const writeIDSize = 8

// Encode appends the canonical binary form of o to dst and returns it:
//
//	byte     format (1)
//	uvarint  n, then n context entries in increasing node order:
//	           uvarint len, node bytes, uvarint counter (> 0)
//	uvarint  m, then m siblings in increasing dot order:
//	           uvarint node index into the context entries above,
//	           uvarint counter (1 ..= context[node]),
//	           byte    flags (bit 0: deleted; bit 1: write ID;
//	                   other bits zero),
//	           8 bytes the write ID, big-endian (not 0), if bit 1 is set,
//	           varint  timestamp (zig-zag),
//	           uvarint len, value bytes (len is 0 for a tombstone)
//
// Referring to the dot's node by its index in the context saves repeating
// node IDs and makes "every dot is covered by the context" structural.
// Equal objects encode to equal bytes. o must be valid (see Validate), as
// every object built by Write, Merge and DecodeObject is; the bytes of an
// invalid object are rejected by DecodeObject. A nil o encodes as empty.
func (o *Object) Encode(dst []byte) []byte {
	if o == nil {
		return append(dst, objectFormat, 0, 0)
	}
	var buf [8]string // node IDs: a clock rarely names more nodes than N
	nodes := o.Context.appendNodes(buf[:0])
	// Grow dst once: the size is known up to varint lengths.
	size := 1 + binary.MaxVarintLen64*2
	for _, n := range nodes {
		size += len(n) + 2*binary.MaxVarintLen64
	}
	for _, s := range o.Siblings {
		size += len(s.Value) + 5*binary.MaxVarintLen64 + writeIDSize
	}
	dst = slices.Grow(dst, size)
	dst = append(dst, objectFormat)
	dst = appendClockNodes(dst, o.Context, nodes)
	dst = binary.AppendUvarint(dst, uint64(len(o.Siblings)))
	for _, s := range o.Siblings {
		i := slices.Index(nodes, s.Dot.Node) // nodes is short
		if i < 0 {
			i = len(nodes) // invalid object: produce bytes the decoder rejects
		}
		dst = binary.AppendUvarint(dst, uint64(i))
		dst = binary.AppendUvarint(dst, s.Dot.Counter)
		var flags byte
		if s.Deleted {
			flags |= flagDeleted
		}
		if s.WriteID != 0 {
			flags |= flagWriteID
		}
		dst = append(dst, flags)
		if s.WriteID != 0 {
			dst = binary.BigEndian.AppendUint64(dst, s.WriteID)
		}
		dst = binary.AppendVarint(dst, s.Timestamp)
		dst = binary.AppendUvarint(dst, uint64(len(s.Value)))
		dst = append(dst, s.Value...)
	}
	return dst
}

// DecodeObject parses Encode's output. It accepts only canonical encodings
// of valid objects (see Object: counters in 1..MaxCounter, well-formed
// actors, every dot covered by the context, siblings sorted without
// duplicates, tombstones without values), so a decoded object re-encodes
// to the same bytes and can be written (Write) and merged without
// surprises. It does not bound the object's size (older releases stored
// up to the engine's value limit; Merge shrinks such an object to
// MaxObjectSize). It returns an error
// wrapping ErrMalformed or ErrUnknownFormat on anything else, never panics,
// and never allocates more than a small multiple of len(b). Values are
// copied, so b may be reused afterwards.
func DecodeObject(b []byte) (*Object, error) {
	sc, nodes, counters, err := scanObject(b, nil, nil)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(nodes))
	ctx := make(Clock, len(nodes))
	for i, n := range nodes {
		names[i] = string(n)
		ctx[names[i]] = counters[i]
	}
	o := &Object{Context: ctx}
	if sc.left > 0 {
		o.Siblings = make([]Sibling, 0, sc.left)
	}
	for {
		r, ok := sc.next(nodes, counters)
		if !ok {
			break
		}
		var value []byte
		if len(r.value) > 0 {
			value = append([]byte(nil), r.value...)
		}
		o.Siblings = append(o.Siblings, Sibling{Dot: Dot{Node: names[r.node], Counter: r.counter}, Value: value, Deleted: r.deleted, Timestamp: r.ts, WriteID: r.writeID})
	}
	if err := sc.finish(); err != nil {
		return nil, err
	}
	return o, nil
}

// DecodeContext returns the causal context of the object Encode wrote to b,
// checking b exactly as DecodeObject does but without building (or copying
// the values of) its siblings: all that a blind write (Object.WriteBlind),
// which supersedes every sibling, needs of the state it replaces.
func DecodeContext(b []byte) (Clock, error) {
	var nodeBuf [8][]byte
	var counterBuf [8]uint64
	sc, nodes, counters, err := scanObject(b, nodeBuf[:0], counterBuf[:0])
	if err != nil {
		return nil, err
	}
	for {
		if _, ok := sc.next(nodes, counters); !ok {
			break
		}
	}
	if err := sc.finish(); err != nil {
		return nil, err
	}
	ctx := make(Clock, len(nodes))
	for i, n := range nodes {
		ctx[string(n)] = counters[i]
	}
	return ctx, nil
}

// DecodeWinner returns what LWW would pick from the object Encode wrote to
// b, without building the object: the winning sibling's value (aliasing b,
// with no capacity beyond its length) and whether it is a tombstone; ok is
// false when there are no siblings. It checks b exactly as DecodeObject
// does and allocates nothing for objects whose context names at most eight
// nodes and that hold at most one sibling with a write ID.
func DecodeWinner(b []byte) (value []byte, deleted, ok bool, err error) {
	value, deleted, ok, _, err = DecodeWinnerLive(b)
	return value, deleted, ok, err
}

// DecodeWinnerLive is DecodeWinner, also counting the object's live
// (non-tombstone) siblings, as a read's sibling metric does.
func DecodeWinnerLive(b []byte) (value []byte, deleted, ok bool, live int, err error) {
	var nodeBuf [8][]byte
	var counterBuf [8]uint64
	sc, nodes, counters, err := scanObject(b, nodeBuf[:0], counterBuf[:0])
	if err != nil {
		return nil, false, false, 0, err
	}
	var win rawSibling
	for {
		r, more := sc.next(nodes, counters)
		if !more {
			break
		}
		if !r.deleted {
			live++
		}
		// Siblings come in increasing dot order, so on equal timestamps the
		// later one has the greater dot and wins, as in LWW.
		if !ok || r.ts >= win.ts {
			win, ok = r, true
		}
	}
	if err := sc.finish(); err != nil {
		return nil, false, false, 0, err
	}
	// Capped: the value aliases b, and an append must not write into b.
	return win.value[:len(win.value):len(win.value)], win.deleted, ok, live, nil
}

// objectScanner walks an encoded object, checking it as it goes, without
// building it. scanObject reads the context; next yields the siblings one
// by one; finish reports the first error, or trailing bytes.
type objectScanner struct {
	d    decoder
	left int // siblings not yet read
	read int // siblings read
	// prevNode and prevCounter are the dot of the sibling read last.
	prevNode    int
	prevCounter uint64
	// named holds the siblings read so far that carry a write ID, to
	// refuse two that are the same write; the first one is kept inline.
	firstNamed rawSibling
	named      []rawSibling
}

// rawSibling is a sibling as encoded: its node is the scanner's
// nodes[node], and value aliases the input.
type rawSibling struct {
	node    int
	counter uint64
	deleted bool
	writeID uint64
	ts      int64
	value   []byte
}

// sameWrite is Sibling.sameWrite for encoded siblings.
func (r rawSibling) sameWrite(t rawSibling) bool {
	return r.writeID != 0 && r.writeID == t.writeID && r.deleted == t.deleted && bytes.Equal(r.value, t.value)
}

// scanObject begins a scan of b, reading its context: it appends the node
// IDs in encoded (sorted) order, aliasing b, to nodes and their entries to
// counters (siblings name their node by its index there), and the caller
// hands both back to next. A caller's stack arrays keep a small scan off
// the heap; the scanner does not hold them for the same reason.
func scanObject(b []byte, nodes [][]byte, counters []uint64) (objectScanner, [][]byte, []uint64, error) {
	if len(b) == 0 {
		return objectScanner{}, nil, nil, fmt.Errorf("%w: empty object", ErrMalformed)
	}
	if b[0] != objectFormat {
		return objectScanner{}, nil, nil, fmt.Errorf("%w: object format %d", ErrUnknownFormat, b[0])
	}
	d := decoder{b: b, off: 1}
	n := d.count(3) // length, at least one node byte, counter
	var prev []byte
	for i := 0; d.err == nil && i < n; i++ {
		node, v := d.clockEntry(i, prev)
		nodes = append(nodes, node)
		counters = append(counters, v)
		prev = node
	}
	left := d.count(4) // index, counter, flags, timestamp: at least 4 bytes each
	return objectScanner{d: d, left: left}, nodes, counters, d.err
}

func (sc *objectScanner) next(nodes [][]byte, counters []uint64) (rawSibling, bool) {
	d := &sc.d
	if d.err != nil || sc.left == 0 {
		return rawSibling{}, false
	}
	i := sc.read
	idx := d.uvarint("sibling node index")
	counter := d.uvarint("sibling counter")
	flags := d.byte("sibling flags")
	var writeID uint64
	if flags&flagWriteID != 0 {
		if id := d.bytes(writeIDSize, "write ID"); d.err == nil {
			writeID = binary.BigEndian.Uint64(id)
		}
	}
	ts := d.varint("sibling timestamp")
	vlen := d.uvarint("value length")
	if d.err != nil {
		return rawSibling{}, false
	}
	if idx >= uint64(len(nodes)) {
		d.fail("sibling %d: node index %d out of range (%d context entries)", i, idx, len(nodes))
		return rawSibling{}, false
	}
	r := rawSibling{node: int(idx), counter: counter, deleted: flags&flagDeleted != 0, writeID: writeID, ts: ts}
	dot := func(node int, counter uint64) Dot { return Dot{Node: string(nodes[node]), Counter: counter} }
	switch {
	case counter == 0 || counter > counters[idx]:
		d.fail("sibling %d: dot %v not covered by context entry %d", i, dot(r.node, counter), counters[idx])
	case flags&^(flagDeleted|flagWriteID) != 0:
		d.fail("sibling %d: unknown flags %#x", i, flags)
	case flags&flagWriteID != 0 && writeID == 0:
		d.fail("sibling %d: write ID 0 written out", i)
	case r.deleted && vlen != 0:
		d.fail("sibling %d: tombstone with a %d-byte value", i, vlen)
	// Node indexes follow node order, so dots compare as (index, counter).
	case i > 0 && (r.node < sc.prevNode || r.node == sc.prevNode && counter <= sc.prevCounter):
		d.fail("sibling %d: dot %v not after %v", i, dot(r.node, counter), dot(sc.prevNode, sc.prevCounter))
	case vlen > 0:
		r.value = d.bytes(vlen, "value")
	}
	if d.err == nil && writeID != 0 {
		sc.checkNamed(i, r, nodes)
	}
	if d.err != nil {
		return rawSibling{}, false
	}
	sc.left--
	sc.read++
	sc.prevNode, sc.prevCounter = r.node, counter
	return r, true
}

// checkNamed refuses r, sibling i, when an earlier sibling is the same
// write, or when r is one more named sibling than MaxSiblings (every object
// this release builds has at most MaxSiblings siblings, and no older one
// has write IDs: the bound keeps this check's cost small on hostile input),
// and remembers it otherwise.
func (sc *objectScanner) checkNamed(i int, r rawSibling, nodes [][]byte) {
	if sc.firstNamed.writeID == 0 {
		sc.firstNamed = r
		return
	}
	if len(sc.named)+1 >= MaxSiblings {
		sc.d.fail("sibling %d: more than %d siblings with write IDs", i, MaxSiblings)
		return
	}
	for j := -1; j < len(sc.named); j++ {
		t := sc.firstNamed
		if j >= 0 {
			t = sc.named[j]
		}
		if t.sameWrite(r) {
			sc.d.fail("sibling %d: the same write %016x as the sibling with dot %s:%d", i, r.writeID, nodes[t.node], t.counter)
			return
		}
	}
	sc.named = append(sc.named, r)
}

func (sc *objectScanner) finish() error {
	d := &sc.d
	if d.err == nil && sc.left > 0 {
		d.fail("%d siblings missing", sc.left)
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes after object", len(d.b)-d.off)
	}
	return d.err
}

// decoder is a bounds-checked cursor; the first error sticks and every later
// read becomes a no-op, which keeps the decoding code linear.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format+" (at byte %d)", append(append([]any{ErrMalformed}, args...), d.off)...)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail("bad %s varint", what)
		return 0
	}
	// Canonical form: reject over-long varints (a trailing 0x00 group), so
	// decode(b) re-encodes to exactly b.
	if n > 1 && d.b[d.off+n-1] == 0 {
		d.fail("non-minimal %s varint", what)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint(what string) int64 {
	u := d.uvarint(what)
	// Zig-zag, as binary.AppendVarint writes it.
	return int64(u>>1) ^ -int64(u&1)
}

func (d *decoder) byte(what string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("missing %s", what)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) bytes(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.fail("%s of %d bytes overruns input (%d left)", what, n, len(d.b)-d.off)
		return nil
	}
	s := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return s
}

// count reads an element count and checks it against the bytes left (each
// element needs at least minSize bytes), so a forged count cannot trigger a
// huge allocation.
func (d *decoder) count(minSize int) int {
	n := d.uvarint("count")
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)-d.off)/uint64(minSize) || n > math.MaxInt32 {
		d.fail("count %d exceeds remaining input", n)
		return 0
	}
	return int(n)
}

// clock reads a clock body and also returns its nodes in encoded (sorted)
// order, which sibling node indexes refer to.
func (d *decoder) clock() (Clock, []string) {
	n := d.count(3) // length, at least one node byte, counter
	if n > MaxContextEntries {
		d.fail("clock of %d entries exceeds the limit of %d (MaxContextEntries)", n, MaxContextEntries)
		return nil, nil
	}
	c := make(Clock, n)
	nodes := make([]string, 0, n)
	var prev []byte
	for i := 0; d.err == nil && i < n; i++ {
		node, v := d.clockEntry(i, prev)
		if d.err != nil {
			break
		}
		c[string(node)] = v
		nodes = append(nodes, string(node))
		prev = node
	}
	return c, nodes
}

// clockEntry reads entry i of a clock body, prev being entry i-1's node:
// a node ID (non-empty, after prev) and its counter (non-zero). The node
// aliases the input.
func (d *decoder) clockEntry(i int, prev []byte) (node []byte, v uint64) {
	l := d.uvarint("node length")
	node = d.bytes(l, "node")
	v = d.uvarint("counter")
	if d.err != nil {
		return nil, 0
	}
	switch {
	case len(node) == 0:
		d.fail("empty node id")
	case !validActor(node):
		d.fail("malformed actor %q", node)
	case v == 0:
		d.fail("zero counter for node %q", node)
	case v > MaxCounter:
		d.fail("counter %d of node %q exceeds MaxCounter", v, node)
	case i > 0 && bytes.Compare(prev, node) >= 0:
		d.fail("node %q not after %q", node, prev)
	}
	return node, v
}
