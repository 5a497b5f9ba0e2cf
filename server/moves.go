package server

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ringkv/ringkv/ring"
)

// MoveReply is the JSON body of POST /v1/decommission and /v1/removenode.
type MoveReply struct {
	Node  string `json:"node"`
	State string `json:"state"`
}

// serveMove starts the removal of a member from the ring, on any node: it
// marks the member leaving (membership.SetMemberState); the partitions it
// replicates stream to their next owners (package rebalance), and the
// member becomes left once every one of them holds its share. remove says
// the member is dead (removenode): its partitions are rebuilt from the
// surviving replicas. A live member is decommissioned instead: it streams
// its own copies too, and completes the move itself.
func (s *Server) serveMove(w http.ResponseWriter, r *http.Request, remove bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	id := r.URL.Query().Get("node")
	code, err := s.startMove(id, remove)
	if err != nil {
		http.Error(w, err.Error(), code)
		return
	}
	m, _ := s.members.Ring().Member(id)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(MoveReply{Node: id, State: m.State.String()})
}

// startMove checks that member id may leave and marks it leaving. It
// returns the HTTP status: 202 when the move starts (or is under way), 200
// when the member has left already.
func (s *Server) startMove(id string, remove bool) (int, error) {
	if id == "" {
		return http.StatusBadRequest, fmt.Errorf("say which node: ?node=ID")
	}
	rg := s.members.Ring()
	m, ok := rg.Member(id)
	if !ok {
		return http.StatusNotFound, fmt.Errorf("no member %q in the ring", id)
	}
	alive := s.members.Alive(id)
	switch {
	case m.State == ring.StateLeft:
		return http.StatusOK, nil
	case m.State == ring.StateLeaving:
		return http.StatusAccepted, nil
	case m.State == ring.StateJoining && remove && !alive:
		// A joiner that died for good owns nothing: it leaves at once.
		if err := s.members.SetMemberState(id, ring.StateLeft); err != nil {
			return http.StatusInternalServerError, err
		}
		s.cfg.Logf("node %s: %s, joining and down, is removed (it owned nothing)", s.cfg.NodeID, id)
		return http.StatusOK, nil
	case m.State == ring.StateJoining:
		return http.StatusConflict, fmt.Errorf("%s is joining: wait until it is normal (or, if it is down for good, removenode it)", id)
	case s.rb.Load() == nil:
		return http.StatusServiceUnavailable, fmt.Errorf("anti-entropy is off on this node (--repair-interval is negative): partitions cannot be moved")
	case remove && alive:
		return http.StatusConflict, fmt.Errorf("%s is up: decommission it instead (it streams its own copies)", id)
	case !remove && !alive:
		return http.StatusConflict, fmt.Errorf("%s is down: removenode rebuilds its replicas from the surviving copies", id)
	}
	// The ring once it has left must still place every key's replicas.
	ms := rg.Members()
	for i := range ms {
		if ms[i].ID == id {
			ms[i].State = ring.StateLeaving
		}
	}
	next, err := ring.New(rg.Config(), ms)
	if err == nil {
		next, err = next.Future()
	}
	if err != nil {
		return http.StatusConflict, fmt.Errorf("the ring without %s: %v", id, err)
	}
	if want := min(rg.Placed(), rg.Replicas()); next.Placed() < want {
		return http.StatusConflict, fmt.Errorf("without %s the ring places %d replicas of some keys, fewer than %d: add a node first", id, next.Placed(), want)
	}
	if err := s.members.SetMemberState(id, ring.StateLeaving); err != nil {
		return http.StatusInternalServerError, err
	}
	verb := "decommissioned"
	if remove {
		verb = "removed"
	}
	s.cfg.Logf("node %s: %s is being %s: its partitions stream to their next owners", s.cfg.NodeID, id, verb)
	return http.StatusAccepted, nil
}
