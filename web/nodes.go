package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
)

// NodesResponse is the JSON body of GET /ui/api/nodes: every ring member,
// as it reports itself (the alive ones that answered).
type NodesResponse struct {
	// NodeID is the node that asked the others.
	NodeID string `json:"node_id"`
	// Time is when it asked (RFC 3339, UTC, milliseconds).
	Time  string       `json:"time"`
	Nodes []NodeStatus `json:"nodes"`
}

// NodeStatus is one member in [NodesResponse].
type NodeStatus struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// Alive is the asking node's failure detector's opinion; members it
	// holds down are not asked.
	Alive bool `json:"alive"`
	// Self marks the asking node (answered in process).
	Self bool `json:"self,omitempty"`
	// Addr is the HTTP address the member was asked at.
	Addr string `json:"addr,omitempty"`
	// Error says why an alive member gave no status (no HTTP address,
	// timeout, refused, a bad answer). Empty for a member that answered
	// and for one that is down.
	Error string `json:"error,omitempty"`
	// Millis is how long the member took to answer /v1/cluster.
	Millis float64 `json:"millis,omitempty"`
	// Load is the member's own client load over its last seconds.
	Load *httpapi.LoadStatus `json:"load,omitempty"`
	// The hints the member keeps for others: in all, and per target
	// (targets with none left out).
	HintsPending int            `json:"hints_pending"`
	HintsBytes   int64          `json:"hints_bytes"`
	HintsRefused uint64         `json:"hints_refused"`
	HintsFor     map[string]int `json:"hints_for,omitempty"`
	// HandingOver is how many partitions the member still hands over.
	HandingOver *int `json:"handing_over,omitempty"`
	// Repair is the member's anti-entropy (absent when it runs none or
	// did not say); Transfers its partition moves.
	Repair    *Repair    `json:"repair,omitempty"`
	Transfers []Transfer `json:"transfers,omitempty"`
}

// Repair is what the dashboard shows of a node's GET /v1/repair.
type Repair struct {
	RoundsDone       uint64  `json:"rounds_done"`
	Running          bool    `json:"running"`
	PartitionsTotal  int     `json:"partitions_total"`
	PartitionsDone   int     `json:"partitions_done"`
	KeysPulled       uint64  `json:"keys_pulled"`
	KeysPushed       uint64  `json:"keys_pushed"`
	TombstonesPurged uint64  `json:"tombstones_purged"`
	LastRoundStart   string  `json:"last_round_start,omitempty"`
	LastRoundSecs    float64 `json:"last_round_seconds,omitempty"`
	LastError        string  `json:"last_error,omitempty"`
}

// Transfer is what the dashboard shows of one move in a node's GET
// /v1/transfers.
type Transfer struct {
	Kind            string   `json:"kind"`
	Node            string   `json:"node"`
	Changes         []string `json:"changes,omitempty"`
	State           string   `json:"state"`
	PartitionsTotal int      `json:"partitions_total"`
	PartitionsDone  int      `json:"partitions_done"`
	Bytes           uint64   `json:"bytes"`
	RateBytesPerSec float64  `json:"rate_bytes_per_sec"`
	ETASeconds      float64  `json:"eta_seconds"`
	Waiting         string   `json:"waiting,omitempty"`
	LastError       string   `json:"last_error,omitempty"`
}

// defaultClient asks the members when Options.Client is nil: shared by
// every Handler so that connections are pooled across requests; the
// fan-out's context bounds each request.
var defaultClient = &http.Client{Transport: &http.Transport{
	Proxy:               nil, // members are reached directly
	DialContext:         (&net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}).DialContext,
	MaxIdleConnsPerHost: 4,
	IdleConnTimeout:     30 * time.Second,
}, CheckRedirect: noRedirects}

// noRedirects: a member answers itself; a redirect (which would carry the
// forwarded credentials elsewhere) is taken as its answer, an error.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// maxBody bounds what is read of a member's answer.
const maxBody = 4 << 20

// reachableHTTPAddr returns the address a member's HTTP API is reached at:
// the address it advertises, with the host of its peer address in place
// of an unspecified one (a node in a container listens on 0.0.0.0:8080).
// The same rule as autoscale.ReachableHTTPAddr, copied rather than
// imported: autoscale is a controller built on top of the HTTP API, and
// the server (which imports this package) should not depend on it.
func reachableHTTPAddr(httpAddr, peerAddr string) string {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return httpAddr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if peer, _, err := net.SplitHostPort(peerAddr); err == nil {
			return net.JoinHostPort(peer, port)
		}
	}
	return httpAddr
}

