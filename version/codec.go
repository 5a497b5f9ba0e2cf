package version

import (
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

const flagDeleted = 1 << 0

// Encode appends the canonical binary form of o to dst and returns it:
//
//	byte     format (1)
//	uvarint  n, then n context entries in increasing node order:
//	           uvarint len, node bytes, uvarint counter (> 0)
//	uvarint  m, then m siblings in increasing dot order:
//	           uvarint node index into the context entries above,
//	           uvarint counter (1 ..= context[node]),
//	           byte    flags (bit 0: deleted; other bits zero),
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
		size += len(s.Value) + 5*binary.MaxVarintLen64
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
		dst = append(dst, flags)
		dst = binary.AppendVarint(dst, s.Timestamp)
		dst = binary.AppendUvarint(dst, uint64(len(s.Value)))
		dst = append(dst, s.Value...)
	}
	return dst
}

// DecodeObject parses Encode's output. It accepts only canonical encodings
// (so a decoded object re-encodes to the same bytes), returns an error
// wrapping ErrMalformed or ErrUnknownFormat on anything else, never panics,
// and never allocates more than a small multiple of len(b). Values are
// copied, so b may be reused afterwards.
func DecodeObject(b []byte) (*Object, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty object", ErrMalformed)
	}
	if b[0] != objectFormat {
		return nil, fmt.Errorf("%w: object format %d", ErrUnknownFormat, b[0])
	}
	d := decoder{b: b, off: 1}
	ctx, nodes := d.clock()
	m := d.count(4) // index, counter, flags, timestamp: at least 4 bytes each
	o := &Object{Context: ctx}
	if d.err == nil && m > 0 {
		o.Siblings = make([]Sibling, 0, m)
	}
	for i := 0; d.err == nil && i < m; i++ {
		idx := d.uvarint("sibling node index")
		counter := d.uvarint("sibling counter")
		flags := d.byte("sibling flags")
		ts := d.varint("sibling timestamp")
		vlen := d.uvarint("value length")
		if d.err != nil {
			break
		}
		if idx >= uint64(len(nodes)) {
			d.fail("sibling %d: node index %d out of range (%d context entries)", i, idx, len(nodes))
			break
		}
		dot := Dot{Node: nodes[idx], Counter: counter}
		if counter == 0 || counter > ctx[dot.Node] {
			d.fail("sibling %d: dot %v not covered by context %v", i, dot, ctx)
			break
		}
		if flags&^flagDeleted != 0 {
			d.fail("sibling %d: unknown flags %#x", i, flags)
			break
		}
		deleted := flags&flagDeleted != 0
		if deleted && vlen != 0 {
			d.fail("sibling %d: tombstone with a %d-byte value", i, vlen)
			break
		}
		if n := len(o.Siblings); n > 0 && o.Siblings[n-1].Dot.Compare(dot) >= 0 {
			d.fail("sibling %d: dot %v not after %v", i, dot, o.Siblings[n-1].Dot)
			break
		}
		var value []byte
		if vlen > 0 {
			raw := d.bytes(vlen, "value")
			if d.err != nil {
				break
			}
			value = append([]byte(nil), raw...)
		}
		o.Siblings = append(o.Siblings, Sibling{Dot: dot, Value: value, Deleted: deleted, Timestamp: ts})
	}
	if d.err == nil && d.off != len(b) {
		d.fail("%d trailing bytes after object", len(b)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	return o, nil
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
	c := make(Clock, n)
	nodes := make([]string, 0, n)
	for i := 0; d.err == nil && i < n; i++ {
		l := d.uvarint("node length")
		node := string(d.bytes(l, "node"))
		v := d.uvarint("counter")
		if d.err != nil {
			break
		}
		switch {
		case node == "":
			d.fail("empty node id")
		case v == 0:
			d.fail("zero counter for node %q", node)
		case i > 0 && nodes[i-1] >= node:
			d.fail("node %q not after %q", node, nodes[i-1])
		}
		c[node] = v
		nodes = append(nodes, node)
	}
	return c, nodes
}
