// Package client is a Go client for ringkv's HTTP API (package
// api/http, imported as httpapi).
//
// A Client knows several node addresses and sends each request to one of
// them, starting from a different address on each request (round-robin)
// and failing over to the next on failure:
//
//   - reads (Get, Cluster) fail over on any network error and on any 5xx
//     answer;
//   - writes (Put, Delete) fail over the same way: also after a connection
//     that broke or timed out once the request was sent, and after a 5xx
//     answer (a quorum not reached, an outcome the node does not know),
//     each node at most once per call. This is safe because every write
//     carries a write ID (a random 64-bit number, the header
//     X-Ringkv-Write-Id), the same in each attempt: a replica that already
//     holds the write does not store it again, and two attempts stored by
//     two replicas become one sibling when their states meet, for a write
//     with a read's context (an increment) too. One case stays: an attempt
//     that another client read and overwrote before it met the other
//     attempt no longer has its ID anywhere, and the other comes back as a
//     sibling of the overwriting write. docs/semantics.md ("Retrying a
//     write whose outcome is unknown") says what a retried write promises. A 4xx answer is final (the write was
//     refused), and so is a 2xx whose body could not be read.
//   - With Options.NoWriteRetry, writes fail over only when the connection
//     could not be established (the request never reached a node); any
//     other error is returned, the write's outcome unknown.
//
// # Token-aware routing
//
// With Options.TokenAware the client sends each key's request straight to
// a replica of the key instead of to the next node in turn, which saves the
// hop a non-replica coordinator makes to forward it. It fetches the ring
// from GET /v1/cluster (partition count, members with their HTTP
// addresses, each node's primary partitions), hashes the key with
// ring.Token as the nodes do, and tries the key's replicas whose HTTP
// address it knows — the primary first, replicas the answering node
// believes down last — then every other node. The failover rules above
// are unchanged. The ring is fetched again every
// Options.RingRefresh and soon after any failed attempt; a stale ring only
// costs a forward (a node that is not a replica forwards the request to
// one), never correctness. Until the first fetch succeeds, or when no node
// answers it, the client uses round-robin; FetchRing fetches it at once.
//
// # Contexts and siblings
//
// Get returns every live version of a key (siblings, when writes were
// concurrent) and an opaque causal-context token. Pass that token to the
// next Put or Delete of the key: the write then replaces exactly the
// versions the read saw, and any concurrent version it did not see
// survives as a sibling. An empty token is a blind write, which replaces
// whatever the coordinating replica holds.
//
// A read of a deleted key returns ErrNotFound together with a Result whose
// Context covers the delete, so that a following write is ordered after it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
)

// DefaultTimeout bounds one attempt against one node when Options.Timeout
// is zero.
const DefaultTimeout = 5 * time.Second

var (
	// ErrNotFound: the key has no live value (never written, or deleted).
	ErrNotFound = errors.New("ringkv: key not found")
	// ErrQuorum matches (errors.Is) an *Error for a quorum failure: too few
	// replicas answered. The *Error carries the counts.
	ErrQuorum = errors.New("ringkv: quorum not reached")
	// ErrNoAddrs: New was given no addresses.
	ErrNoAddrs = errors.New("ringkv: client has no node addresses")
)

// Error is an error answer from a node.
type Error struct {
	Addr    string // the node that answered
	Status  int    // HTTP status
	Message string // the server's message
	// For quorum failures (Status 503): replicas that answered, that were
	// needed, and the key's replica count. Zero otherwise.
	ReplicasAnswered, ReplicasNeeded, Replicas int
}

func (e *Error) Error() string {
	s := fmt.Sprintf("ringkv: %s answered %d %s: %s", e.Addr, e.Status, http.StatusText(e.Status), e.Message)
	if e.ReplicasNeeded > 0 {
		s += fmt.Sprintf(" (%d of %d required replicas answered, %d replicas)", e.ReplicasAnswered, e.ReplicasNeeded, e.Replicas)
	}
	return s
}

// Is makes errors.Is(err, ErrQuorum) true for quorum failures.
func (e *Error) Is(target error) bool {
	return target == ErrQuorum && e.Status == http.StatusServiceUnavailable && e.ReplicasNeeded > 0
}

