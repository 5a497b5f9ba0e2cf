package httpapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/version"
)

// spyStore wraps a MemoryStore, records the levels it was called with and
// can fail every call with err.
type spyStore struct {
	*MemoryStore
	mu     sync.Mutex
	levels []int
	causal []version.Clock
	err    error
	calls  int
}

func (s *spyStore) record(lv int, c version.Clock) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	s.levels = append(s.levels, lv)
	s.causal = append(s.causal, c)
	return s.err
}

func (s *spyStore) Get(ctx context.Context, key []byte, r int) (*version.Object, error) {
	if err := s.record(r, nil); err != nil {
		return nil, err
	}
	return s.MemoryStore.Get(ctx, key, r)
}

func (s *spyStore) Put(ctx context.Context, key, value []byte, c version.Clock, w int) (*version.Object, error) {
	if err := s.record(w, c); err != nil {
		return nil, err
	}
	return s.MemoryStore.Put(ctx, key, value, c, w)
}

func (s *spyStore) Delete(ctx context.Context, key []byte, c version.Clock, w int) (*version.Object, error) {
	if err := s.record(w, c); err != nil {
		return nil, err
	}
	return s.MemoryStore.Delete(ctx, key, c, w)
}

type staticView ClusterStatus

func (v staticView) Status() ClusterStatus { return ClusterStatus(v) }

func newServer(t *testing.T, o Options) (*httptest.Server, *spyStore) {
	t.Helper()
	st := &spyStore{MemoryStore: NewMemoryStore("n1")}
	view := staticView{NodeID: "n1", Partitions: 8, Replicas: 3}
	srv := httptest.NewServer(NewHandler(st, view, o))
	t.Cleanup(srv.Close)
	return srv, st
}

