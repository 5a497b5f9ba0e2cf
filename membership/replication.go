package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/ringkv/ringkv/ring"
)

// The replication (N, or N per DC) starts as Config.Ring gives it, the
// same on every node, and can then be changed for the whole cluster
// (ringkv set-replicas): the change is a versioned record of its own,
// gossiped and persisted like member records, last-writer-wins on its
// version. A change is made in two steps. SetReplicationTarget records the
// replication the cluster moves to (ring.Config.Next): the nodes that will
// hold the extra replicas are pending owners and stream them (package
// rebalance). FinishReplication then makes it the ring's replication.

// replState is the cluster's replication and the change in progress.
type replState struct {
	cur     ring.Replication
	next    *ring.Replication
	version uint64 // 0: as Config.Ring gives it
}

// wireRepl is a replState as it is gossiped and persisted.
type wireRepl struct {
	Replicas int            `json:"replicas"`
	PerDC    map[string]int `json:"per_dc,omitempty"`
	Next     *wireReplNext  `json:"next,omitempty"`
	Version  uint64         `json:"version"`
}

type wireReplNext struct {
	Replicas int            `json:"replicas"`
	PerDC    map[string]int `json:"per_dc,omitempty"`
}

func (r replState) wire() *wireRepl {
	if r.version == 0 {
		return nil
	}
	w := &wireRepl{Replicas: r.cur.Replicas, PerDC: r.cur.ReplicasPerDC, Version: r.version}
	if r.next != nil {
		w.Next = &wireReplNext{Replicas: r.next.Replicas, PerDC: r.next.ReplicasPerDC}
	}
	return w
}

func (w *wireRepl) state() replState {
	r := replState{cur: ring.Replication{Replicas: w.Replicas, ReplicasPerDC: maps.Clone(w.PerDC)}, version: w.Version}
	if w.Next != nil {
		r.next = &ring.Replication{Replicas: w.Next.Replicas, ReplicasPerDC: maps.Clone(w.Next.PerDC)}
	}
	return r
}

// signature changes exactly when the ring built with r would.
func (r replState) signature() string {
	if r.version == 0 {
		return ""
	}
	s := "repl " + r.cur.String()
	if r.next != nil {
		s += " -> " + r.next.String()
	}
	return s
}

// ringConfigLocked is the ring configuration with the cluster's
// replication. m.mu must be held.
func (m *Membership) ringConfigLocked() ring.Config {
	return m.repl.apply(m.cfg.Ring)
}

func (r replState) apply(c ring.Config) ring.Config {
	if r.version == 0 {
		return c
	}
	c = c.WithReplication(r.cur)
	if r.next != nil {
		next := ring.Replication{Replicas: r.next.Replicas, ReplicasPerDC: maps.Clone(r.next.ReplicasPerDC)}
		c.Next = &next
	}
	return c
}

// Replication returns the replication the ring uses and the one the
// cluster is moving to (nil when no change is in progress).
func (m *Membership) Replication() (cur ring.Replication, next *ring.Replication) {
	cfg := m.Ring().Config()
	return cfg.Replication(), cfg.Next
}

// SetReplicationTarget starts a change of the cluster's replication to
// next. It fails if the ring cannot be built with it (a DC without a
// count, say). A change already in progress is replaced.
func (m *Membership) SetReplicationTarget(next ring.Replication) error {
	return m.changeReplication(func(r *replState) error {
		cur := r.cur
		if r.version == 0 {
			cur = m.cfg.Ring.Replication()
		}
		r.cur, r.next = cur, &next
		return nil
	})
}

// FinishReplication makes the replication being moved to the ring's own.
func (m *Membership) FinishReplication() error {
	return m.changeReplication(func(r *replState) error {
		if r.next == nil {
			return errors.New("no replication change in progress")
		}
		r.cur, r.next = *r.next, nil
		return nil
	})
}

func (m *Membership) changeReplication(change func(*replState) error) error {
	if m.closed.Load() {
		return errors.New("membership: closed")
	}
	m.mu.Lock()
	old := m.repl
	nr := old
	if err := change(&nr); err != nil {
		m.mu.Unlock()
		return fmt.Errorf("membership: %w", err)
	}
	nr.version = nextVersion(old.version)
	m.repl = nr
	r, err := m.buildRingLocked()
	if err != nil {
		m.repl = old
		m.mu.Unlock()
		return fmt.Errorf("membership: replication %s: %w", nr.cur, err)
	}
	m.publishLocked(true, r)
	m.mu.Unlock()
	m.logf("membership: replication is now %s", nr.signature())
	m.bcast.QueueBroadcast(recordBroadcast{id: "\x00replication", msg: m.encodeRepl(nr)})
	if err := m.persist(); err != nil {
		return fmt.Errorf("membership: persisting ring state: %w", err)
	}
	return nil
}

// mergeReplLocked adopts a replication learned from a peer if it is newer
// and builds a ring. m.mu must be held.
func (m *Membership) mergeReplLocked(w *wireRepl, from string) bool {
	if w == nil || w.Version <= m.repl.version {
		return false
	}
	nr := w.state()
	if _, err := ring.New(nr.apply(m.cfg.Ring), nil); err != nil {
		m.warnOnce("repl\x00"+err.Error(), "membership: ignoring replication %s from %s: %v", nr.signature(), from, err)
		return false
	}
	m.repl = nr
	m.logf("membership: replication is now %s (from %s)", nr.signature(), from)
	return true
}

// encodeRepl is the gossip message of a replication change.
func (m *Membership) encodeRepl(r replState) []byte {
	b, _ := json.Marshal(metaMsg{Cfg: m.fp, Repl: r.wire()})
	return b
}
