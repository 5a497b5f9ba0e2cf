package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/version"
)

// Defaults for the zero fields of Options.
const (
	DefaultMaxValueSize = 1 << 20
	DefaultMaxKeySize   = 1 << 10
	DefaultBodyTimeout  = 30 * time.Second
)

// kvPrefix is the escaped path prefix of the key routes.
const kvPrefix = "/v1/kv/"

// Options configure the handler. Zero fields take their defaults.
type Options struct {
	// MaxValueSize bounds a PUT body; larger bodies are answered 413
	// before the store is called. Default 1 MiB.
	MaxValueSize int64
	// MaxKeySize bounds a key in bytes; longer keys are answered 400.
	// Default 1 KiB.
	MaxKeySize int
	// BodyTimeout bounds reading a PUT body, from the moment the handler
	// starts reading it: a client trickling its body (one byte a second)
	// gets its connection closed instead of holding it forever. It sets
	// the connection's read deadline (http.ResponseController), so it
	// works whatever the http.Server's own timeouts. Default 30 s;
	// negative: none.
	BodyTimeout time.Duration
	// Logf receives server-side failures (500s). Default: discard.
	Logf func(format string, args ...any)
}

type handler struct {
	store Store
	view  ClusterView
	o     Options
}

// NewHandler returns the HTTP API over s; c may be nil, in which case
// /v1/cluster answers 501.
func NewHandler(s Store, c ClusterView, o Options) http.Handler {
	if o.MaxValueSize <= 0 {
		o.MaxValueSize = DefaultMaxValueSize
	}
	if o.MaxKeySize <= 0 {
		o.MaxKeySize = DefaultMaxKeySize
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	switch {
	case o.BodyTimeout == 0:
		o.BodyTimeout = DefaultBodyTimeout
	case o.BodyTimeout < 0:
		o.BodyTimeout = 0
	}
	return &handler{store: s, view: c, o: o}
}

// ServeHTTP routes by hand rather than through http.ServeMux: the mux
// cleans paths ("..", "//") and would redirect requests whose keys contain
// such sequences.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(path, kvPrefix):
		h.serveKV(w, r, strings.TrimPrefix(path, kvPrefix))
	case path == "/v1/cluster":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		h.serveCluster(w)
	case path == "/healthz":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	default:
		writeJSON(w, http.StatusNotFound, ErrorResponse{Error: fmt.Sprintf("no route for %s", r.URL.Path)})
	}
}

// allow answers 405 (with an Allow header) unless r's method is listed.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, ErrorResponse{
		Error: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(methods, ", ")),
	})
	return false
}

func (h *handler) serveCluster(w http.ResponseWriter) {
	if h.view == nil {
		writeJSON(w, http.StatusNotImplemented, ErrorResponse{Error: "cluster view not available on this node"})
		return
	}
	writeJSON(w, http.StatusOK, h.view.Status())
}

func (h *handler) serveKV(w http.ResponseWriter, r *http.Request, escaped string) {
	if !allow(w, r, http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete) {
		return
	}
	key, err := url.PathUnescape(escaped)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: fmt.Sprintf("bad key escaping: %v", err)})
		return
	}
	switch {
	case key == "":
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: "empty key"})
		return
	case len(key) > h.o.MaxKeySize:
		writeJSON(w, http.StatusBadRequest, ErrorResponse{
			Error: fmt.Sprintf("key of %d bytes exceeds the limit of %d", len(key), h.o.MaxKeySize),
		})
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.get(w, r, []byte(key))
	case http.MethodPut:
		h.put(w, r, []byte(key))
	case http.MethodDelete:
		h.del(w, r, []byte(key))
	}
}

// LevelStore is a Store that also takes the primary levels PR and PW
// (?pr=, ?pw=); *coordinator.Coordinator is one. With a Store that is not,
// a request that sets either is answered 400.
type LevelStore interface {
	GetAt(ctx context.Context, key []byte, lv coordinator.Levels) (*version.Object, error)
	PutAt(ctx context.Context, key, value []byte, causal version.Clock, lv coordinator.Levels) (*version.Object, error)
	DeleteAt(ctx context.Context, key []byte, causal version.Clock, lv coordinator.Levels) (*version.Object, error)
}

