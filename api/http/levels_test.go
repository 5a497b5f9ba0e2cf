package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/version"
)

// levelStore is a LevelStore over a MemoryStore that records the levels of
// each call and can fail them with err.
type levelStore struct {
	*MemoryStore
	mu     sync.Mutex
	levels []coordinator.Levels
	err    error
}

func (s *levelStore) record(lv coordinator.Levels) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.levels = append(s.levels, lv)
	return s.err
}

func (s *levelStore) GetAt(ctx context.Context, key []byte, lv coordinator.Levels) (*version.Object, error) {
	if err := s.record(lv); err != nil {
		return nil, err
	}
	return s.Get(ctx, key, lv.R)
}

func (s *levelStore) PutAt(ctx context.Context, key, value []byte, c version.Clock, lv coordinator.Levels) (*version.Object, error) {
	if err := s.record(lv); err != nil {
		return nil, err
	}
	return s.Put(ctx, key, value, c, lv.W)
}

func (s *levelStore) DeleteAt(ctx context.Context, key []byte, c version.Clock, lv coordinator.Levels) (*version.Object, error) {
	if err := s.record(lv); err != nil {
		return nil, err
	}
	return s.Delete(ctx, key, c, lv.W)
}

func call(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader("v"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestPrimaryLevelsReachTheStore(t *testing.T) {
	st := &levelStore{MemoryStore: NewMemoryStore("n1")}
	srv := httptest.NewServer(NewHandler(st, nil, Options{}))
	defer srv.Close()
	for _, c := range []struct {
		method, query string
		want          coordinator.Levels
	}{
		{http.MethodPut, "?w=2&pw=QUORUM", coordinator.Levels{W: 2, PW: coordinator.Quorum}},
		{http.MethodGet, "?r=1&pr=1", coordinator.Levels{R: 1, PR: 1}},
		{http.MethodGet, "?pr=0", coordinator.Levels{}},
		{http.MethodDelete, "?pw=all", coordinator.Levels{PW: coordinator.All}},
	} {
		st.levels = nil
		if code, body := call(t, c.method, srv.URL+"/v1/kv/k"+c.query); code >= 300 && code != http.StatusNotFound {
			t.Fatalf("%s %s: %d %s", c.method, c.query, code, body)
		}
		if len(st.levels) != 1 || st.levels[0] != c.want {
			t.Fatalf("%s %s: store got %+v, want %+v", c.method, c.query, st.levels, c.want)
		}
	}
	for _, q := range []string{"?pw=many", "?pw=-1", "?w=0"} {
		if code, _ := call(t, http.MethodPut, srv.URL+"/v1/kv/k"+q); code != http.StatusBadRequest {
			t.Fatalf("PUT %s: %d, want 400", q, code)
		}
	}
}

func TestUnmetPrimaryLevelIs503(t *testing.T) {
	st := &levelStore{MemoryStore: NewMemoryStore("n1"), err: &coordinator.QuorumError{
		Op: "write", Primaries: true, Needed: 2, Answered: 1, Replicas: 3, Last: coordinator.ErrTooFewPrimaries}}
	srv := httptest.NewServer(NewHandler(st, nil, Options{}))
	defer srv.Close()
	code, body := call(t, http.MethodPut, srv.URL+"/v1/kv/k?pw=2")
	var er ErrorResponse
	if err := json.Unmarshal([]byte(body), &er); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(er.Error, "pw") || er.ReplicasNeeded == nil || *er.ReplicasNeeded != 2 {
		t.Fatalf("unmet pw: %d %s, want 503 naming pw with 2 needed", code, body)
	}
}

func TestPrimaryLevelsNeedALevelStore(t *testing.T) {
	srv := httptest.NewServer(NewHandler(NewMemoryStore("n1"), nil, Options{}))
	defer srv.Close()
	if code, body := call(t, http.MethodGet, srv.URL+"/v1/kv/k?pr=1"); code != http.StatusBadRequest || !strings.Contains(body, "pr") {
		t.Fatalf("GET ?pr=1 on a store without primary levels: %d %s, want 400", code, body)
	}
	if code, _ := call(t, http.MethodGet, srv.URL+"/v1/kv/k?r=1"); code != http.StatusNotFound {
		t.Fatalf("GET ?r=1: %d, want 404 (no key)", code)
	}
}

// The datacenter levels are accepted for r and w (any case) and reach the
// store; pr and pw count primaries and refuse them; an unmet datacenter
// level is a 503 that names the datacenter.
func TestDatacenterLevelsReachTheStore(t *testing.T) {
	st := &levelStore{MemoryStore: NewMemoryStore("n1")}
	srv := httptest.NewServer(NewHandler(st, nil, Options{}))
	defer srv.Close()
	for _, c := range []struct {
		method, query string
		want          coordinator.Levels
	}{
		{http.MethodPut, "?w=LOCAL_QUORUM", coordinator.Levels{W: coordinator.LocalQuorum}},
		{http.MethodPut, "?w=each_quorum&pw=2", coordinator.Levels{W: coordinator.EachQuorum, PW: 2}},
		{http.MethodGet, "?r=Local_One", coordinator.Levels{R: coordinator.LocalOne}},
		{http.MethodDelete, "?w=LOCAL_ONE", coordinator.Levels{W: coordinator.LocalOne}},
	} {
		st.levels = nil
		if code, body := call(t, c.method, srv.URL+"/v1/kv/k"+c.query); code >= 300 && code != http.StatusNotFound {
			t.Fatalf("%s %s: %d %s", c.method, c.query, code, body)
		}
		if len(st.levels) != 1 || st.levels[0] != c.want {
			t.Fatalf("%s %s: store got %+v, want %+v", c.method, c.query, st.levels, c.want)
		}
	}
	for _, q := range []string{"?pw=LOCAL_QUORUM", "?w=LOCAL", "?pw=each_quorum"} {
		if code, _ := call(t, http.MethodPut, srv.URL+"/v1/kv/k"+q); code != http.StatusBadRequest {
			t.Fatalf("PUT %s: %d, want 400", q, code)
		}
	}
	st.err = &coordinator.QuorumError{Op: "write", DC: "dc2", Needed: 2, Answered: 0, Replicas: 3}
	code, body := call(t, http.MethodPut, srv.URL+"/v1/kv/k?w=EACH_QUORUM")
	var er ErrorResponse
	if err := json.Unmarshal([]byte(body), &er); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(er.Error, `datacenter "dc2"`) ||
		er.ReplicasNeeded == nil || *er.ReplicasNeeded != 2 {
		t.Fatalf("unmet EACH_QUORUM: %d %s, want 503 naming dc2 with 2 needed", code, body)
	}
}
