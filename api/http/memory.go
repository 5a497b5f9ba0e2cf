package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/version"
)

// MemoryStore is a single-replica [Store] in memory, for tests and demos.
// Every write is coordinated by the one node (actor) it was created with,
// using the same version rules and limits as a replica: a client context
// passes version.Object.AdmitContext, then version.Object.WriteOnce (with
// the write ID of coordinator.WithWriteID, if any), so it refuses the same
// contexts and oversized objects and applies a retried write once.
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
func (m *MemoryStore) Put(ctx context.Context, key, value []byte, causal version.Clock, _ int) (*version.Object, error) {
	return m.write(key, value, false, causal, coordinator.WriteIDFrom(ctx))
}

// Delete writes a tombstone with the causal context (nil: blind write).
func (m *MemoryStore) Delete(ctx context.Context, key []byte, causal version.Clock, _ int) (*version.Object, error) {
	return m.write(key, nil, true, causal, coordinator.WriteIDFrom(ctx))
}

func (m *MemoryStore) write(key, value []byte, deleted bool, causal version.Clock, id uint64) (*version.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.objs[string(key)]
	if o == nil {
		o = &version.Object{}
		m.objs[string(key)] = o
	}
	ts := m.Now().UnixNano()
	var err error
	if causal != nil {
		causal, err = o.AdmitContext(causal)
	}
	if err == nil {
		_, _, err = o.WriteOnce(m.node, causal, causal == nil, id, value, deleted, ts)
	}
	if err != nil {
		if o.Empty() {
			delete(m.objs, string(key))
		}
		return nil, err
	}
	return o.Clone(), nil
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
