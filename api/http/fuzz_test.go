package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ringkv/ringkv/version"
)

// FuzzHandler drives the key API's request decoding — the escaped key in
// the path, the level parameters, the context header, the Accept header
// and the body — with arbitrary input against an in-memory store. Nothing
// may panic; every answer has an expected status and, when it is JSON, a
// well-formed body (an error with its message); a context token the
// server hands out parses; and a write it accepts is what a read returns.
func FuzzHandler(f *testing.F) {
	tok := version.ClockToString(version.Clock{"n1": 1})
	f.Add(uint8(1), "k", "w=QUORUM", "", "", []byte("v"))
	f.Add(uint8(1), "a%2Fb%00", "w=2&pw=1", tok, "", []byte("v"))
	f.Add(uint8(0), "k", "r=ALL", "", "application/octet-stream", []byte(nil))
	f.Add(uint8(2), "k", "w=LOCAL_QUORUM", tok, "", []byte(nil))
	f.Add(uint8(1), "%zz", "w=-3", "!!", "", []byte("v"))
	f.Add(uint8(3), "k", "", "", "*/*", []byte(nil))
	methods := []string{http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodPost}
	f.Fuzz(func(t *testing.T, m uint8, key, query, ctxHeader, accept string, body []byte) {
		h := NewHandler(NewMemoryStore("n1"), nil, Options{MaxValueSize: 1 << 10, MaxKeySize: 64})
		method := methods[int(m)%len(methods)]
		req, err := http.NewRequest(method, "http://node/v1/kv/"+key+"?"+query, bytes.NewReader(body))
		if err != nil {
			return // not a request a client can send
		}
		for name, v := range map[string]string{HeaderContext: ctxHeader, "Accept": accept} {
			if v != "" && validHeader(v) {
				req.Header.Set(name, v)
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, method, rec)
		if method != http.MethodPut || rec.Code != http.StatusNoContent {
			return
		}
		// The write was accepted: a read of the same key returns it.
		u := *req.URL
		u.RawQuery = "" // the write's levels (w=, pw=) are not a read's
		get, _ := http.NewRequest(http.MethodGet, u.String(), nil)
		get.Header.Set("Accept", "application/octet-stream")
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, get)
		if rec.Code != http.StatusOK || !bytes.Equal(rec.Body.Bytes(), body) {
			t.Fatalf("PUT %q accepted, GET answers %d %q", req.URL, rec.Code, rec.Body.Bytes())
		}
	})
}

// validHeader reports whether v can travel in a header (net/http would
// refuse to send it otherwise).
func validHeader(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func checkAnswer(t *testing.T, method string, rec *httptest.ResponseRecorder) {
	t.Helper()
	switch rec.Code {
	case http.StatusOK, http.StatusNoContent, http.StatusBadRequest, http.StatusNotFound,
		http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge:
	default:
		t.Fatalf("%s: unexpected status %d: %s", method, rec.Code, rec.Body.Bytes())
	}
	if tok := rec.Header().Get(HeaderContext); tok != "" {
		if _, err := version.ParseClock(tok); err != nil {
			t.Fatalf("the server's context token %q does not parse: %v", tok, err)
		}
	}
	if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		return
	}
	if rec.Code >= 400 {
		var e ErrorResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
			t.Fatalf("error %d with body %q: %v", rec.Code, rec.Body.Bytes(), err)
		}
		return
	}
	var r ReadResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("status %d with body %q: %v", rec.Code, rec.Body.Bytes(), err)
	}
}
