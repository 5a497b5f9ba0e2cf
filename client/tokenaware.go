package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync/atomic"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
	"github.com/ringkv/ringkv/ring"
)

// DefaultRingRefresh is how often a token-aware client fetches the ring
// again when Options.RingRefresh is zero.
const DefaultRingRefresh = 10 * time.Second

// ringRetry is the shortest time between two fetches of the ring started
// because the client had none or because an attempt failed.
const ringRetry = 250 * time.Millisecond

// ringView is the routing table a token-aware client built from one
// GET /v1/cluster answer.
type ringView struct {
	shift   uint       // a token's partition is token >> shift
	reps    [][]string // per partition: base URLs of its replicas, primary first, alive ones before the others
	others  []string   // every other known base URL: members, then the addresses given to New
	fetched time.Time
	exact   bool // reps holds whole preference lists (the ring rebuilt here matched the node's ownership), not only primaries
}

type ringState struct {
	view  atomic.Pointer[ringView]
	busy  atomic.Bool  // a fetch is under way
	last  atomic.Int64 // UnixNano of the last fetch started
	stale atomic.Bool  // an attempt failed since the last fetch
}

// FetchRing fetches the ring from one of the nodes now and routes the
// following requests with it. A token-aware client does this by itself in
// the background (at the first request, every Options.RingRefresh and
// after failed attempts); call it to start with a ring rather than with
// round-robin. On error the client keeps the ring it had.
func (c *Client) FetchRing(ctx context.Context) error {
	c.ring.last.Store(time.Now().UnixNano())
	c.ring.stale.Store(false)
	resp, body, err := c.do(ctx, nil, http.MethodGet, "/v1/cluster", nil, nil, true)
	if err != nil {
		return fmt.Errorf("ring: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ring: %w", apiError(resp, body))
	}
	st, err := decodeCluster(body)
	if err != nil {
		return fmt.Errorf("ring: decode answer of %s: %w", resp.Request.URL.Host, err)
	}
	v, err := c.buildView(st, resp.Request.URL)
	if err != nil {
		return fmt.Errorf("ring from %s: %w", resp.Request.URL.Host, err)
	}
	c.ring.view.Store(v)
	return nil
}

// RingKnown reports whether a token-aware client has a ring to route with
// (if not, it uses round-robin), and whether that ring gives whole
// preference lists (false: only each partition's primary is known, and
// the other replicas are tried in a fixed order after it).
func (c *Client) RingKnown() (known, exact bool) {
	v := c.ring.view.Load()
	return v != nil, v != nil && v.exact
}

// ReplicasOf returns the base URLs a token-aware client sends key's
// requests to first: the key's replicas it knows the HTTP address of,
// primary first. Nil without a ring.
func (c *Client) ReplicasOf(key []byte) []string {
	v := c.ring.view.Load()
	if v == nil {
		return nil
	}
	return slices.Clone(v.reps[ring.Token(key)>>v.shift])
}

// route returns the addresses to try for key, in order: its replicas, then
// every other known address. Nil (round-robin) without a ring.
func (c *Client) route(key []byte) []string {
	c.maybeRefresh()
	v := c.ring.view.Load()
	if v == nil {
		return nil
	}
	reps := v.reps[ring.Token(key)>>v.shift]
	out := make([]string, 0, len(reps)+len(v.others))
	out = append(out, reps...)
	for _, a := range v.others {
		if !slices.Contains(reps, a) {
			out = append(out, a)
		}
	}
	return out
}

// ringFailed notes that an attempt routed by the ring failed.
func (c *Client) ringFailed() { c.ring.stale.Store(true) }

// maybeRefresh starts a background fetch of the ring when there is none,
// when it is older than RingRefresh, or after a failed attempt; at most one
// at a time, and not more often than ringRetry unless the ring is old.
func (c *Client) maybeRefresh() {
	now := time.Now()
	v := c.ring.view.Load()
	sinceLast := now.Sub(time.Unix(0, c.ring.last.Load()))
	need := v == nil && sinceLast >= ringRetry ||
		v != nil && now.Sub(v.fetched) >= c.o.RingRefresh && sinceLast >= ringRetry ||
		c.ring.stale.Load() && sinceLast >= ringRetry
	if !need || !c.ring.busy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer c.ring.busy.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), c.o.Timeout)
		defer cancel()
		_ = c.FetchRing(ctx) // on error: keep the old ring, retry later
	}()
}

// buildView turns a cluster status into a routing table. from is the URL
// the status came from: members that listen on an unspecified address
// (0.0.0.0, ::) are reached at its host, with its scheme.
func (c *Client) buildView(st *httpapi.ClusterStatus, from *url.URL) (*ringView, error) {
	q := st.Partitions
	if q <= 0 || q&(q-1) != 0 {
		return nil, fmt.Errorf("partition count %d is not a power of two", q)
	}
	shift := uint(64)
	for x := q; x > 1; x >>= 1 {
		shift--
	}
	addr := map[string]string{}
	alive := map[string]bool{}
	var members []ring.Member
	for _, m := range st.Members {
		alive[m.ID] = m.Alive
		state, err := ring.ParseState(m.State)
		if err != nil {
			return nil, err
		}
		members = append(members, ring.Member{ID: m.ID, Weight: m.Weight, DC: m.DC, Rack: m.Rack, State: state})
		if m.HTTPAddr == "" {
			continue
		}
		host, port, err := net.SplitHostPort(m.HTTPAddr)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = from.Hostname()
		}
		addr[m.ID] = from.Scheme + "://" + net.JoinHostPort(host, port)
	}
	// With Q = 1 the shift is 64, and token>>64 is 0 in Go.
	v := &ringView{shift: shift, reps: make([][]string, q), fetched: time.Now()}
	// Rebuild the ring from the members, and trust its preference lists if
	// it agrees with the node's ownership (a ring placed per datacenter or
	// with replaced members' tokens cannot be rebuilt from the status).
	prefs := make([][]string, q)
	if r, err := ring.New(ring.Config{Partitions: q, Replicas: st.Replicas}, members); err == nil && sameOwnership(r.Ownership(), st.Ownership) {
		v.exact = true
		for p := range prefs {
			prefs[p] = r.Preference(p)
		}
	} else {
		for node, ps := range st.Ownership {
			for _, p := range ps {
				if p >= 0 && p < q {
					prefs[p] = []string{node}
				}
			}
		}
	}
	for p, pref := range prefs {
		var up, down []string
		for _, id := range pref {
			a, ok := addr[id]
			switch {
			case !ok:
			case alive[id]:
				up = append(up, a)
			default:
				down = append(down, a)
			}
		}
		v.reps[p] = append(up, down...)
	}
	ids := make([]string, 0, len(addr))
	for id := range addr {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int { // alive first, then by ID
		if alive[a] != alive[b] {
			if alive[a] {
				return -1
			}
			return 1
		}
		if a < b {
			return -1
		}
		return 1
	})
	for _, id := range ids {
		v.others = append(v.others, addr[id])
	}
	for _, a := range c.addrs {
		if !slices.Contains(v.others, a) {
			v.others = append(v.others, a)
		}
	}
	return v, nil
}

func sameOwnership(a, b map[string][]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, ps := range a {
		if !slices.Equal(ps, b[k]) {
			return false
		}
	}
	return true
}

func decodeCluster(body []byte) (*httpapi.ClusterStatus, error) {
	var st httpapi.ClusterStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, err
	}
	return &st, nil
}
