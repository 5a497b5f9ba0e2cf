package autoscale

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
)

// Cluster is what the controller reads from and asks of the ringkv
// cluster. [HTTPCluster] implements it over the nodes' HTTP API.
type Cluster interface {
	// Members returns every ring member, in every state, as one live
	// node sees them.
	Members(ctx context.Context) ([]Member, error)
	// Load returns member m's own load figures.
	Load(ctx context.Context, m Member) (NodeLoad, error)
	// Decommission starts the removal of node id from the ring: it
	// becomes leaving, streams its partitions to their next owners, then
	// is left. It returns once the move has started.
	Decommission(ctx context.Context, id string) error
	// HandingOver returns how many partitions member m, as it reports
	// itself, still holds but does not replicate: a member that has left
	// is stopped only once it has handed them all to their owners.
	HandingOver(ctx context.Context, m Member) (int, error)
}

// Member is one ring member.
type Member struct {
	ID    string
	State string // joining, normal, leaving or left
	Alive bool
	// HTTPAddr and PeerAddr are the addresses the member advertises.
	HTTPAddr, PeerAddr string
}

// The refusals of a decommission, for errors.Is.
var (
	// ErrUnknownNode: no member has that ID (HTTP 404).
	ErrUnknownNode = errors.New("no such member")
	// ErrRefused: the member cannot leave now, e.g. the ring would place
	// fewer replicas than N without it (HTTP 409).
	ErrRefused = errors.New("decommission refused")
)

// HTTPCluster is a Cluster over the nodes' HTTP API: GET /v1/cluster
// (members; each member's own answer for its load) and
// POST /v1/decommission?node=ID.
type HTTPCluster struct {
	// Addrs are HTTP addresses (host:port) of nodes to ask, in order. The
	// live members' addresses learned from them are asked too, so the
	// cluster stays reachable when these nodes leave.
	Addrs []string
	// Client makes the requests (it carries credentials and trusted CAs
	// when the nodes need them); nil: a client with a 5 s timeout.
	Client *http.Client
	// Scheme is "http" (the default) or "https" for nodes with TLS.
	Scheme string
	// Resolve returns the address at which this process reaches member
	// m's HTTP API; nil: [ReachableHTTPAddr].
	Resolve func(m Member) string

	mu      sync.Mutex
	learned []string
}

// ReachableHTTPAddr returns the address a member's HTTP API is reached at
// from another host of its network: the address it advertises, with the
// host of its peer address in place of an unspecified one (a node in a
// container listens on 0.0.0.0:8080).
func ReachableHTTPAddr(m Member) string {
	host, port, err := net.SplitHostPort(m.HTTPAddr)
	if err != nil {
		return m.HTTPAddr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if peer, _, err := net.SplitHostPort(m.PeerAddr); err == nil {
			return net.JoinHostPort(peer, port)
		}
	}
	return m.HTTPAddr
}

func (c *HTTPCluster) client() *http.Client {
	if c.Client != nil {
		return c.Client
	}
	return &http.Client{Timeout: 5 * time.Second}
}

func (c *HTTPCluster) resolve(m Member) string {
	if c.Resolve != nil {
		return c.Resolve(m)
	}
	return ReachableHTTPAddr(m)
}

// addrs returns the configured addresses, then the learned ones.
func (c *HTTPCluster) addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := slices.Clone(c.Addrs)
	for _, a := range c.learned {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// Members asks each address in turn until one answers.
func (c *HTTPCluster) Members(ctx context.Context) ([]Member, error) {
	var errs []error
	for _, addr := range c.addrs() {
		st, err := c.status(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ms := make([]Member, 0, len(st.Members))
		var learned []string
		for _, m := range st.Members {
			mm := Member{ID: m.ID, State: m.State, Alive: m.Alive, HTTPAddr: m.HTTPAddr, PeerAddr: m.PeerAddr}
			ms = append(ms, mm)
			if m.Alive && (m.State == "normal" || m.State == "joining") {
				learned = append(learned, c.resolve(mm))
			}
		}
		c.mu.Lock()
		c.learned = learned
		c.mu.Unlock()
		return ms, nil
	}
	if len(errs) == 0 {
		return nil, errors.New("cluster members: no node address to ask")
	}
	return nil, fmt.Errorf("cluster members: no node answered: %w", errors.Join(errs...))
}

// Load asks member m for its own load.
func (c *HTTPCluster) Load(ctx context.Context, m Member) (NodeLoad, error) {
	st, err := c.status(ctx, c.resolve(m))
	if err != nil {
		return NodeLoad{}, err
	}
	if st.NodeID != m.ID {
		return NodeLoad{}, fmt.Errorf("load of %s: %s answered at its address", m.ID, st.NodeID)
	}
	if st.Load == nil {
		return NodeLoad{}, fmt.Errorf("load of %s: the node does not report its load (an older release?)", m.ID)
	}
	return NodeLoad{ID: m.ID, RPS: st.Load.RequestsPerSecond, P99: time.Duration(st.Load.P99Ms * float64(time.Millisecond))}, nil
}

// HandingOver asks member m itself.
func (c *HTTPCluster) HandingOver(ctx context.Context, m Member) (int, error) {
	st, err := c.status(ctx, c.resolve(m))
	if err != nil {
		return 0, err
	}
	if st.NodeID != m.ID {
		return 0, fmt.Errorf("handover of %s: %s answered at its address", m.ID, st.NodeID)
	}
	if st.HandingOver == nil {
		return 0, fmt.Errorf("handover of %s: the node does not report it", m.ID)
	}
	return *st.HandingOver, nil
}

func (c *HTTPCluster) status(ctx context.Context, addr string) (httpapi.ClusterStatus, error) {
	var st httpapi.ClusterStatus
	body, code, err := c.do(ctx, http.MethodGet, addr, "/v1/cluster")
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("GET http://%s/v1/cluster: %d %s", addr, code, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("GET http://%s/v1/cluster: %w", addr, err)
	}
	return st, nil
}

// Decommission posts the request to each address in turn until one
// answers; a refusal (404, 409) is final.
func (c *HTTPCluster) Decommission(ctx context.Context, id string) error {
	var errs []error
	for _, addr := range c.addrs() {
		body, code, err := c.do(ctx, http.MethodPost, addr, "/v1/decommission?node="+url.QueryEscape(id))
		msg := strings.TrimSpace(string(body))
		switch {
		case err != nil:
			errs = append(errs, err)
			continue
		case code == http.StatusAccepted || code == http.StatusOK:
			return nil
		case code == http.StatusNotFound:
			return fmt.Errorf("decommission %s: %w: %s", id, ErrUnknownNode, msg)
		case code == http.StatusConflict:
			return fmt.Errorf("decommission %s: %w: %s", id, ErrRefused, msg)
		}
		errs = append(errs, fmt.Errorf("POST http://%s/v1/decommission?node=%s: %d %s", addr, id, code, msg))
	}
	return fmt.Errorf("decommission %s: no node took the request: %w", id, errors.Join(errs...))
}

func (c *HTTPCluster) do(ctx context.Context, method, addr, path string) ([]byte, int, error) {
	scheme := c.Scheme
	if scheme == "" {
		scheme = "http"
	}
	req, err := http.NewRequestWithContext(ctx, method, scheme+"://"+addr+path, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("%s http://%s%s: %w", method, addr, path, err)
	}
	return body, resp.StatusCode, nil
}
