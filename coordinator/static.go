package coordinator

import (
	"sync"

	"github.com/ringkv/ringkv/ring"
)

// StaticCluster is a Cluster with a fixed ring and addresses whose liveness
// a test flips by hand. The shipped server uses gossip membership instead.
type StaticCluster struct {
	mu    sync.RWMutex
	ring  *ring.Ring
	addrs map[string]string
	down  map[string]bool
}

// NewStaticCluster returns a cluster view of r whose node IDs map to peer
// addresses through addrs.
func NewStaticCluster(r *ring.Ring, addrs map[string]string) *StaticCluster {
	return &StaticCluster{ring: r, addrs: addrs, down: map[string]bool{}}
}

// Ring returns the ring.
func (s *StaticCluster) Ring() *ring.Ring {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ring
}

// SetRing replaces the ring (a member changed state, say).
func (s *StaticCluster) SetRing(r *ring.Ring) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring = r
}

// Addr returns a node's peer address.
func (s *StaticCluster) Addr(id string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a, ok := s.addrs[id]
	return a, ok
}

// Alive reports whether the node is marked alive.
func (s *StaticCluster) Alive(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return !s.down[id]
}

// SetAlive marks a node alive or down.
func (s *StaticCluster) SetAlive(id string, alive bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down[id] = !alive
}
