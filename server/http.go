package server

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/ringkv/ringkv/antientropy"
	httpapi "github.com/ringkv/ringkv/api/http"
	"github.com/ringkv/ringkv/rebalance"
)

func (s *Server) httpHandler() http.Handler {
	api := httpapi.NewHandler(s.coord, clusterView{s}, httpapi.Options{
		MaxValueSize: int64(s.cfg.MaxValueSize),
		MaxKeySize:   s.cfg.MaxKeySize,
		BodyTimeout:  s.cfg.ClientTimeout,
		Logf:         s.cfg.Logf,
	})
	// Go's profiler and execution tracer, for operators chasing a slow node.
	return s.sec.requireAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/debug/pprof/profile":
			pprof.Profile(w, r)
		case r.URL.Path == "/debug/pprof/trace":
			pprof.Trace(w, r)
		case strings.HasPrefix(r.URL.Path, "/debug/pprof/"):
			pprof.Index(w, r)
		case r.URL.Path == "/metrics":
			s.serveMetrics(w, r)
		case r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/"):
			s.serveUI(w, r)
		case r.URL.Path == "/v1/snapshot":
			s.serveSnapshot(w, r)
		case r.URL.Path == "/v1/repair":
			s.serveRepair(w, r)
		case r.URL.Path == "/v1/transfers":
			s.serveTransfers(w, r)
		case r.URL.Path == "/v1/decommission":
			s.serveMove(w, r, false)
		case r.URL.Path == "/v1/removenode":
			s.serveMove(w, r, true)
		case r.URL.Path == "/v1/replicas":
			s.serveReplicas(w, r)
		case strings.HasPrefix(r.URL.Path, "/v1/kv/"):
			start := time.Now()
			api.ServeHTTP(w, r)
			s.load.observe(time.Since(start))
		default:
			api.ServeHTTP(w, r)
		}
	}), s.cfg.OpenMetrics)
}

// clusterView reports the ring as this node sees it, with liveness and
// addresses from gossip.
type clusterView struct{ s *Server }

func (v clusterView) Status() httpapi.ClusterStatus {
	r := v.s.members.Ring()
	st := httpapi.StatusFromRing(v.s.cfg.NodeID, r)
	st.DefaultR, st.DefaultW = v.s.coord.Defaults(r.Replicas())
	load := v.s.load.status()
	st.Load = &load
	if rb := v.s.rb.Load(); rb != nil {
		n := rb.HandingOver()
		st.HandingOver = &n
	}
	st.Members = st.Members[:0]
	hints := v.s.hints.Stats()
	var verified map[string]antientropy.PeerStatus
	if ae := v.s.ae.Load(); ae != nil {
		verified = ae.PeerStatus()
	}
	now := time.Now()
	for _, m := range v.s.members.Members() {
		h := hints[m.ID]
		ms := httpapi.MemberStatus{
			ID: m.ID, DC: m.DC, Rack: m.Rack, Weight: m.Weight, State: m.State.String(),
			Alive: m.Alive, PeerAddr: m.PeerAddr, RESPAddr: m.RespAddr, HTTPAddr: m.HTTPAddr,
			HintsPending: h.Pending, HintsBytes: h.Bytes, HintsRefused: h.Refused, HintError: h.LastError,
		}
		if ps, ok := verified[m.ID]; ok {
			ms.RepairShared, ms.RepairUnverified = ps.Shared, ps.Unverified
			ms.RepairOldestAgeSeconds = -1
			if !ps.OldestVerified.IsZero() {
				ms.RepairOldestVerified = ps.OldestVerified.UTC().Format(time.RFC3339)
				if ps.Unverified == 0 {
					ms.RepairOldestAgeSeconds = now.Sub(ps.OldestVerified).Seconds()
				}
			}
		}
		st.Members = append(st.Members, ms)
	}
	return st
}

// RepairStatus is the JSON body of GET and POST /v1/repair: the node's
// anti-entropy rounds. POST asks for a full round now; Wait is the round
// number that, once RoundsDone reaches it, began after the request.
type RepairStatus struct {
	NodeID           string  `json:"node_id"`
	Wait             uint64  `json:"wait,omitempty"`
	RoundsStarted    uint64  `json:"rounds_started"`
	RoundsDone       uint64  `json:"rounds_done"`
	Running          bool    `json:"running"`
	PartitionsTotal  int     `json:"partitions_total"`
	PartitionsDone   int     `json:"partitions_done"`
	TreesTrusted     int     `json:"trees_trusted"`
	TreesTotal       int     `json:"trees_total"`
	KeysPulled       uint64  `json:"keys_pulled"`
	KeysPushed       uint64  `json:"keys_pushed"`
	TombstonesPurged uint64  `json:"tombstones_purged"`
	BytesSent        uint64  `json:"bytes_sent"`
	BytesReceived    uint64  `json:"bytes_received"`
	LastRoundStart   string  `json:"last_round_start,omitempty"`
	LastRoundSecs    float64 `json:"last_round_seconds,omitempty"`
	LastError        string  `json:"last_error,omitempty"`
}

func (s *Server) serveRepair(w http.ResponseWriter, r *http.Request) {
	ae := s.ae.Load()
	if ae == nil {
		http.Error(w, "anti-entropy is off on this node (--repair-interval is negative)", http.StatusServiceUnavailable)
		return
	}
	var wait uint64
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		wait = ae.Repair()
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	st := ae.Status()
	out := RepairStatus{
		NodeID: s.cfg.NodeID, Wait: wait, RoundsStarted: st.RoundsStarted, RoundsDone: st.RoundsDone,
		Running: st.Running, PartitionsTotal: st.PartitionsTotal, PartitionsDone: st.PartitionsDone,
		TreesTrusted: st.TreesTrusted, TreesTotal: st.TreesTotal, KeysPulled: st.KeysPulled,
		KeysPushed: st.KeysPushed, TombstonesPurged: st.TombstonesPurged, BytesSent: st.BytesSent, BytesReceived: st.BytesReceived,
		LastError: st.LastError,
	}
	if !st.LastRoundStart.IsZero() {
		out.LastRoundStart = st.LastRoundStart.UTC().Format(time.RFC3339Nano)
		if !st.Running {
			out.LastRoundSecs = st.LastRoundEnd.Sub(st.LastRoundStart).Seconds()
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// TransfersStatus is the JSON body of GET /v1/transfers: the partition
// moves this node runs (today: its own join, while and after it streams).
type TransfersStatus struct {
	NodeID    string               `json:"node_id"`
	State     string               `json:"state"` // this node's ring state
	Transfers []rebalance.Transfer `json:"transfers"`
}

func (s *Server) serveTransfers(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	out := TransfersStatus{NodeID: s.cfg.NodeID, State: s.members.LocalNode().State.String(), Transfers: []rebalance.Transfer{}}
	if rb := s.rb.Load(); rb != nil {
		out.Transfers = rb.Transfers()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}
