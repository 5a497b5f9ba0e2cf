package faults

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Kind is what a client operation does.
type Kind uint8

const (
	// Put writes a value (blind when the op has no context).
	Put Kind = iota + 1
	// Delete writes a tombstone.
	Delete
	// Read reads a key.
	Read
	// Add is a set workload's read-modify-write adding one element.
	Add
)

func (k Kind) String() string {
	switch k {
	case Put:
		return "put"
	case Delete:
		return "del"
	case Read:
		return "read"
	case Add:
		return "add"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Outcome is what a client learned about an operation.
type Outcome uint8

const (
	// Pending: invoked, not completed (the history was cut off).
	Pending Outcome = iota
	// OK: acknowledged.
	OK
	// Fail: refused, and the error proves nothing was applied (the request
	// was never sent, or the level was refused before anything was stored).
	Fail
	// Info: indeterminate. A timeout, a lost connection, and any failure
	// that came back after the request was sent, quorum errors included: a
	// write may have been applied on some replicas and may show up later.
	Info
)

func (o Outcome) String() string {
	switch o {
	case Pending:
		return "pending"
	case OK:
		return "ok"
	case Fail:
		return "fail"
	case Info:
		return "info"
	}
	return "?"
}

// ReadResult is what a read returned, in a form every API can produce.
type ReadResult struct {
	// Exists: the key has a version (a live value, a tombstone, or a
	// context) on the replicas that answered.
	Exists bool
	// Values are the live siblings' values, sorted.
	Values []string
	// Tombstones counts tombstone siblings (-1 when the API does not say).
	Tombstones int
}

// Op is one client operation: invoked, then completed with an outcome.
// Times are offsets from the history's start on the monotonic clock.
type Op struct {
	ID     int
	Client int
	Node   string // the node the request went to
	Kind   Kind
	Key    string
	// Value is a write's value (unique per write); for Add, the element.
	Value string
	// Level is the quorum asked (W for writes, R for reads), as text, and
	// Quorum the replica count it stands for.
	Level  string
	Quorum int
	// Context: the write carried a causal context (false: a blind write).
	Context bool
	// Saw lists, for a write with a context, the live values its context
	// read returned (the versions this write supersedes), and SawTomb says
	// whether that read also returned a tombstone. For a write in a
	// PutBatch (Batch != 0), Saw lists the values of the earlier writes of
	// the same key in that batch, which this one supersedes.
	Saw     []string
	SawTomb bool
	// Batch numbers the PutBatch call the write was part of (0: none).
	Batch int

	Invoke, Complete time.Duration
	Outcome          Outcome
	Err              string
	Read             ReadResult // reads only
}

// Acked reports whether the op was acknowledged.
func (o *Op) Acked() bool { return o.Outcome == OK }

// MayHaveApplied reports whether a write may have taken effect.
func (o *Op) MayHaveApplied() bool { return o.Outcome != Fail }

func (o *Op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d c%d@%s [%s..%s] %s %s", o.ID, o.Client, o.Node, ms(o.Invoke), ms(o.Complete), o.Kind, o.Key)
	switch o.Kind {
	case Put, Add:
		fmt.Fprintf(&b, "=%s", Abbrev(o.Value))
	}
	if o.Level != "" {
		fmt.Fprintf(&b, " %s", o.Level)
	}
	if o.Kind != Read {
		switch {
		case o.Context && o.Kind == Add:
			fmt.Fprintf(&b, " ctx(saw %d siblings)", len(o.Saw))
		case o.Context:
			saw := make([]string, len(o.Saw))
			for i, v := range o.Saw {
				saw[i] = Abbrev(v)
			}
			if o.SawTomb {
				saw = append(saw, "(tombstone)")
			}
			fmt.Fprintf(&b, " ctx(saw %s)", strings.Join(saw, ","))
		case o.Batch != 0:
			fmt.Fprintf(&b, " blind batch#%d", o.Batch)
			if len(o.Saw) > 0 {
				after := make([]string, len(o.Saw))
				for i, v := range o.Saw {
					after[i] = Abbrev(v)
				}
				fmt.Fprintf(&b, "(after %s)", strings.Join(after, ","))
			}
		default:
			b.WriteString(" blind")
		}
	}
	fmt.Fprintf(&b, " -> %s", o.Outcome)
	if o.Kind == Read && o.Outcome == OK {
		switch {
		case !o.Read.Exists:
			b.WriteString(" nil")
		default:
			vs := make([]string, len(o.Read.Values))
			for i, v := range o.Read.Values {
				vs[i] = Abbrev(v)
			}
			fmt.Fprintf(&b, " [%s]", strings.Join(vs, " | "))
			if o.Read.Tombstones > 0 {
				fmt.Fprintf(&b, "+%d tomb", o.Read.Tombstones)
			}
		}
	}
	if o.Err != "" {
		e := o.Err
		if len(e) > 120 {
			e = e[:120] + "..."
		}
		fmt.Fprintf(&b, " (%s)", e)
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

// Event is a fault or phase change, recorded in the history for context.
type Event struct {
	At   time.Duration
	What string
}

// History records client operations and fault events. It is safe for
// concurrent use.
type History struct {
	start  time.Time
	mu     sync.Mutex
	ops    []*Op
	events []Event
}

// NewHistory starts a history; times are measured from now.
func NewHistory() *History { return &History{start: time.Now()} }

func (h *History) now() time.Duration { return time.Since(h.start) }

// Invoke records the start of op (its ID and Invoke are filled in) and
// returns it for Complete.
func (h *History) Invoke(op Op) *Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.ID = len(h.ops)
	op.Invoke = h.now()
	p := &op
	h.ops = append(h.ops, p)
	return p
}

// Complete records op's outcome.
func (h *History) Complete(op *Op, out Outcome, err error) {
	t := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Complete, op.Outcome = t, out
	if err != nil {
		op.Err = err.Error()
	}
}

// Event records a fault or phase change.
func (h *History) Event(format string, args ...any) {
	t := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, Event{At: t, What: fmt.Sprintf(format, args...)})
}

// Ops returns the operations recorded so far (completed ones are final).
func (h *History) Ops() []*Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Format renders the history compactly, one line per op or event in time
// order; with keys set, only ops on those keys (and all events).
func (h *History) Format(keys ...string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	type line struct {
		at time.Duration
		s  string
	}
	var lines []line
	for _, o := range h.ops {
		if len(keys) > 0 && !slices.Contains(keys, o.Key) {
			continue
		}
		lines = append(lines, line{o.Invoke, o.String()})
	}
	for _, e := range h.events {
		lines = append(lines, line{e.At, fmt.Sprintf("   %s  ** %s", ms(e.At), e.What)})
	}
	slices.SortStableFunc(lines, func(a, b line) int { return int(a.at - b.at) })
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.s)
		b.WriteByte('\n')
	}
	return b.String()
}

