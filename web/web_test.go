package web

import (
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
)

type fixedView struct{ st httpapi.ClusterStatus }

func (v fixedView) Status() httpapi.ClusterStatus { return v.st }

func oneNode() fixedView {
	return fixedView{httpapi.ClusterStatus{NodeID: "n1", Partitions: 8, Replicas: 1,
		Members: []httpapi.MemberStatus{{ID: "n1", State: "normal", Alive: true}}}}
}

func get(t *testing.T, h http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func checkSecurityHeaders(t *testing.T, what string, rec *httptest.ResponseRecorder) {
	t.Helper()
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.HasPrefix(csp, "default-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("%s: Content-Security-Policy %q", what, csp)
	}
	if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", what, got)
	}
}

func TestEveryAssetIsServed(t *testing.T) {
	h := New(Options{Cluster: oneNode()})
	want := map[string]string{
		".html": "text/html; charset=utf-8",
		".css":  "text/css; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".svg":  "image/svg+xml",
	}
	names := Assets()
	for _, must := range []string{"index.html", "style.css", "app.js", "favicon.svg"} {
		if assets[must] == nil {
			t.Errorf("%s is not embedded", must)
		}
	}
	for _, name := range names {
		rec := get(t, h, http.MethodGet, "/ui/"+name)
		if rec.Code != http.StatusOK {
			t.Errorf("GET /ui/%s: %d", name, rec.Code)
			continue
		}
		ct, ok := want[path.Ext(name)]
		if !ok {
			t.Errorf("%s: no expected content type for its extension", name)
		}
		if got := rec.Header().Get("Content-Type"); got != ct {
			t.Errorf("GET /ui/%s: Content-Type %q, want %q", name, got, ct)
		}
		body, _ := staticFS.ReadFile("static/" + name)
		if !bytes.Equal(rec.Body.Bytes(), body) || len(body) == 0 {
			t.Errorf("GET /ui/%s: %d bytes, want the %d embedded", name, rec.Body.Len(), len(body))
		}
		checkSecurityHeaders(t, name, rec)
		// Revalidation by ETag.
		etag := rec.Header().Get("ETag")
		if etag == "" {
			t.Errorf("GET /ui/%s: no ETag", name)
		} else if rec := get(t, h, http.MethodGet, "/ui/"+name, "If-None-Match", etag); rec.Code != http.StatusNotModified {
			t.Errorf("GET /ui/%s with If-None-Match: %d, want 304", name, rec.Code)
		}
		if rec := get(t, h, http.MethodHead, "/ui/"+name); rec.Code != http.StatusOK || rec.Body.Len() != 0 {
			t.Errorf("HEAD /ui/%s: %d with %d bytes", name, rec.Code, rec.Body.Len())
		}
	}
}

func TestIndexAndRedirect(t *testing.T) {
	h := New(Options{Cluster: oneNode()})
	index, _ := staticFS.ReadFile("static/index.html")
	for _, p := range []string{"/ui/", "/ui/index.html"} {
		rec := get(t, h, http.MethodGet, p)
		if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), index) || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("GET %s: %d %q, want index.html", p, rec.Code, rec.Header().Get("Content-Type"))
		}
		checkSecurityHeaders(t, p, rec)
	}
	for p, loc := range map[string]string{"/ui": "/ui/", "/ui?node=n2": "/ui/?node=n2"} {
		rec := get(t, h, http.MethodGet, p)
		if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != loc {
			t.Errorf("GET %s: %d to %q, want a redirect to %q", p, rec.Code, rec.Header().Get("Location"), loc)
		}
	}
	for _, p := range []string{"/ui/nope.js", "/ui/static/app.js", "/ui/api/", "/uix", "/ui/../web.go"} {
		rec := get(t, h, http.MethodGet, p)
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, rec.Code)
		}
		checkSecurityHeaders(t, p, rec)
	}
	if rec := get(t, h, http.MethodPost, "/ui/"); rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /ui/: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
	// Another prefix.
	h2 := New(Options{Cluster: oneNode(), Prefix: "/dash/"})
	if rec := get(t, h2, http.MethodGet, "/dash/app.js"); rec.Code != http.StatusOK {
		t.Errorf("GET /dash/app.js under prefix /dash: %d", rec.Code)
	}
}

