package server

import "net/http"

// serveSnapshot will write a point-in-time copy of the node's tables.
func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "snapshots are not built yet", http.StatusNotImplemented)
}