// Options configure a Client. Zero fields take their defaults.
type Options struct {
	// HTTPClient sends the requests. Default: a client with its own
	// transport (a clone of http.DefaultTransport).
	HTTPClient *http.Client
	// Timeout bounds one attempt against one node, so that a hung node
	// still leaves time to fail over. The caller's context bounds the
	// whole call. Default DefaultTimeout.
	Timeout time.Duration
	// TokenAware sends each key's request straight to a replica of the
	// key (see the package doc, "Token-aware routing"): the client fetches
	// the ring from GET /v1/cluster, refreshes it every RingRefresh and
	// after failed attempts, and uses round-robin while it has none.
	TokenAware bool
	// RingRefresh is how often a token-aware client fetches the ring
	// again. Default DefaultRingRefresh.
	RingRefresh time.Duration
	// NoWriteRetry returns the error of a write whose outcome is unknown
	// (its connection broke or timed out after the request was sent, or a
	// 5xx answer) instead of retrying it on the next node with the same
	// write ID (the default, see the package doc).
	NoWriteRetry bool
	// RetryWrites is ignored: writes are retried by default (see
	// NoWriteRetry).
	//
	// Deprecated: write IDs made retries the default.
	RetryWrites bool
}

// Client talks to a ringkv cluster over HTTP. It is safe for concurrent use.
type Client struct {
	addrs []string // base URLs without trailing slash
	hc    *http.Client
	o     Options
	next  atomic.Uint64
	ring  ringState // token-aware routing (tokenaware.go)
}