// The page loads nothing from elsewhere and runs no inline script or
// style (the CSP would block them), and every file it names is embedded.
func TestPageIsSelfContained(t *testing.T) {
	external := regexp.MustCompile(`(?i)(src|href|url)\s*[=(]\s*["']?\s*(https?:)?//`)
	for _, name := range Assets() {
		body, _ := staticFS.ReadFile("static/" + name)
		if m := external.Find(body); m != nil && name != "favicon.svg" {
			t.Errorf("%s refers to another origin: %s", name, m)
		}
		if bytes.Contains(body, []byte("@import")) || bytes.Contains(body, []byte("@font-face")) {
			t.Errorf("%s imports styles or fonts", name)
		}
	}
	index := string(assets["index.html"].body)
	if regexp.MustCompile(`<script(\s[^>]*)?>[^<]`).MatchString(index) || !strings.Contains(index, `<script src="app.js"`) {
		t.Error("index.html has an inline script, or does not load app.js")
	}
	if regexp.MustCompile(`\sstyle\s*=|<style`).MatchString(index) || regexp.MustCompile(`\son[a-z]+\s*=`).MatchString(index) {
		t.Error("index.html has an inline style or event handler")
	}
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(index, -1) {
		ref := m[1]
		if strings.HasPrefix(ref, "../v1/") || ref == "api/nodes" {
			continue // the JSON the page reads
		}
		if assets[ref] == nil {
			t.Errorf("index.html refers to %q, which is not embedded", ref)
		}
	}
	// The ids the script and the end-to-end test rely on.
	for _, id := range []string{"ring-svg", "ring-arcs", "members-body", "chart-rps", "chart-p99", "hints-body", "repair-list", "transfers-list", "conn"} {
		if !strings.Contains(index, `id="`+id+`"`) {
			t.Errorf("index.html has no element with id %q", id)
		}
		if !strings.Contains(string(assets["app.js"].body), "'"+id+"'") && id != "ring-svg" {
			t.Errorf("app.js does not use the element %q", id)
		}
	}
}

func TestReachableHTTPAddr(t *testing.T) {
	for _, c := range []struct{ http, peer, want string }{
		{"10.0.0.5:8080", "10.0.0.5:7000", "10.0.0.5:8080"},
		{"0.0.0.0:8080", "10.0.0.5:7000", "10.0.0.5:8080"},
		{"[::]:8080", "10.0.0.5:7000", "10.0.0.5:8080"},
		{":8080", "node-a.svc:7000", "node-a.svc:8080"},
		{"[::]:8080", "[fd00::5]:7000", "[fd00::5]:8080"},
		{"node-b:8080", "10.0.0.6:7000", "node-b:8080"},
		{"0.0.0.0:8080", "", "0.0.0.0:8080"},
		{"garbage", "10.0.0.5:7000", "garbage"},
	} {
		if got := reachableHTTPAddr(c.http, c.peer); got != c.want {
			t.Errorf("reachableHTTPAddr(%q, %q) = %q, want %q", c.http, c.peer, got, c.want)
		}
	}
}