// Summary counts ops by kind and outcome, e.g. "put ok=12 info=3 ...".
func (h *History) Summary() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	counts := map[Kind]map[Outcome]int{}
	for _, o := range h.ops {
		if counts[o.Kind] == nil {
			counts[o.Kind] = map[Outcome]int{}
		}
		counts[o.Kind][o.Outcome]++
	}
	var b strings.Builder
	for _, k := range []Kind{Put, Delete, Add, Read} {
		c := counts[k]
		if c == nil {
			continue
		}
		fmt.Fprintf(&b, "%s ok=%d fail=%d info=%d pending=%d; ", k, c[OK], c[Fail], c[Info], c[Pending])
	}
	fmt.Fprintf(&b, "%d fault events", len(h.events))
	return b.String()
}

// Abbrev shortens a long value (a set) for printing: its length and ends.
func Abbrev(v string) string {
	if len(v) <= 48 {
		return v
	}
	return fmt.Sprintf("%s...%s (%d bytes)", v[:20], v[len(v)-20:], len(v))
}

// OnKeys returns the ops on the given keys, for running a checker on one
// workload's part of a mixed history.
func OnKeys(ops []*Op, keys ...string) []*Op {
	var out []*Op
	for _, o := range ops {
		if slices.Contains(keys, o.Key) {
			out = append(out, o)
		}
	}
	return out
}
