package server

import (
	"net/http"
	"net/http/pprof"
	"strings"

	httpapi "github.com/ringkv/ringkv/api/http"
)

func (s *Server) httpHandler() http.Handler {
	api := httpapi.NewHandler(s.coord, clusterView{s}, httpapi.Options{
		MaxValueSize: int64(s.cfg.MaxValueSize),
		MaxKeySize:   s.cfg.MaxKeySize,
		Logf:         s.cfg.Logf,
	})
	// Go's profiler and execution tracer, for operators chasing a slow node.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/debug/pprof/profile":
			pprof.Profile(w, r)
		case r.URL.Path == "/debug/pprof/trace":
			pprof.Trace(w, r)
		case strings.HasPrefix(r.URL.Path, "/debug/pprof/"):
			pprof.Index(w, r)
		default:
			api.ServeHTTP(w, r)
		}
	})
}

// clusterView reports the ring as this node sees it, with liveness and
// addresses from gossip.
type clusterView struct{ s *Server }

func (v clusterView) Status() httpapi.ClusterStatus {
	r := v.s.members.Ring()
	st := httpapi.StatusFromRing(v.s.cfg.NodeID, r)
	st.DefaultR, st.DefaultW = v.s.coord.Defaults(r.Replicas())
	st.Members = st.Members[:0]
	hints := v.s.hints.Stats()
	for _, m := range v.s.members.Members() {
		h := hints[m.ID]
		st.Members = append(st.Members, httpapi.MemberStatus{
			ID: m.ID, DC: m.DC, Rack: m.Rack, Weight: m.Weight, State: m.State.String(),
			Alive: m.Alive, PeerAddr: m.PeerAddr, RESPAddr: m.RespAddr, HTTPAddr: m.HTTPAddr,
			HintsPending: h.Pending, HintsBytes: h.Bytes, HintsRefused: h.Refused, HintError: h.LastError,
		})
	}
	return st
}
