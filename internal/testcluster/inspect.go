package testcluster

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/version"
)

// This file reads a node's local state directly, for checkers that must
// see what each replica holds without a quorum read (which would repair
// it): its whole store, its hint records and its handoff statistics.

// Contents returns every key node id stores (a full scan of its local
// store, all partitions), with its stored object, or ErrNodeDown.
func (c *Cluster) Contents(id string) (map[string]*version.Object, error) {
	st, err := c.StoreOf(id)
	if err != nil {
		return nil, err
	}
	out := map[string]*version.Object{}
	err = st.Scan(0, ^uint64(0), func(e replica.Entry) bool {
		out[string(e.Key)] = e.Object
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("testcluster: scan %s: %w", id, err)
	}
	return out, nil
}

// HintStats returns what node id's handoff service reports per target
// (handoff.Service.Stats), or ErrNodeDown. It is nil when the cluster runs
// without hinted handoff (Options.Handoff).
func (c *Cluster) HintStats(id string) (map[string]handoff.Stats, error) {
	c.mu.Lock()
	n := c.byID[id]
	if n == nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("testcluster: no node %q", id)
	}
	if n.down {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrNodeDown, id)
	}
	h := n.Hints
	c.mu.Unlock()
	if h == nil {
		return nil, nil
	}
	return h.Stats(), nil
}

// ErrBadHintRecord is returned by Hints for a hint record it cannot read.
var ErrBadHintRecord = errors.New("testcluster: unreadable hint record")

// Hint is one hint record a node keeps: the version of Key it holds for
// Target, which did not acknowledge it.
type Hint struct {
	Target string
	Seq    uint64
	Key    string
	Obj    *version.Object
}

// Hints returns the hint records node id keeps in its engine, oldest first
// per target, or ErrNodeDown. It reads the records as package handoff
// writes them (handoff/record.go):
//
//	key:   len(target) (1 byte) | target | sequence (8 bytes, big-endian) | user key
//	value: format (1) | uvarint created (Unix nanoseconds) | encoded version.Object
//
// A record in any other form is an error, so that a change of the format
// fails the checkers that use this instead of hiding hints from them.
func (c *Cluster) Hints(id string) ([]Hint, error) {
	st, err := c.StoreOf(id)
	if err != nil {
		return nil, err
	}
	var out []Hint
	var bad error
	err = st.ScanHints(nil, nil, func(k, v []byte) bool {
		h, err := decodeHint(k, v)
		if err != nil {
			bad = fmt.Errorf("%w of %s: %w", ErrBadHintRecord, id, err)
			return false
		}
		out = append(out, h)
		return true
	})
	if err == nil {
		err = bad
	}
	return out, err
}

// hintRecordFormat is handoff's record format version (the value's first
// byte).
const hintRecordFormat = 1

func decodeHint(k, v []byte) (Hint, error) {
	if len(k) < 1 || len(k) < 1+int(k[0])+8 {
		return Hint{}, fmt.Errorf("key %x is too short", k)
	}
	n := int(k[0])
	h := Hint{Target: string(k[1 : 1+n]), Seq: binary.BigEndian.Uint64(k[1+n:]), Key: string(k[1+n+8:])}
	if len(v) < 2 || v[0] != hintRecordFormat {
		return Hint{}, fmt.Errorf("value of the hint of %q for %s: unknown format", h.Key, h.Target)
	}
	_, w := binary.Uvarint(v[1:])
	if w <= 0 {
		return Hint{}, fmt.Errorf("value of the hint of %q for %s: bad creation time", h.Key, h.Target)
	}
	obj, err := version.DecodeObject(v[1+w:])
	if err != nil {
		return Hint{}, fmt.Errorf("value of the hint of %q for %s: %w", h.Key, h.Target, err)
	}
	h.Obj = obj
	return h, nil
}