func (h *Handler) serveNodes(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.o.Timeout)
	defer cancel()
	auth := ""
	if h.o.ForwardAuthorization {
		auth = r.Header.Get("Authorization")
	}
	out := h.nodes(ctx, auth)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// nodes asks every alive member for its status, concurrently, until ctx
// ends, with auth as the Authorization header if it is not empty.
func (h *Handler) nodes(ctx context.Context, auth string) NodesResponse {
	st := h.o.Cluster.Status()
	out := NodesResponse{NodeID: st.NodeID, Time: time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"), Nodes: make([]NodeStatus, len(st.Members))}
	var wg sync.WaitGroup
	for i, m := range st.Members {
		ns := &out.Nodes[i]
		ns.ID, ns.State, ns.Alive, ns.Self = m.ID, m.State, m.Alive, m.ID == st.NodeID
		if !m.Alive && !ns.Self {
			continue
		}
		if m.HTTPAddr != "" {
			ns.Addr = reachableHTTPAddr(m.HTTPAddr, m.PeerAddr)
		} else if !ns.Self {
			ns.Error = "no HTTP address known"
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.ask(ctx, ns, st, auth)
		}()
	}
	wg.Wait()
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].ID < out.Nodes[j].ID })
	return out
}

// ask fills ns from the member's /v1/cluster, /v1/repair and
// /v1/transfers, asked together; only the first is required.
func (h *Handler) ask(ctx context.Context, ns *NodeStatus, self httpapi.ClusterStatus, auth string) {
	var (
		wg        sync.WaitGroup
		repair    Repair
		repairOK  bool
		transfers struct {
			Transfers []Transfer `json:"transfers"`
		}
		transfersOK bool
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		repairOK = h.get(ctx, ns, "/v1/repair", auth, &repair) == nil
	}()
	go func() {
		defer wg.Done()
		transfersOK = h.get(ctx, ns, "/v1/transfers", auth, &transfers) == nil
	}()
	var st httpapi.ClusterStatus
	start := time.Now()
	var err error
	if ns.Self {
		st = self // already asked, in process
	} else {
		err = h.get(ctx, ns, "/v1/cluster", auth, &st)
	}
	ns.Millis = float64(time.Since(start).Microseconds()) / 1000
	wg.Wait()
	if err != nil {
		ns.Error = err.Error()
		return
	}
	if st.NodeID != ns.ID {
		ns.Error = fmt.Sprintf("%s answered as %q", ns.Addr, st.NodeID)
		return
	}
	ns.Load = st.Load
	ns.HandingOver = st.HandingOver
	for _, m := range st.Members {
		ns.HintsPending += m.HintsPending
		ns.HintsBytes += m.HintsBytes
		ns.HintsRefused += m.HintsRefused
		if m.HintsPending > 0 {
			if ns.HintsFor == nil {
				ns.HintsFor = map[string]int{}
			}
			ns.HintsFor[m.ID] = m.HintsPending
		}
	}
	if repairOK {
		ns.Repair = &repair
	}
	if transfersOK {
		ns.Transfers = transfers.Transfers
	}
}

// errNotOK is a member's answer other than 200.
var errNotOK = errors.New("not 200")

// get decodes the member's JSON answer to GET path into v: in process for
// this node when Options.Local is set, over HTTP otherwise.
func (h *Handler) get(ctx context.Context, ns *NodeStatus, path, auth string, v any) error {
	if ns.Self && h.o.Local != nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
		if err != nil {
			return err
		}
		rec := &recorder{header: http.Header{}, code: http.StatusOK}
		h.o.Local.ServeHTTP(rec, req)
		if rec.code != http.StatusOK {
			return fmt.Errorf("%s: %d %s: %w", path, rec.code, strings.TrimSpace(rec.body.String()), errNotOK)
		}
		return json.Unmarshal(rec.body.Bytes(), v)
	}
	if ns.Addr == "" {
		return errors.New("no HTTP address known")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.o.Scheme+"://"+ns.Addr+path, nil)
	if err != nil {
		return err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := h.o.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("no answer from %s in %v", ns.Addr, h.o.Timeout)
		}
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("GET %s from %s: %w", path, ns.Addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s from %s: %s: %w", path, ns.Addr, resp.Status, errNotOK)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s from %s: %w", path, ns.Addr, err)
	}
	return nil
}

// recorder is the ResponseWriter of an in-process request.
type recorder struct {
	header http.Header
	code   int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wrote = true
	if r.body.Len()+len(p) > maxBody {
		return 0, errors.New("answer too large")
	}
	return r.body.Write(p)
}
