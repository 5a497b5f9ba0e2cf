package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

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

// ReplicasReply is the JSON body of GET and POST /v1/replicas: the
// cluster's replication, and the one it is moving to.
type ReplicasReply struct {
	Replicas string `json:"replicas"`
	Next     string `json:"next,omitempty"`
}

// serveReplicas shows (GET) or changes (POST ?n=3 or ?per_dc=dc1:3,dc2:2)
// the replication of the whole cluster. A change is a move like a join:
// the nodes that will hold the extra replicas stream them, then the ring
// uses the new count, and the surplus of a decrease is dropped after the
// owners are verified to hold it.
func (s *Server) serveReplicas(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		if code, err := s.startReplicas(r.URL.Query().Get("n"), r.URL.Query().Get("per_dc")); err != nil {
			http.Error(w, err.Error(), code)
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	cur, next := s.members.Replication()
	out := ReplicasReply{Replicas: cur.String()}
	if next != nil {
		out.Next = next.String()
	}
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodPost {
		w.WriteHeader(http.StatusAccepted)
	}
	json.NewEncoder(w).Encode(out)
}

func (s *Server) startReplicas(n, perDC string) (int, error) {
	var next ring.Replication
	switch {
	case n != "" && perDC != "":
		return http.StatusBadRequest, fmt.Errorf("give n or per_dc, not both")
	case perDC != "":
		m, err := ParseReplicasPerDC(perDC)
		if err != nil {
			return http.StatusBadRequest, err
		}
		next.ReplicasPerDC = m
	case n != "":
		v, err := strconv.Atoi(n)
		if err != nil || v < 1 {
			return http.StatusBadRequest, fmt.Errorf("n=%q: want a positive count", n)
		}
		next.Replicas = v
	default:
		return http.StatusBadRequest, fmt.Errorf("say the new replication: ?n=3 or ?per_dc=dc1:3,dc2:2")
	}
	rg := s.members.Ring()
	cur := rg.Config()
	if (cur.ReplicasPerDC == nil) != (next.ReplicasPerDC == nil) {
		return http.StatusBadRequest, fmt.Errorf("the cluster is replicated %s: give the new replication the same way (per DC or not)", cur.Replication())
	}
	if s.rb.Load() == nil {
		return http.StatusServiceUnavailable, fmt.Errorf("anti-entropy is off on this node (--repair-interval is negative): replicas cannot be moved")
	}
	for _, m := range rg.Members() {
		if m.State == ring.StateJoining || m.State == ring.StateLeaving {
			return http.StatusConflict, fmt.Errorf("%s is %v: change the replication once that move is over", m.ID, m.State)
		}
	}
	// Every key must get its replicas, on distinct nodes.
	probe := cur
	probe.Next = nil
	probe = probe.WithReplication(next)
	target, err := ring.New(probe, rg.Members())
	if err != nil {
		return http.StatusBadRequest, err
	}
	if target.Placed() < target.Replicas() {
		return http.StatusConflict, fmt.Errorf("replication %s needs more nodes: the ring places %d replicas of some keys", next, target.Placed())
	}
	if err := s.members.SetReplicationTarget(next); err != nil {
		return http.StatusInternalServerError, err
	}
	s.cfg.Logf("node %s: the cluster's replication moves from %s to %s", s.cfg.NodeID, cur.Replication(), next)
	return http.StatusAccepted, nil
}
