package version

import (
	"cmp"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Dot names one write event: the Counter-th event coordinated by Node for a
// key. Dots are unique per key because only Node ever mints Node's dots and
// it always picks a counter above every one it (or a client context) has seen.
type Dot struct {
	Node    string
	Counter uint64
}

// String renders a dot as "node:counter".
func (d Dot) String() string { return d.Node + ":" + strconv.FormatUint(d.Counter, 10) }

// Compare orders dots by node, then counter. It is the order Object keeps its
// siblings in, which is what makes encodings canonical.
func (d Dot) Compare(e Dot) int {
	if c := strings.Compare(d.Node, e.Node); c != 0 {
		return c
	}
	return cmp.Compare(d.Counter, e.Counter)
}

// Clock is a version vector: for each node, the number of consecutive events
// of that node that have been seen (1..n). A missing entry and an entry of 0
// mean the same thing; this package never stores zero entries.
//
// Clocks are small (one entry per node that ever coordinated a write of the
// key, and only replicas coordinate), so plain maps are fine.
type Clock map[string]uint64

// Order is the result of comparing two clocks.
type Order int

const (
	// Equal: both clocks have seen exactly the same events.
	Equal Order = iota
	// Before: the receiver has seen strictly less than the argument.
	Before
	// After: the receiver has seen strictly more than the argument.
	After
	// Concurrent: each has seen an event the other has not.
	Concurrent
)

func (o Order) String() string {
	switch o {
	case Equal:
		return "equal"
	case Before:
		return "before"
	case After:
		return "after"
	case Concurrent:
		return "concurrent"
	}
	return "Order(" + strconv.Itoa(int(o)) + ")"
}

// Descends reports whether c has seen every event o has (c >= o pointwise).
// It is reflexive, antisymmetric up to Equal and transitive.
func (c Clock) Descends(o Clock) bool {
	for n, v := range o {
		if c[n] < v {
			return false
		}
	}
	return true
}

// Equal reports whether c and o have seen the same events (zero entries are
// ignored, so nil equals an empty clock).
func (c Clock) Equal(o Clock) bool { return c.Descends(o) && o.Descends(c) }

// Compare places c relative to o in the causal partial order.
func (c Clock) Compare(o Clock) Order {
	ge, le := c.Descends(o), o.Descends(c)
	switch {
	case ge && le:
		return Equal
	case ge:
		return After
	case le:
		return Before
	}
	return Concurrent
}

// Merge returns a new clock, the pointwise maximum of c and o (the least clock
// that descends both). Neither input is modified.
func (c Clock) Merge(o Clock) Clock {
	r := make(Clock, max(len(c), len(o)))
	for n, v := range c {
		if v > 0 {
			r[n] = v
		}
	}
	for n, v := range o {
		if v > r[n] {
			r[n] = v
		}
	}
	return r
}

// Clone returns an independent copy without zero entries; never nil.
func (c Clock) Clone() Clock {
	r := make(Clock, len(c))
	for n, v := range c {
		if v > 0 {
			r[n] = v
		}
	}
	return r
}

// Covers reports whether the event d is part of the history c describes.
func (c Clock) Covers(d Dot) bool { return d.Counter <= c[d.Node] }

// Nodes returns the nodes with a non-zero entry, sorted.
func (c Clock) Nodes() []string {
	return c.appendNodes(make([]string, 0, len(c)))
}

// appendNodes is Nodes appending to ns (which may be a caller's stack
// buffer, so that encoding allocates nothing for it).
func (c Clock) appendNodes(ns []string) []string {
	start := len(ns)
	for n, v := range c {
		if v > 0 {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns[start:])
	return ns
}

// String renders the clock deterministically, e.g. "{a:2, b:1}".
func (c Clock) String() string {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, n := range c.Nodes() {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(n)
		sb.WriteByte(':')
		sb.WriteString(strconv.FormatUint(c[n], 10))
	}
	sb.WriteByte('}')
	return sb.String()
}

// clockFormat is the first byte of EncodeClock's output, so the context
// token that clients keep can change format later without ambiguity.
const clockFormat = 1

// MaxCounter is the largest counter DecodeClock, ParseClock and
// DecodeObject accept, and the largest Write mints. Client tokens and peer
// messages are untrusted: without a bound, a forged counter near 2^64
// would make the next write of that actor overflow. 2^62 events per key is
// unreachable in practice (146 years at a billion writes a second).
const MaxCounter = 1 << 62

// EncodeClock returns the canonical bytes of c: a format byte, then a uvarint
// entry count, then for each non-zero entry in increasing node order a
// uvarint-length-prefixed node ID and a uvarint counter. Equal clocks always
// encode to equal bytes.
func EncodeClock(c Clock) []byte {
	return appendClockBody([]byte{clockFormat}, c)
}

// DecodeClock parses EncodeClock's output. It rejects anything that is not
// the canonical encoding of some clock (unsorted or duplicate nodes,
// malformed actors, zero counters, counters above MaxCounter, trailing
// bytes), so a decoded clock re-encodes to the same bytes, and clocks of
// more than MaxContextEntries entries. It never panics.
func DecodeClock(b []byte) (Clock, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty clock", ErrMalformed)
	}
	if b[0] != clockFormat {
		return nil, fmt.Errorf("%w: clock format %d", ErrUnknownFormat, b[0])
	}
	d := decoder{b: b, off: 1}
	c, _ := d.clock()
	if d.err == nil && d.off != len(b) {
		d.fail("%d trailing bytes after clock", len(b)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	return c, nil
}

// ClockToString returns the opaque causal-context token clients carry (in an
// HTTP header or a RESP reply): URL-safe base64 without padding of
// EncodeClock(c). The empty clock maps to "" so a client that read nothing
// (or does a blind write) simply sends no token.
func ClockToString(c Clock) string {
	if len(c.Nodes()) == 0 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(EncodeClock(c))
}

// ParseClock is the inverse of ClockToString; "" yields an empty clock.
// Surrounding whitespace is trimmed because the token travels in headers.
func ParseClock(s string) (Clock, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Clock{}, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: context token is not URL-safe base64: %v", ErrMalformed, err)
	}
	return DecodeClock(b)
}

// appendClockBody writes the clock without a format byte; the object encoding
// embeds it after its own format byte.
func appendClockBody(dst []byte, c Clock) []byte {
	var buf [8]string
	return appendClockNodes(dst, c, c.appendNodes(buf[:0]))
}

// appendClockNodes is appendClockBody with c.Nodes() already computed.
func appendClockNodes(dst []byte, c Clock, nodes []string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(nodes)))
	for _, n := range nodes {
		dst = binary.AppendUvarint(dst, uint64(len(n)))
		dst = append(dst, n...)
		dst = binary.AppendUvarint(dst, c[n])
	}
	return dst
}
