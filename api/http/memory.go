package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/ringkv/ringkv/version"
)

// MemoryStore is a single-replica [Store] in memory, for tests and demos.
// Every write is coordinated by the one node it was created with, using the
// same version rules as the cluster (version.Object.Write / WriteBlind).
// Quorum levels are accepted and ignored. Siblings from other "replicas" can
// be injected with [MemoryStore.Merge].
type MemoryStore struct {
	node string
	// Now stamps writes; default time.Now. Set it before use.
	Now func() time.Time

	mu   sync.Mutex
	objs map[string]*version.Object
}

// NewMemoryStore returns an empty store whose writes are stamped by node.
func NewMemoryStore(node string) *MemoryStore {
	return &MemoryStore{node: node, Now: time.Now, objs: map[string]*version.Object{}}
}

// Get returns a copy of the key's object, or nil when the store has none.
func (m *MemoryStore) Get(_ context.Context, key []byte, _ int) (*version.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.objs[string(key)].Clone(), nil
}

// Put writes value with the causal context (nil: blind write).
func (m *MemoryStore) Put(_ context.Context, key, value []byte, causal version.Clock, _ int) (*version.Object, error) {
	return m.write(key, value, false, causal), nil
}

// Delete writes a tombstone with the causal context (nil: blind write).
func (m *MemoryStore) Delete(_ context.Context, key []byte, causal version.Clock, _ int) (*version.Object, error) {
	return m.write(key, nil, true, causal), nil
}

func (m *MemoryStore) write(key, value []byte, deleted bool, causal version.Clock) *version.Object {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.objs[string(key)]
	if o == nil {
		o = &version.Object{}
		m.objs[string(key)] = o
	}
	ts := m.Now().UnixNano()
	if causal == nil {
		o.WriteBlind(m.node, value, deleted, ts)
	} else {
		o.Write(m.node, causal, value, deleted, ts)
	}
	return o.Clone()
}

// Merge folds o into the key's object as replication from another replica
// would (version.Merge). It is how tests create concurrent siblings.
func (m *MemoryStore) Merge(key []byte, o *version.Object) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[string(key)] = version.Merge(m.objs[string(key)], o)
}

// Len returns the number of keys the store knows, tombstoned ones included.
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.objs)
}