// levels parses a request's levels: ?r= and ?pr= for a read, ?w= and ?pw=
// for a write (a number, ONE, QUORUM or ALL; for pr and pw also 0, no
// requirement). It answers 400 itself and returns false on a bad one, or
// when pr or pw is set and the store cannot take it.
func (h *handler) levels(w http.ResponseWriter, r *http.Request, write bool) (coordinator.Levels, bool) {
	var lv coordinator.Levels
	quorum, primaries := "r", "pr"
	q, p := &lv.R, &lv.PR
	if write {
		quorum, primaries = "w", "pw"
		q, p = &lv.W, &lv.PW
	}
	var ok bool
	if *q, ok = level(w, r, quorum, coordinator.ParseLevel); !ok {
		return lv, false
	}
	if *p, ok = level(w, r, primaries, coordinator.ParsePrimaryLevel); !ok {
		return lv, false
	}
	if _, can := h.store.(LevelStore); *p != coordinator.Default && !can {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: fmt.Sprintf("parameter %s is not supported by this node", primaries)})
		return lv, false
	}
	return lv, true
}

func (h *handler) getAt(ctx context.Context, key []byte, lv coordinator.Levels) (*version.Object, error) {
	if ls, ok := h.store.(LevelStore); ok {
		return ls.GetAt(ctx, key, lv)
	}
	return h.store.Get(ctx, key, lv.R)
}

func (h *handler) putAt(ctx context.Context, key, value []byte, causal version.Clock, lv coordinator.Levels) (*version.Object, error) {
	if ls, ok := h.store.(LevelStore); ok {
		return ls.PutAt(ctx, key, value, causal, lv)
	}
	return h.store.Put(ctx, key, value, causal, lv.W)
}

func (h *handler) deleteAt(ctx context.Context, key []byte, causal version.Clock, lv coordinator.Levels) (*version.Object, error) {
	if ls, ok := h.store.(LevelStore); ok {
		return ls.DeleteAt(ctx, key, causal, lv)
	}
	return h.store.Delete(ctx, key, causal, lv.W)
}

// level parses the query parameter name with parse.
func level(w http.ResponseWriter, r *http.Request, name string, parse func(string) (int, error)) (int, bool) {
	lv, err := parse(r.URL.Query().Get(name))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: fmt.Sprintf("parameter %s: %v", name, err)})
		return 0, false
	}
	return lv, true
}

// causal parses the request's context header; nil means a blind write.
func causal(w http.ResponseWriter, r *http.Request) (version.Clock, bool) {
	tok := strings.TrimSpace(r.Header.Get(HeaderContext))
	if tok == "" {
		return nil, true
	}
	c, err := version.ParseClock(tok)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: fmt.Sprintf("bad %s header: %v", HeaderContext, err)})
		return nil, false
	}
	return c, true
}

// writeID parses the request's write ID header into the context the write
// runs under (unchanged without one), answering 400 itself on a bad one.
func writeID(w http.ResponseWriter, r *http.Request) (context.Context, bool) {
	hdr := strings.TrimSpace(r.Header.Get(HeaderWriteID))
	if hdr == "" {
		return r.Context(), true
	}
	id, err := strconv.ParseUint(hdr, 16, 64)
	switch {
	case err == nil && len(hdr) > 16:
		err = fmt.Errorf("%d digits", len(hdr))
	case err == nil && id == 0:
		err = errors.New("0 is not an ID")
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: fmt.Sprintf("bad %s header (1 to 16 hexadecimal digits, not all zero): %v", HeaderWriteID, err)})
		return nil, false
	}
	return coordinator.WithWriteID(r.Context(), id), true
}

func (h *handler) get(w http.ResponseWriter, r *http.Request, key []byte) {
	lv, ok := h.levels(w, r, false)
	if !ok {
		return
	}
	obj, err := h.getAt(r.Context(), key, lv)
	if err != nil {
		h.fail(w, r, fmt.Errorf("read %q: %w", key, err))
		return
	}
	tok := ""
	if obj != nil {
		tok = version.ClockToString(obj.Context)
	}
	if tok != "" {
		w.Header().Set(HeaderContext, tok)
	}
	live := obj.Live()
	w.Header().Set(HeaderSiblings, strconv.Itoa(len(live)))
	if len(live) == 0 {
		msg := "not found"
		if tok != "" {
			msg = "not found (deleted)"
		}
		writeJSON(w, http.StatusNotFound, ErrorResponse{Error: msg, Context: tok})
		return
	}
	if wantsRaw(r.Header.Get("Accept")) {
		newest, _ := version.LWW(&version.Object{Siblings: live})
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(newest.Value)))
		w.WriteHeader(http.StatusOK)
		w.Write(newest.Value)
		return
	}
	writeJSON(w, http.StatusOK, newReadResponse(key, obj))
}

// wantsRaw reports whether the Accept header asks for
// application/octet-stream before any JSON type. Quality values are
// ignored: order decides.
func wantsRaw(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch mt {
		case "application/octet-stream":
			return true
		case "application/json", "application/*", "*/*":
			return false
		}
	}
	return false
}