// member serves a node's JSON endpoints and counts the requests.
type member struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newMember(t *testing.T, h http.HandlerFunc) *member {
	m := &member{}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func TestNodesFansOut(t *testing.T) {
	two := 2
	load2 := &httpapi.LoadStatus{RequestsPerSecond: 120.5, P99Ms: 3.25, WindowSeconds: 10, Requests: 1205}
	n2 := newMember(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/cluster":
			writeJSON(w, httpapi.ClusterStatus{NodeID: "n2", Load: load2, HandingOver: &two, Members: []httpapi.MemberStatus{
				{ID: "n1", HintsPending: 3, HintsBytes: 300, HintsRefused: 1},
				{ID: "n4", HintsPending: 5, HintsBytes: 500},
			}})
		case "/v1/repair":
			http.Error(w, "anti-entropy is off", http.StatusServiceUnavailable)
		case "/v1/transfers":
			writeJSON(w, map[string]any{"node_id": "n2", "transfers": []Transfer{{Kind: "join", Node: "n2", State: "streaming", PartitionsTotal: 10, PartitionsDone: 4}}})
		default:
			http.NotFound(w, r)
		}
	})
	release := make(chan struct{})
	n3 := newMember(t, func(w http.ResponseWriter, r *http.Request) { // hangs
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	n4 := newMember(t, func(w http.ResponseWriter, r *http.Request) { t.Errorf("n4 is down but was asked %s", r.URL.Path) })
	n5 := newMember(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/cluster" {
			writeJSON(w, httpapi.ClusterStatus{NodeID: "n5", Load: &httpapi.LoadStatus{RequestsPerSecond: 1}})
			return
		}
		http.NotFound(w, r)
	})
	n6 := newMember(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, httpapi.ClusterStatus{NodeID: "someone-else"})
	})
	_, n5port, _ := net.SplitHostPort(n5.srv.Listener.Addr().String())

	var localHits atomic.Int64
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		localHits.Add(1)
		switch r.URL.Path {
		case "/v1/repair":
			writeJSON(w, Repair{RoundsDone: 7, Running: true, PartitionsTotal: 64, PartitionsDone: 10, KeysPulled: 2})
		case "/v1/transfers":
			writeJSON(w, map[string]any{"transfers": []Transfer{}})
		default:
			t.Errorf("the local node was asked %s in process", r.URL.Path)
			http.NotFound(w, r)
		}
	})
	addr := func(m *member) string { return m.srv.Listener.Addr().String() }
	view := fixedView{httpapi.ClusterStatus{
		NodeID: "n1",
		Load:   &httpapi.LoadStatus{RequestsPerSecond: 50, P99Ms: 1.5, WindowSeconds: 10},
		Members: []httpapi.MemberStatus{
			{ID: "n6", State: "normal", Alive: true, HTTPAddr: addr(n6)},
			{ID: "n1", State: "normal", Alive: true, HTTPAddr: "127.0.0.1:1", HintsPending: 0},
			{ID: "n2", State: "joining", Alive: true, HTTPAddr: addr(n2)},
			{ID: "n3", State: "normal", Alive: true, HTTPAddr: addr(n3)},
			{ID: "n4", State: "normal", Alive: false, HTTPAddr: addr(n4), HintsPending: 9},
			{ID: "n5", State: "leaving", Alive: true, HTTPAddr: "0.0.0.0:" + n5port, PeerAddr: "127.0.0.1:7000"},
			{ID: "n7", State: "normal", Alive: true},
		},
	}}
	h := New(Options{Cluster: view, Local: local, Timeout: 300 * time.Millisecond})
	start := time.Now()
	rec := get(t, h, http.MethodGet, "/ui/api/nodes")
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the fan-out took %v with a 300ms timeout", took)
	}
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /ui/api/nodes: %d %q: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	checkSecurityHeaders(t, "api/nodes", rec)
	var resp NodesResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.NodeID != "n1" || len(resp.Nodes) != 7 {
		t.Fatalf("response: %s", rec.Body)
	}
	by := map[string]NodeStatus{}
	for i, n := range resp.Nodes {
		by[n.ID] = n
		if i > 0 && resp.Nodes[i-1].ID >= n.ID {
			t.Errorf("nodes not sorted by ID: %s", rec.Body)
		}
	}
	if n := by["n1"]; !n.Self || n.Error != "" || n.Load == nil || n.Load.RequestsPerSecond != 50 || n.Repair == nil || n.Repair.RoundsDone != 7 || !n.Repair.Running {
		t.Errorf("n1 (this node, in process): %+v", n)
	}
	if localHits.Load() != 2 {
		t.Errorf("the local handler was asked %d times, want 2 (repair, transfers)", localHits.Load())
	}
	if n := by["n2"]; n.Error != "" || n.Load == nil || *n.Load != *load2 || n.HandingOver == nil || *n.HandingOver != 2 ||
		n.HintsPending != 8 || n.HintsBytes != 800 || n.HintsRefused != 1 || n.HintsFor["n4"] != 5 || n.HintsFor["n1"] != 3 ||
		n.Repair != nil || len(n.Transfers) != 1 || n.Transfers[0].PartitionsDone != 4 || n.State != "joining" || n.Addr != addr(n2) {
		t.Errorf("n2: %+v", n)
	}
	if n := by["n3"]; n.Error == "" || n.Load != nil || !n.Alive {
		t.Errorf("n3 (hangs): %+v, want an error", n)
	}
	if n := by["n4"]; n.Alive || n.Error != "" || n.Load != nil || n4.hits.Load() != 0 {
		t.Errorf("n4 (down): %+v, asked %d times", n, n4.hits.Load())
	}
	if n := by["n5"]; n.Error != "" || n.Load == nil || n.Addr != "127.0.0.1:"+n5port {
		t.Errorf("n5 (wildcard HTTP address): %+v", n)
	}
	if n := by["n6"]; !strings.Contains(n.Error, "someone-else") || n.Load != nil {
		t.Errorf("n6 (answers as another node): %+v", n)
	}
	if n := by["n7"]; n.Error == "" {
		t.Errorf("n7 (no HTTP address): %+v", n)
	}
}

