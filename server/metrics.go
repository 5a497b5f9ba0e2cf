package server

import (
	"net/http"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/api/resp"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/metrics"
	"github.com/ringkv/ringkv/rebalance"
)

// newMetrics builds the node's Prometheus metrics over its components.
// The anti-entropy and rebalance services start after the coordinator
// (which needs the observer), so they are read through their pointers.
func (s *Server) newMetrics() *metrics.Registry {
	return metrics.New(metrics.Sources{
		NodeID: s.cfg.NodeID, DC: s.cfg.DC, Rack: s.cfg.Rack,
		Coordinator: func() (st coordinator.Stats) {
			if s.coord != nil {
				st = s.coord.Stats()
			}
			return st
		},
		Engine: s.db.Metrics,
		Hints:  func() map[string]handoff.Stats { return s.hints.Stats() },
		AntiEntropy: func() (antientropy.Status, map[string]antientropy.PeerStatus) {
			if ae := s.ae.Load(); ae != nil {
				return ae.Status(), ae.PeerStatus()
			}
			return antientropy.Status{}, nil
		},
		Members: func() []metrics.Member {
			ms := s.members.Members()
			out := make([]metrics.Member, len(ms))
			for i, m := range ms {
				out[i] = metrics.Member{ID: m.ID, State: m.State.String(), Alive: m.Alive}
			}
			return out
		},
		RESP: func() (st resp.Stats) {
			if s.resp != nil {
				st = s.resp.Stats()
			}
			return st
		},
		Transfers: func() []rebalance.Transfer {
			if rb := s.rb.Load(); rb != nil {
				return rb.Transfers()
			}
			return nil
		},
		HandingOver: func() int {
			if rb := s.rb.Load(); rb != nil {
				return rb.HandingOver()
			}
			return 0
		},
	})
}

// serveMetrics serves GET /metrics in Prometheus' text format.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.metrics.Handler().ServeHTTP(w, r)
}
