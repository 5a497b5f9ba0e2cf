package server

import (
	"encoding/json"
	"net/http"

	"github.com/ringkv/ringkv/web"
)

// serveUI serves the dashboard under /ui (package web). The handler keeps
// no state between requests (its files are read once when the package
// loads, and it asks the other members through a client shared by the
// package), so it is built per request rather than kept in the Server.
func (s *Server) serveUI(w http.ResponseWriter, r *http.Request) {
	o := web.Options{
		Cluster: clusterView{s},
		Local:   http.HandlerFunc(s.serveUILocal),
		// With users, the fan-out asks with the browser user's own
		// credentials — only when the members are authenticated (peer
		// mutual TLS and a gossip key): otherwise anyone who can gossip
		// could advertise an address that collects them. With TLS, over
		// HTTPS.
		ForwardAuthorization: s.sec.users != nil && s.sec.peerServer != nil && s.sec.gossipKey != nil,
	}
	if s.sec.clientTLS != nil {
		o.Scheme, o.Client = "https", s.sec.uiClient
	}
	web.New(o).ServeHTTP(w, r)
}

// serveUILocal answers, in process, the GET requests the dashboard's
// fan-out makes to this node itself.
func (s *Server) serveUILocal(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/cluster":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(clusterView{s}.Status())
	case "/v1/repair":
		s.serveRepair(w, r)
	case "/v1/transfers":
		s.serveTransfers(w, r)
	default:
		http.NotFound(w, r)
	}
}
