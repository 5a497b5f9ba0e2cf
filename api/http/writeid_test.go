package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A PUT or DELETE sent twice with one X-Ringkv-Write-Id is applied once; a
// malformed ID is refused with 400 before anything is written.
func TestWriteIDHeader(t *testing.T) {
	st := NewMemoryStore("a")
	srv := httptest.NewServer(NewHandler(st, nil, Options{}))
	t.Cleanup(srv.Close)
	u := kvURL(srv, "k")
	resp, _ := do(t, http.MethodPut, u, []byte("old"), nil)
	ctxTok := resp.Header.Get(HeaderContext)
	for range 2 {
		resp, body := do(t, http.MethodPut, u, []byte("new"), map[string]string{HeaderContext: ctxTok, HeaderWriteID: "00ab12"})
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get(HeaderSiblings) != "1" {
			t.Fatalf("PUT with a write ID: %d %s, %s siblings", resp.StatusCode, body, resp.Header.Get(HeaderSiblings))
		}
	}
	if o, _ := st.Get(t.Context(), []byte("k"), 0); len(o.Siblings) != 1 || o.Siblings[0].WriteID != 0xab12 {
		t.Fatalf("after two attempts of one write: %v", o)
	}
	for _, bad := range []string{"0", "xyz", "12345678901234567", "00000000000000001", "-1", "+1"} {
		for _, method := range []string{http.MethodPut, http.MethodDelete} {
			resp, body := do(t, method, kvURL(srv, "bad"), []byte("v"), map[string]string{HeaderWriteID: bad})
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), HeaderWriteID) {
				t.Fatalf("%s with write ID %q: %d %s, want 400 naming the header", method, bad, resp.StatusCode, body)
			}
		}
	}
	if st.Len() != 1 {
		t.Fatalf("a refused write was stored: %d keys", st.Len())
	}
	// A DELETE retried under one ID is one tombstone.
	for range 2 {
		if resp, body := do(t, http.MethodDelete, u, nil, map[string]string{HeaderWriteID: "77"}); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", resp.StatusCode, body)
		}
	}
	if o, _ := st.Get(t.Context(), []byte("k"), 0); len(o.Siblings) != 1 || !o.Siblings[0].Deleted {
		t.Fatalf("after two attempts of one delete: %v", o)
	}
}