// New returns a client for the nodes at addrs ("host:port" or a base URL
// such as "http://host:port").
func New(addrs []string, o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RingRefresh <= 0 {
		o.RingRefresh = DefaultRingRefresh
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	c := &Client{hc: hc, o: o}
	for _, a := range addrs {
		a = strings.TrimRight(strings.TrimSpace(a), "/")
		if a == "" {
			continue
		}
		if !strings.Contains(a, "://") {
			a = "http://" + a
		}
		c.addrs = append(c.addrs, a)
	}
	return c
}

// Sibling is one live version of a key.
type Sibling struct {
	Value     []byte
	Timestamp time.Time // the coordinator's clock at the write
	Node      string    // the replica that coordinated the write
	// Incarnation is the life of Node's data that wrote it: a node that
	// restarts on a new or crashed data directory takes a new one.
	Incarnation uint64
	Counter     uint64 // its event number: (Node, Incarnation, Counter) names the write
}

// Result is a read: the live versions and the causal context covering them.
type Result struct {
	// Context is the opaque token to pass to the next Put or Delete.
	Context string
	// Siblings are the live versions, in dot order; more than
	// one means concurrent writes the caller may merge.
	Siblings []Sibling
}

// Latest returns the sibling with the largest timestamp (ties: larger
// node, then counter) — last-write-wins, for callers that choose it. ok is
// false when there is none.
func (r *Result) Latest() (s Sibling, ok bool) {
	if r == nil {
		return Sibling{}, false
	}
	for i, x := range r.Siblings {
		if i == 0 || x.Timestamp.After(s.Timestamp) ||
			(x.Timestamp.Equal(s.Timestamp) && (x.Node > s.Node || x.Node == s.Node && x.Counter > s.Counter)) {
			s, ok = x, true
		}
	}
	return s, ok
}

type reqOptions struct{ r, w, pr, pw string }

// ReadOption modifies a read.
type ReadOption func(*reqOptions)

// WriteOption modifies a write.
type WriteOption func(*reqOptions)

// WithR sets the read quorum: a replica count or ONE, QUORUM, ALL, or a
// datacenter level: LOCAL_ONE, LOCAL_QUORUM (counted in the datacenter of
// the node the request goes to), EACH_QUORUM.
func WithR(level string) ReadOption { return func(o *reqOptions) { o.r = level } }

// WithW sets the write quorum, as WithR: a replica count or ONE, QUORUM,
// ALL, LOCAL_ONE, LOCAL_QUORUM, EACH_QUORUM.
func WithW(level string) WriteOption { return func(o *reqOptions) { o.w = level } }

// WithPR sets how many of the answers must come from the key's primaries
// (fallbacks standing in for down primaries do not count): a count or ONE,
// QUORUM, ALL (not a datacenter level); "0" or "" for no requirement. A read that cannot meet it
// fails with a 503 Error.
func WithPR(level string) ReadOption { return func(o *reqOptions) { o.pr = level } }

// WithPW sets how many of the acknowledgements must come from the key's
// primaries, as WithPR. A write that fails it may still have been applied.
func WithPW(level string) WriteOption { return func(o *reqOptions) { o.pw = level } }

// Get reads key. It returns ErrNotFound when the key has no live value; the
// Result is then still non-nil and its Context (empty for a key never
// written) orders a following write after the delete.
func (c *Client) Get(ctx context.Context, key []byte, opts ...ReadOption) (*Result, error) {
	var ro reqOptions
	for _, f := range opts {
		f(&ro)
	}
	resp, body, err := c.do(ctx, key, http.MethodGet, kvPath(key, "r", ro.r, "pr", ro.pr), nil, nil, true)
	if err != nil {
		return nil, fmt.Errorf("get %q: %w", key, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var rr httpapi.ReadResponse
		if err := json.Unmarshal(body, &rr); err != nil {
			return nil, fmt.Errorf("get %q: decode answer of %s: %w", key, resp.Request.URL.Host, err)
		}
		return toResult(rr), nil
	case http.StatusNotFound:
		return &Result{Context: resp.Header.Get(httpapi.HeaderContext)}, ErrNotFound
	}
	return nil, fmt.Errorf("get %q: %w", key, apiError(resp, body))
}

// Put writes value under key as the successor of what token (the Context of
// a Result from Get) saw; an empty context is a blind write. It returns the new context
// token. If concurrent versions the caller has not seen survive next to the
// new value, the token covers them too: Get before writing again rather
// than reusing it, or use PutResult, which returns them.
func (c *Client) Put(ctx context.Context, key, value []byte, token string, opts ...WriteOption) (newContext string, err error) {
	res, err := c.PutResult(ctx, key, value, token, opts...)
	if err != nil {
		return "", err
	}
	return res.Context, nil
}

// PutResult is Put, returning the new context and, when the write left
// concurrent versions next to the new value, every live version (the new
// one included). Siblings is empty when the new value is the only one.
func (c *Client) PutResult(ctx context.Context, key, value []byte, token string, opts ...WriteOption) (*Result, error) {
	res, err := c.write(ctx, http.MethodPut, key, value, token, opts)
	if err != nil {
		return nil, fmt.Errorf("put %q: %w", key, err)
	}
	return res, nil
}

// Delete deletes key as the successor of what token saw (empty: blind).
func (c *Client) Delete(ctx context.Context, key []byte, token string, opts ...WriteOption) error {
	if _, err := c.write(ctx, http.MethodDelete, key, nil, token, opts); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	return nil
}

func (c *Client) write(ctx context.Context, method string, key, value []byte, token string, opts []WriteOption) (*Result, error) {
	var wo reqOptions
	for _, f := range opts {
		f(&wo)
	}
	hdr := http.Header{}
	if token != "" {
		hdr.Set(httpapi.HeaderContext, token)
	}
	if method == http.MethodPut {
		hdr.Set("Content-Type", "application/octet-stream")
	}
	hdr.Set(httpapi.HeaderWriteID, strconv.FormatUint(newWriteID(), 16))
	resp, body, err := c.do(ctx, key, method, kvPath(key, "w", wo.w, "pw", wo.pw), value, hdr, !c.o.NoWriteRetry)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusNoContent:
		return &Result{Context: resp.Header.Get(httpapi.HeaderContext)}, nil
	case http.StatusOK:
		var rr httpapi.ReadResponse
		if err := json.Unmarshal(body, &rr); err != nil {
			return nil, fmt.Errorf("decode answer of %s: %w", resp.Request.URL.Host, err)
		}
		return toResult(rr), nil
	}
	return nil, apiError(resp, body)
}

// newWriteID returns a random write ID, never 0. Two writes of a key share
// one with probability 2^-64 per pair, and even then they are told apart
// unless their values are equal too (version.Object.WriteOnce).
func newWriteID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

// Cluster returns the cluster as the answering node sees it.
func (c *Client) Cluster(ctx context.Context) (*httpapi.ClusterStatus, error) {
	resp, body, err := c.do(ctx, nil, http.MethodGet, "/v1/cluster", nil, nil, true)
	if err != nil {
		return nil, fmt.Errorf("cluster status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("cluster status: %w", apiError(resp, body))
	}
	var st httpapi.ClusterStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("cluster status: decode answer of %s: %w", resp.Request.URL.Host, err)
	}
	return &st, nil
}

// do sends the request to the nodes in turn until one answers in a way
// that should not be retried elsewhere: for a key (non-nil) on a
// token-aware client with a ring, the key's replicas first (route), else
// starting at the next round-robin position. retry selects the failover
// rule (see the package doc): true for reads and (without NoWriteRetry)
// writes, which move on after any network error and any 5xx answer; false
// only after a failed dial. It returns the response with its body read and
// closed.
func (c *Client) do(ctx context.Context, key []byte, method, path string, body []byte, hdr http.Header, retry bool) (*http.Response, []byte, error) {
	n := len(c.addrs)
	if n == 0 {
		return nil, nil, ErrNoAddrs
	}
	var targets []string
	if key != nil && c.o.TokenAware {
		targets = c.route(key)
	}
	if targets == nil {
		start := int(c.next.Add(1)-1) % n
		targets = make([]string, n)
		for i := range n {
			targets[i] = c.addrs[(start+i)%n]
		}
	}
	var errs []error
	for _, addr := range targets {
		resp, b, err := c.attempt(ctx, method, addr+path, body, hdr)
		if err == nil && (resp.StatusCode < 500 || !retry) {
			return resp, b, nil
		}
		if key != nil && c.o.TokenAware {
			c.ringFailed() // the ring may be stale: fetch it again soon
		}
		if err == nil {
			// A 5xx answer: try the next node, remembering why.
			errs = append(errs, apiError(resp, b))
		} else {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			// A write the node answered below 5xx, its body cut short, has
			// a known outcome: it is not sent again.
			answered := resp != nil && resp.StatusCode < 500 && method != http.MethodGet
			if ctx.Err() != nil || (!retry && !isDialError(err)) || answered {
				break
			}
		}
	}
	if len(errs) == 1 {
		return nil, nil, errs[0]
	}
	return nil, nil, fmt.Errorf("all %d tried nodes failed: %w", len(errs), errors.Join(errs...))
}

func (c *Client) attempt(ctx context.Context, method, target string, body []byte, hdr http.Header) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		// resp tells the caller that the node answered (with its status).
		return resp, nil, fmt.Errorf("read answer (status %d): %w", resp.StatusCode, err)
	}
	return resp, b, nil
}