func do(t *testing.T, method, u string, body []byte, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func kvURL(srv *httptest.Server, key string) string {
	return srv.URL + kvPrefix + url.PathEscape(key)
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func TestGetAbsent(t *testing.T) {
	srv, _ := newServer(t, Options{})
	resp, b := do(t, "GET", kvURL(srv, "nope"), nil, nil)
	if resp.StatusCode != 404 {
		t.Fatalf("status %d, want 404: %s", resp.StatusCode, b)
	}
	if e := decode[ErrorResponse](t, b); e.Error == "" || e.Context != "" {
		t.Fatalf("body %s", b)
	}
	if h := resp.Header.Get(HeaderContext); h != "" {
		t.Fatalf("context header %q on a never-written key", h)
	}
}

func TestPutThenGet(t *testing.T) {
	srv, _ := newServer(t, Options{})
	key := "a/b c?d%\xff" // slash, space, query char, percent, invalid UTF-8
	resp, b := do(t, "PUT", kvURL(srv, key), []byte("hello"), nil)
	if resp.StatusCode != 204 {
		t.Fatalf("PUT status %d: %s", resp.StatusCode, b)
	}
	putCtx := resp.Header.Get(HeaderContext)
	if putCtx == "" || resp.Header.Get(HeaderSiblings) != "1" {
		t.Fatalf("PUT headers %v", resp.Header)
	}

	resp, b = do(t, "GET", kvURL(srv, key), nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET status %d: %s", resp.StatusCode, b)
	}
	rr := decode[ReadResponse](t, b)
	if rr.Context != putCtx || resp.Header.Get(HeaderContext) != putCtx {
		t.Fatalf("context %q / header %q, want %q", rr.Context, resp.Header.Get(HeaderContext), putCtx)
	}
	if !bytes.Equal(rr.KeyBase64, []byte(key)) {
		t.Fatalf("key_base64 %q", rr.KeyBase64)
	}
	if len(rr.Siblings) != 1 {
		t.Fatalf("siblings %+v", rr.Siblings)
	}
	s := rr.Siblings[0]
	if string(s.Value) != "hello" || s.ValueText == nil || *s.ValueText != "hello" ||
		s.Dot != (Dot{Node: "n1", Counter: 1}) || time.Since(s.Timestamp) > time.Minute {
		t.Fatalf("sibling %+v", s)
	}
	// Raw JSON shape: value is base64, timestamp RFC 3339.
	var raw map[string]any
	json.Unmarshal(b, &raw)
	sib := raw["siblings"].([]any)[0].(map[string]any)
	if sib["value"] != base64.StdEncoding.EncodeToString([]byte("hello")) {
		t.Fatalf("raw value %v", sib["value"])
	}
	if _, err := time.Parse(time.RFC3339Nano, sib["timestamp"].(string)); err != nil {
		t.Fatal(err)
	}

	// The unescaped-slash spelling of a plain key reaches the same key.
	do(t, "PUT", srv.URL+"/v1/kv/x%2Fy", []byte("1"), nil)
	resp, b = do(t, "GET", srv.URL+"/v1/kv/x/y", nil, nil)
	if resp.StatusCode != 200 || decode[ReadResponse](t, b).Key != "x/y" {
		t.Fatalf("x/y: %d %s", resp.StatusCode, b)
	}

	// Keys that a path cleaner would rewrite are kept verbatim.
	for _, k := range []string{"..", "a//b"} {
		u := srv.URL + kvPrefix + strings.ReplaceAll(url.PathEscape(k), ".", "%2E")
		if resp, b := do(t, "PUT", u, []byte(k), nil); resp.StatusCode != 204 {
			t.Fatalf("PUT %q: %d %s", k, resp.StatusCode, b)
		}
		resp, b := do(t, "GET", u, nil, nil)
		if resp.StatusCode != 200 || decode[ReadResponse](t, b).Key != k {
			t.Fatalf("GET %q: %d %s", k, resp.StatusCode, b)
		}
	}
}

func TestRawAccept(t *testing.T) {
	srv, st := newServer(t, Options{})
	do(t, "PUT", kvURL(srv, "k"), []byte("old"), nil)
	// A newer concurrent sibling from another replica.
	var other version.Object
	other.Write("n2", nil, []byte("new"), false, time.Now().Add(time.Hour).UnixNano())
	st.Merge([]byte("k"), &other)

	resp, b := do(t, "GET", kvURL(srv, "k"), nil, map[string]string{"Accept": "application/octet-stream, application/json"})
	if resp.StatusCode != 200 || string(b) != "new" || resp.Header.Get(HeaderSiblings) != "2" ||
		resp.Header.Get("Content-Type") != "application/octet-stream" || resp.Header.Get(HeaderContext) == "" {
		t.Fatalf("raw: %d %q %v", resp.StatusCode, b, resp.Header)
	}
	resp, b = do(t, "GET", kvURL(srv, "k"), nil, map[string]string{"Accept": "application/json, application/octet-stream"})
	if resp.StatusCode != 200 || len(decode[ReadResponse](t, b).Siblings) != 2 {
		t.Fatalf("json: %d %s", resp.StatusCode, b)
	}
}

func TestSiblingsCollapse(t *testing.T) {
	srv, st := newServer(t, Options{})
	key := []byte("k")
	do(t, "PUT", kvURL(srv, "k"), []byte("v1"), nil)
	// Another replica coordinated a concurrent write the local one had not seen.
	var other version.Object
	other.Write("n2", nil, []byte("v2"), false, time.Now().UnixNano())
	st.Merge(key, &other)

	resp, b := do(t, "GET", kvURL(srv, "k"), nil, nil)
	rr := decode[ReadResponse](t, b)
	if resp.StatusCode != 200 || len(rr.Siblings) != 2 || resp.Header.Get(HeaderSiblings) != "2" {
		t.Fatalf("GET: %d %s", resp.StatusCode, b)
	}
	got := map[string]bool{}
	for _, s := range rr.Siblings {
		got[string(s.Value)+"@"+s.Dot.Node] = true
	}
	if !got["v1@n1"] || !got["v2@n2"] {
		t.Fatalf("siblings %s", b)
	}

	// A write with a stale (empty-for-n2) context keeps v2 and answers 200
	// with both live versions.
	stale, _ := version.ParseClock(rr.Context)
	delete(stale, "n2")
	resp, b = do(t, "PUT", kvURL(srv, "k"), []byte("v3"), map[string]string{HeaderContext: version.ClockToString(stale)})
	if resp.StatusCode != 200 || len(decode[ReadResponse](t, b).Siblings) != 2 {
		t.Fatalf("stale PUT: %d %s", resp.StatusCode, b)
	}

	// Writing with the context of a read that saw everything collapses.
	resp, b = do(t, "GET", kvURL(srv, "k"), nil, nil)
	tok := resp.Header.Get(HeaderContext)
	resp, b = do(t, "PUT", kvURL(srv, "k"), []byte("merged"), map[string]string{HeaderContext: tok})
	if resp.StatusCode != 204 || resp.Header.Get(HeaderSiblings) != "1" {
		t.Fatalf("collapsing PUT: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", kvURL(srv, "k"), nil, nil)
	rr = decode[ReadResponse](t, b)
	if len(rr.Siblings) != 1 || string(rr.Siblings[0].Value) != "merged" {
		t.Fatalf("after collapse: %s", b)
	}
}

func TestDelete(t *testing.T) {
	srv, st := newServer(t, Options{})
	do(t, "PUT", kvURL(srv, "k"), []byte("v"), nil)
	resp, b := do(t, "DELETE", kvURL(srv, "k"), nil, nil)
	if resp.StatusCode != 204 || resp.Header.Get(HeaderContext) == "" {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, "GET", kvURL(srv, "k"), nil, nil)
	tok := resp.Header.Get(HeaderContext)
	if resp.StatusCode != 404 || tok == "" || decode[ErrorResponse](t, b).Context != tok {
		t.Fatalf("GET deleted: %d %s %v", resp.StatusCode, b, resp.Header)
	}
	// Writing after the delete with its context: no tombstone sibling left.
	do(t, "PUT", kvURL(srv, "k"), []byte("again"), map[string]string{HeaderContext: tok})
	o, _ := st.MemoryStore.Get(context.Background(), []byte("k"), 0)
	if len(o.Siblings) != 1 || string(o.Siblings[0].Value) != "again" {
		t.Fatalf("object %v", o)
	}
	// The causal context reached the store; a missing header means blind.
	if st.causal[len(st.causal)-1] == nil || st.causal[1] != nil {
		t.Fatalf("causal contexts %v", st.causal)
	}
}

func TestLevels(t *testing.T) {
	srv, st := newServer(t, Options{})
	cases := []struct {
		method, q string
		want      int
	}{
		{"GET", "", coordinator.Default},
		{"GET", "?r=2", 2},
		{"GET", "?r=one", coordinator.One},
		{"PUT", "?w=QUORUM", coordinator.Quorum},
		{"DELETE", "?w=ALL", coordinator.All},
		{"PUT", "?w=3", 3},
	}
	for _, c := range cases {
		do(t, c.method, kvURL(srv, "k")+c.q, []byte("v"), nil)
		if got := st.levels[len(st.levels)-1]; got != c.want {
			t.Errorf("%s %s: level %d, want %d", c.method, c.q, got, c.want)
		}
	}
	calls := st.calls
	for _, q := range []string{"?r=0", "?r=MOST", "?r=-1"} {
		resp, b := do(t, "GET", kvURL(srv, "k")+q, nil, nil)
		if resp.StatusCode != 400 || decode[ErrorResponse](t, b).Error == "" {
			t.Errorf("%s: %d %s", q, resp.StatusCode, b)
		}
	}
	if st.calls != calls {
		t.Fatal("store called with a bad level")
	}
	// A level the coordinator rejects (more than N) is a 400 too.
	st.err = fmt.Errorf("resolve: %w", coordinator.ErrBadLevel)
	if resp, b := do(t, "GET", kvURL(srv, "k")+"?r=9", nil, nil); resp.StatusCode != 400 {
		t.Fatalf("ErrBadLevel: %d %s", resp.StatusCode, b)
	}
}

func TestQuorumError(t *testing.T) {
	srv, st := newServer(t, Options{})
	st.err = &coordinator.QuorumError{Op: "write", Needed: 2, Answered: 1, Replicas: 3, Last: errors.New("timeout")}
	resp, b := do(t, "PUT", kvURL(srv, "k"), []byte("v"), nil)
	if resp.StatusCode != 503 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	e := decode[ErrorResponse](t, b)
	if e.ReplicasAnswered == nil || *e.ReplicasAnswered != 1 || *e.ReplicasNeeded != 2 || *e.Replicas != 3 ||
		!strings.Contains(e.Error, "quorum") {
		t.Fatalf("body %s", b)
	}
	st.err = errors.New("disk on fire")
	if resp, b := do(t, "GET", kvURL(srv, "k"), nil, nil); resp.StatusCode != 500 || !strings.Contains(string(b), "disk on fire") {
		t.Fatalf("generic error: %d %s", resp.StatusCode, b)
	}
	st.err = context.DeadlineExceeded
	if resp, _ := do(t, "GET", kvURL(srv, "k"), nil, nil); resp.StatusCode != 504 {
		t.Fatalf("deadline: %d", resp.StatusCode)
	}
}

func TestOversized(t *testing.T) {
	srv, st := newServer(t, Options{MaxValueSize: 10, MaxKeySize: 4})
	resp, b := do(t, "PUT", kvURL(srv, "k"), bytes.Repeat([]byte("x"), 11), nil)
	if resp.StatusCode != 413 || decode[ErrorResponse](t, b).Error == "" {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	// Without a Content-Length (chunked), the limit is enforced while reading.
	req, _ := http.NewRequest("PUT", kvURL(srv, "k"), io.MultiReader(strings.NewReader("0123456789"), strings.NewReader("abc")))
	req.ContentLength = -1
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 413 {
		t.Fatalf("chunked: status %d", resp2.StatusCode)
	}
	if st.calls != 0 || st.Len() != 0 {
		t.Fatalf("store touched: %d calls, %d keys", st.calls, st.Len())
	}
	if resp, _ := do(t, "PUT", kvURL(srv, "k"), bytes.Repeat([]byte("x"), 10), nil); resp.StatusCode != 204 {
		t.Fatalf("at the limit: %d", resp.StatusCode)
	}
	if resp, b := do(t, "GET", kvURL(srv, "12345"), nil, nil); resp.StatusCode != 400 {
		t.Fatalf("long key: %d %s", resp.StatusCode, b)
	}
	if resp, b := do(t, "GET", srv.URL+kvPrefix, nil, nil); resp.StatusCode != 400 {
		t.Fatalf("empty key: %d %s", resp.StatusCode, b)
	}
}

func TestBadContext(t *testing.T) {
	srv, st := newServer(t, Options{})
	for _, tok := range []string{"!!!", "AAAA", base64.RawURLEncoding.EncodeToString([]byte{9, 0})} {
		for _, m := range []string{"PUT", "DELETE"} {
			resp, b := do(t, m, kvURL(srv, "k"), []byte("v"), map[string]string{HeaderContext: tok})
			if resp.StatusCode != 400 || !strings.Contains(decode[ErrorResponse](t, b).Error, HeaderContext) {
				t.Fatalf("%s %q: %d %s", m, tok, resp.StatusCode, b)
			}
		}
	}
	if st.calls != 0 {
		t.Fatal("store called with a bad context")
	}
}

func TestMethodsAndRoutes(t *testing.T) {
	srv, _ := newServer(t, Options{})
	resp, b := do(t, "POST", kvURL(srv, "k"), []byte("v"), nil)
	if resp.StatusCode != 405 || resp.Header.Get("Allow") == "" || decode[ErrorResponse](t, b).Error == "" {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	if resp, _ := do(t, "DELETE", srv.URL+"/v1/cluster", nil, nil); resp.StatusCode != 405 {
		t.Fatalf("DELETE cluster: %d", resp.StatusCode)
	}
	if resp, b := do(t, "GET", srv.URL+"/healthz", nil, nil); resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "ok" {
		t.Fatalf("healthz: %d %q", resp.StatusCode, b)
	}
	if resp, _ := do(t, "GET", srv.URL+"/nope", nil, nil); resp.StatusCode != 404 {
		t.Fatalf("unknown route: %d", resp.StatusCode)
	}
}

func TestCluster(t *testing.T) {
	members := []ring.Member{
		{ID: "a", DC: "dc1", Rack: "r1", Weight: 1, State: ring.StateNormal},
		{ID: "b", DC: "dc1", Rack: "r2", Weight: 2, State: ring.StateNormal},
		{ID: "c", DC: "dc1", Rack: "r3", Weight: 1, State: ring.StateJoining},
	}
	rg, err := ring.New(ring.Config{Partitions: 16, Replicas: 2}, members)
	if err != nil {
		t.Fatal(err)
	}
	st := StatusFromRing("a", rg)
	st.Members[0].Alive, st.Members[0].HTTPAddr = true, "127.0.0.1:8080"
	srv := httptest.NewServer(NewHandler(NewMemoryStore("a"), staticView(st), Options{}))
	defer srv.Close()

	resp, b := do(t, "GET", srv.URL+"/v1/cluster", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"node_id", "members", "partitions", "replicas", "ownership", "primary_counts", "replica_counts"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("field %q missing in %s", f, b)
		}
	}
	m0 := raw["members"].([]any)[0].(map[string]any)
	for _, f := range []string{"id", "dc", "rack", "weight", "state", "alive", "http_addr"} {
		if _, ok := m0[f]; !ok {
			t.Errorf("member field %q missing in %v", f, m0)
		}
	}
	got := decode[ClusterStatus](t, b)
	if got.NodeID != "a" || got.Partitions != 16 || got.Replicas != 2 || len(got.Members) != 3 ||
		got.Members[2].State != "joining" || got.Members[1].Weight != 2 {
		t.Fatalf("status %+v", got)
	}
	total := 0
	for id, ps := range got.Ownership {
		if got.PrimaryCounts[id] != len(ps) {
			t.Errorf("primary count of %s", id)
		}
		total += len(ps)
	}
	if total != 16 || got.Ownership["c"] != nil {
		t.Fatalf("ownership %v", got.Ownership)
	}

	// No view: 501.
	srv2 := httptest.NewServer(NewHandler(NewMemoryStore("a"), nil, Options{}))
	defer srv2.Close()
	if resp, _ := do(t, "GET", srv2.URL+"/v1/cluster", nil, nil); resp.StatusCode != 501 {
		t.Fatalf("nil view: %d", resp.StatusCode)
	}
}

func TestCoordinatorSatisfiesStore(t *testing.T) {
	var _ Store = (*coordinator.Coordinator)(nil)
}
