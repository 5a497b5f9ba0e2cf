package server

import (
	"context"
	"time"

	"github.com/ringkv/ringkv/ring"
)

// Shutdown stops the node gracefully, then closes it (Close): it stops
// accepting clients and lets the HTTP requests and Redis commands in
// flight finish and be answered, hands the
// hints it keeps to their targets that are up (a node that stops with
// hints pending leaves its targets behind until anti-entropy finds the
// difference), then leaves gossip and closes the engine cleanly. ctx
// bounds the draining and the handover; Close runs whatever happens.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.http != nil {
		s.http.Shutdown(ctx)
	}
	if s.resp != nil {
		// Commands already received run and are answered; then each
		// connection closes.
		s.resp.Shutdown(ctx)
	}
	if n := s.handHintsOver(ctx); n > 0 {
		s.cfg.Logf("node %s: shutting down with %d hints still pending (targets down or slow)", s.cfg.NodeID, n)
	}
	return s.Close()
}

// handHintsOver delivers hints until none is pending for a target that
// can take them, or ctx ends. It returns the hints left pending.
func (s *Server) handHintsOver(ctx context.Context) int {
	deliverable := func(id string) bool {
		if m, ok := s.members.Ring().Member(id); ok && m.State == ring.StateLeft {
			return true // the coordinator sends them to the key's owners
		}
		return s.members.Alive(id)
	}
	for {
		pending, left := 0, 0
		for id, st := range s.hints.Stats() {
			left += st.Pending
			if st.Pending > 0 && deliverable(id) {
				pending += st.Pending
			}
		}
		if pending == 0 {
			return left
		}
		s.hints.Pass(ctx)
		select {
		case <-ctx.Done():
			return left
		case <-time.After(50 * time.Millisecond):
		}
	}
}
