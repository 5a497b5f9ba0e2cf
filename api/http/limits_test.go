package httpapi

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/version"
)

// A sibling's dot shows the node ID and its incarnation as fields of their
// own; the context token stays opaque.
func TestDotCarriesIncarnation(t *testing.T) {
	st := NewMemoryStore(version.Actor("n1", 123456789))
	srv := newHandlerServer(t, st)
	if resp, b := do(t, "PUT", kvURL(srv, "k"), []byte("new"), nil); resp.StatusCode != 204 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, b)
	}
	var other version.Object // a concurrent write by a node of an older release
	if _, err := other.WriteBlind("n2", []byte("legacy"), false, 1); err != nil {
		t.Fatal(err)
	}
	st.Merge([]byte("k"), &other)
	resp, b := do(t, "GET", kvURL(srv, "k"), nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d %s", resp.StatusCode, b)
	}
	got := map[string]Dot{}
	for _, s := range decode[ReadResponse](t, b).Siblings {
		got[string(s.Value)] = s.Dot
	}
	if got["new"] != (Dot{Node: "n1", Incarnation: 123456789, Counter: 1}) || got["legacy"] != (Dot{Node: "n2", Counter: 1}) {
		t.Fatalf("dots %+v", got)
	}
	if !bytes.Contains(b, []byte(`"incarnation":123456789`)) {
		t.Fatalf("body %s", b)
	}
}

func newHandlerServer(t *testing.T, st *MemoryStore) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(NewHandler(st, nil, Options{}))
	t.Cleanup(srv.Close)
	return srv
}

// A context naming writes the key never had is a 400 saying to read the
// key again; the key is unchanged.
func TestUnknownContextIs400(t *testing.T) {
	srv, st := newServer(t, Options{})
	if resp, b := do(t, "PUT", kvURL(srv, "k"), []byte("v1"), nil); resp.StatusCode != 204 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, b)
	}
	forged := version.ClockToString(version.Clock{"n1": 1, "intruder~1": 5})
	for _, m := range []string{"PUT", "DELETE"} {
		for _, key := range []string{"k", "never-written"} {
			resp, b := do(t, m, kvURL(srv, key), []byte("v2"), map[string]string{HeaderContext: forged})
			e := decode[ErrorResponse](t, b)
			if resp.StatusCode != 400 || !strings.Contains(e.Error, "read the key again") {
				t.Fatalf("%s %s with a forged context: %d %s", m, key, resp.StatusCode, b)
			}
		}
	}
	if got, _ := st.MemoryStore.Get(context.Background(), []byte("k"), 0); len(got.Siblings) != 1 || string(got.Siblings[0].Value) != "v1" {
		t.Fatalf("key changed: %v", got)
	}
	if st.Len() != 1 {
		t.Fatalf("%d keys: a refused write created one", st.Len())
	}
}

// Siblings that together would exceed version.MaxObjectSize: a 413 with
// the count, the size and what to do; a write with the read's context
// resolves them.
func TestObjectTooLargeIs413(t *testing.T) {
	srv, _ := newServer(t, Options{MaxValueSize: 2 << 20})
	value := bytes.Repeat([]byte("x"), 2<<20)
	// Every PUT after the first sends the first one's context: it
	// supersedes that write only, so each adds a sibling.
	var first string
	var last []byte
	status := 0
	for i := 0; i < 10; i++ {
		hdr := map[string]string{}
		if i > 0 {
			hdr[HeaderContext] = first
		}
		resp, b := do(t, "PUT", kvURL(srv, "k"), value, hdr)
		if i == 0 {
			first = resp.Header.Get(HeaderContext)
		}
		status, last = resp.StatusCode, b
		if status != 204 && status != 200 {
			break
		}
	}
	e := decode[ErrorResponse](t, last)
	if status != 413 || !strings.Contains(e.Error, "siblings totalling") || !strings.Contains(e.Error, "resolve the siblings") {
		t.Fatalf("status %d: %s", status, last)
	}
	resp, b := do(t, "GET", kvURL(srv, "k"), nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET: %d %s", resp.StatusCode, b)
	}
	n := len(decode[ReadResponse](t, b).Siblings)
	if resp, b := do(t, "PUT", kvURL(srv, "k"), value, map[string]string{HeaderContext: resp.Header.Get(HeaderContext)}); resp.StatusCode != 204 {
		t.Fatalf("resolving %d siblings: %d %s", n, resp.StatusCode, b)
	}
	if n != version.MaxObjectSize/len(value)-1 {
		t.Fatalf("%d siblings stored", n)
	}
}