// isDialError reports whether err happened while connecting, so the
// request cannot have reached the node.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// apiError turns a non-success answer into an *Error.
func apiError(resp *http.Response, body []byte) error {
	e := &Error{Addr: resp.Request.URL.Host, Status: resp.StatusCode}
	var er httpapi.ErrorResponse
	if json.Unmarshal(body, &er) == nil && er.Error != "" {
		e.Message = er.Error
		if er.ReplicasNeeded != nil {
			e.ReplicasNeeded = *er.ReplicasNeeded
		}
		if er.ReplicasAnswered != nil {
			e.ReplicasAnswered = *er.ReplicasAnswered
		}
		if er.Replicas != nil {
			e.Replicas = *er.Replicas
		}
	} else {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "..."
		}
	}
	return e
}

func toResult(rr httpapi.ReadResponse) *Result {
	res := &Result{Context: rr.Context}
	for _, s := range rr.Siblings {
		v := s.Value
		if v == nil {
			v = []byte{}
		}
		res.Siblings = append(res.Siblings, Sibling{Value: v, Timestamp: s.Timestamp, Node: s.Dot.Node, Incarnation: s.Dot.Incarnation, Counter: s.Dot.Counter})
	}
	return res
}

// kvPath is the escaped path of key's route, with the level parameters
// (name, level pairs) that are set.
func kvPath(key []byte, params ...string) string {
	p := "/v1/kv/" + escapeKey(key)
	sep := "?"
	for i := 0; i+1 < len(params); i += 2 {
		if level := strings.TrimSpace(params[i+1]); level != "" {
			p += sep + params[i] + "=" + url.QueryEscape(level)
			sep = "&"
		}
	}
	return p
}

// escapeKey percent-encodes every byte but ASCII letters, digits, '-',
// '_' and '~'. Unlike url.PathEscape it also encodes '.', so that keys
// such as ".." survive proxies that clean paths.
func escapeKey(key []byte) string {
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	sb.Grow(len(key))
	for _, b := range key {
		if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_' || b == '~' {
			sb.WriteByte(b)
			continue
		}
		sb.WriteByte('%')
		sb.WriteByte(hex[b>>4])
		sb.WriteByte(hex[b&15])
	}
	return sb.String()
}