// Without a local handler, the node asks itself over HTTP for repair and
// transfers, but takes its cluster status in process.
func TestNodesWithoutLocalHandler(t *testing.T) {
	self := newMember(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/repair":
			writeJSON(w, Repair{RoundsDone: 1})
		case "/v1/transfers":
			writeJSON(w, map[string]any{"transfers": []Transfer{}})
		default:
			t.Errorf("asked %s over HTTP", r.URL.Path)
		}
	})
	view := fixedView{httpapi.ClusterStatus{NodeID: "n1", Load: &httpapi.LoadStatus{P99Ms: 2},
		Members: []httpapi.MemberStatus{{ID: "n1", Alive: true, HTTPAddr: self.srv.Listener.Addr().String()}}}}
	rec := get(t, New(Options{Cluster: view}), http.MethodGet, "/ui/api/nodes")
	var resp NodesResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Nodes) != 1 {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if n := resp.Nodes[0]; n.Error != "" || n.Load == nil || n.Load.P99Ms != 2 || n.Repair == nil || n.Repair.RoundsDone != 1 {
		t.Errorf("n1: %+v", n)
	}
	if self.hits.Load() != 2 {
		t.Errorf("%d requests over HTTP, want 2", self.hits.Load())
	}
}

// Credentials reach the members only when asked to forward them, and over
// the configured scheme.
func TestNodesForwardsAuthorization(t *testing.T) {
	var seen atomic.Value
	seen.Store("")
	peer := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") == "" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		writeJSON(w, httpapi.ClusterStatus{NodeID: "n2", Load: &httpapi.LoadStatus{RequestsPerSecond: 4}})
	}))
	defer peer.Close()
	view := fixedView{httpapi.ClusterStatus{NodeID: "n1", Members: []httpapi.MemberStatus{
		{ID: "n1", Alive: true}, {ID: "n2", Alive: true, HTTPAddr: peer.Listener.Addr().String()},
	}}}
	for _, forward := range []bool{false, true} {
		h := New(Options{Cluster: view, Client: peer.Client(), Scheme: "https", ForwardAuthorization: forward})
		rec := get(t, h, http.MethodGet, "/ui/api/nodes", "Authorization", "Basic dTpw")
		var resp NodesResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || len(resp.Nodes) != 2 {
			t.Fatalf("%v: %s", err, rec.Body)
		}
		n2 := resp.Nodes[1]
		if forward && (n2.Error != "" || n2.Load == nil || seen.Load() != "Basic dTpw") {
			t.Errorf("forwarding: n2 %+v, member saw %q", n2, seen.Load())
		}
		if !forward && (!strings.Contains(n2.Error, "401") || seen.Load() != "") {
			t.Errorf("not forwarding: n2 %+v, member saw %q", n2, seen.Load())
		}
	}
}