func (h *handler) put(w http.ResponseWriter, r *http.Request, key []byte) {
	lv, ok := h.levels(w, r, true)
	if !ok {
		return
	}
	c, ok := causal(w, r)
	if !ok {
		return
	}
	ctx, ok := writeID(w, r)
	if !ok {
		return
	}
	if r.ContentLength > h.o.MaxValueSize {
		h.tooLarge(w, r.ContentLength)
		return
	}
	if h.o.BodyTimeout > 0 {
		// Not supported by every ResponseWriter (httptest's): then the
		// server's own timeouts are all there is.
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.o.BodyTimeout))
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxValueSize))
	if err == nil && h.o.BodyTimeout > 0 {
		// The body is in: the deadline must not cut the write that
		// follows (net/http cancels the request's context when a read it
		// makes in the background runs into it). After a failed read it
		// stays, and the connection closes: net/http would otherwise wait,
		// without a deadline, to discard the rest of a trickled body.
		http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
	if err != nil {
		w.Header().Set("Connection", "close")
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.tooLarge(w, -1)
			return
		}
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: fmt.Sprintf("read request body: %v", err)})
		return
	}
	obj, err := h.putAt(ctx, key, value, c, lv)
	if err != nil {
		h.fail(w, r, fmt.Errorf("write %q: %w", key, err))
		return
	}
	writeResult(w, key, obj, 1)
}

func (h *handler) tooLarge(w http.ResponseWriter, size int64) {
	msg := fmt.Sprintf("value exceeds the limit of %d bytes", h.o.MaxValueSize)
	if size >= 0 {
		msg = fmt.Sprintf("value of %d bytes exceeds the limit of %d bytes", size, h.o.MaxValueSize)
	}
	// The rest of the body is not read: close the connection rather than
	// drain a large upload.
	w.Header().Set("Connection", "close")
	writeJSON(w, http.StatusRequestEntityTooLarge, ErrorResponse{Error: msg})
}

func (h *handler) del(w http.ResponseWriter, r *http.Request, key []byte) {
	lv, ok := h.levels(w, r, true)
	if !ok {
		return
	}
	c, ok := causal(w, r)
	if !ok {
		return
	}
	ctx, ok := writeID(w, r)
	if !ok {
		return
	}
	obj, err := h.deleteAt(ctx, key, c, lv)
	if err != nil {
		h.fail(w, r, fmt.Errorf("delete %q: %w", key, err))
		return
	}
	writeResult(w, key, obj, 0)
}

// writeResult answers a successful write: 204 with the new context when
// the key has at most own live siblings (1 after a PUT: the value written;
// 0 after a DELETE), else 200 with every live sibling, so the client sees
// all the versions the context token covers.
func writeResult(w http.ResponseWriter, key []byte, obj *version.Object, own int) {
	live := obj.Live()
	w.Header().Set(HeaderSiblings, strconv.Itoa(len(live)))
	if obj != nil {
		if tok := version.ClockToString(obj.Context); tok != "" {
			w.Header().Set(HeaderContext, tok)
		}
	}
	if len(live) <= own {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, newReadResponse(key, obj))
}

// fail maps a store error to a status and a JSON body.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	body := ErrorResponse{Error: err.Error()}
	status := http.StatusInternalServerError
	var qe *coordinator.QuorumError
	switch {
	// The refusals a client must act on come first: the coordinator may
	// report them inside a QuorumError (the replica's answer).
	case errors.Is(err, version.ErrObjectTooLarge):
		// The key's siblings together would be too large: the client
		// resolves them (writes with the context of a read) or writes a
		// smaller value. The message says how many and how large.
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, version.ErrUnknownContext):
		// The client's context names writes the key never had: it reads
		// the key again.
		status = http.StatusBadRequest
	case errors.As(err, &qe):
		status = http.StatusServiceUnavailable
		body.ReplicasAnswered, body.ReplicasNeeded, body.Replicas = &qe.Answered, &qe.Needed, &qe.Replicas
	case errors.Is(err, coordinator.ErrBadLevel),
		errors.Is(err, version.ErrMalformed),
		errors.Is(err, version.ErrUnknownFormat):
		status = http.StatusBadRequest
	case errors.Is(err, coordinator.ErrNoReplicas):
		status = http.StatusServiceUnavailable
	case errors.Is(err, coordinator.ErrUnknownOutcome), errors.Is(err, context.DeadlineExceeded):
		// No answer in time: the write may or may not have been applied.
		status = http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		status = http.StatusServiceUnavailable
	default:
		h.o.Logf("httpapi: %s %s: %v", r.Method, r.URL.Path, err)
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"encode response: ` + strings.ReplaceAll(err.Error(), `"`, `'`) + `"}`)
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}
