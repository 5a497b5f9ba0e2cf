package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
)

//go:embed static
var staticFS embed.FS

// ContentSecurityPolicy is the policy every response of the dashboard
// carries: the page loads scripts, styles, images and data from its own
// origin only, runs no inline script or style, and cannot be framed.
const ContentSecurityPolicy = "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// contentTypes maps the extensions of the embedded files to their types
// (not left to the host's MIME tables, which vary).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
	".json": "application/json",
}

// asset is one embedded file, ready to serve.
type asset struct {
	name  string
	body  []byte
	ctype string
	etag  string
}

// assets holds the embedded files by name (relative to static/), read once.
var assets = func() map[string]*asset {
	out := map[string]*asset{}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		name := strings.TrimPrefix(p, "static/")
		out[name] = &asset{name: name, body: body, ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		panic("web: reading the embedded files: " + err.Error())
	}
	return out
}()

// Assets returns the names of the embedded files, as served under the
// prefix ("index.html", "app.js", ...).
func Assets() []string {
	out := make([]string, 0, len(assets))
	for n := range assets {
		out = append(out, n)
	}
	return out
}

// Options configure a [Handler].
type Options struct {
	// Cluster is the answering node's view of the cluster (required).
	Cluster httpapi.ClusterView
	// Local, if set, answers this node's own GET /v1/cluster, /v1/repair
	// and /v1/transfers in process: /ui/api/nodes asks it instead of
	// going over the network to itself.
	Local http.Handler
	// Client asks the other members; nil: a shared client of this package
	// (no proxy, pooled connections).
	Client *http.Client
	// Timeout bounds the whole fan-out of one /ui/api/nodes request;
	// 0: one second. A member that did not answer in time is reported
	// with an error.
	Timeout time.Duration
	// Prefix is the path the dashboard is served under; "": "/ui".
	Prefix string
	// Scheme is how the other members are asked: "http" (the default) or
	// "https" for nodes that serve their API over TLS (Client must then
	// trust their certificates).
	Scheme string
	// ForwardAuthorization passes the Authorization header of the
	// request for /ui/api/nodes on to the members asked, for clusters
	// whose HTTP API needs credentials: the fan-out asks with the
	// browser's user's credentials, never with the node's own.
	ForwardAuthorization bool
}

// Handler serves the dashboard: the page and its files under the prefix,
// and the JSON of GET prefix/api/nodes. It keeps no state between
// requests, so building one per request costs nothing worth counting.
type Handler struct {
	o Options
}

// New returns a dashboard handler.
func New(o Options) *Handler {
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Client == nil {
		o.Client = defaultClient
	}
	if o.Scheme == "" {
		o.Scheme = "http"
	}
	o.Prefix = strings.TrimSuffix(o.Prefix, "/")
	if o.Prefix == "" {
		o.Prefix = "/ui"
	}
	return &Handler{o: o}
}

// setHeaders sets the headers every response of the dashboard carries.
func setHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	// Revalidate every time (by ETag): after an upgrade the page and its
	// script change together.
	h.Set("Cache-Control", "no-cache")
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	setHeaders(w)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	if p == h.o.Prefix {
		// The page's relative URLs need the trailing slash.
		target := h.o.Prefix + "/"
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, target, http.StatusMovedPermanently)
		return
	}
	rest, ok := strings.CutPrefix(p, h.o.Prefix+"/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	switch rest {
	case "":
		rest = "index.html"
	case "api/nodes":
		h.serveNodes(w, r)
		return
	}
	a := assets[rest]
	if a == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.ctype)
	w.Header().Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}
