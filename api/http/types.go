package httpapi

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/version"
)

// Header names used by the API.
const (
	// HeaderContext carries the opaque causal-context token: in responses,
	// what the read (or write) saw; in PUT/DELETE requests, what the client
	// saw before writing.
	HeaderContext = "X-Ringkv-Context"
	// HeaderSiblings carries the number of live siblings in a response.
	HeaderSiblings = "X-Ringkv-Siblings"
	// HeaderWriteID carries a PUT's or DELETE's write ID: 1 to 16
	// hexadecimal digits, not all zero, that the client picks at random
	// and sends again with every attempt of the same write, which is then
	// applied once (coordinator.WithWriteID).
	HeaderWriteID = "X-Ringkv-Write-Id"
)

// Store is what the API needs from the cluster; *coordinator.Coordinator
// satisfies it. r and w are quorum levels as coordinator.ParseLevel returns
// them (0 = the coordinator's default). Get returns nil when no replica knows
// the key. A nil causal clock means a blind write.
type Store interface {
	Get(ctx context.Context, key []byte, r int) (*version.Object, error)
	Put(ctx context.Context, key, value []byte, causal version.Clock, w int) (*version.Object, error)
	Delete(ctx context.Context, key []byte, causal version.Clock, w int) (*version.Object, error)
}

// ClusterView reports the cluster as this node sees it (the server builds it
// from membership and the ring, see [StatusFromRing]).
type ClusterView interface {
	Status() ClusterStatus
}

// ClusterStatus is the JSON body of GET /v1/cluster.
type ClusterStatus struct {
	// NodeID is the node that answered.
	NodeID string `json:"node_id"`
	// Members lists every ring member, in every state, sorted by ID.
	Members []MemberStatus `json:"members"`
	// Partitions is Q; Replicas is N. ReplicasPlaced is the length of the
	// shortest preference list, below N while too few members are eligible
	// (a datacenter with no members yet).
	Partitions     int `json:"partitions"`
	Replicas       int `json:"replicas"`
	ReplicasPlaced int `json:"replicas_placed"`
	// DefaultR and DefaultW are the coordinator's default quorums, when
	// known, resolved against the placed replicas as requests are.
	DefaultR int `json:"default_r,omitempty"`
	DefaultW int `json:"default_w,omitempty"`
	// Ownership maps a node to the partitions it is primary for (first in
	// the preference list), ascending.
	Ownership map[string][]int `json:"ownership"`
	// PrimaryCounts maps a node to len(Ownership[node]).
	PrimaryCounts map[string]int `json:"primary_counts"`
	// ReplicaCounts maps a node to the number of partitions it holds in any
	// position of their preference lists.
	ReplicaCounts map[string]int `json:"replica_counts"`
	// Load is the answering node's own client load (absent from nodes
	// that do not measure it). Each node reports only itself: ask every
	// member for the cluster's.
	Load *LoadStatus `json:"load,omitempty"`
	// HandingOver is how many partitions the answering node holds but
	// neither replicates nor gains in its ring (absent when it does not
	// move data): it hands them to their owners and removes its copies.
	// A node that has left can be stopped once this is 0.
	HandingOver *int `json:"handing_over,omitempty"`
}

// LoadStatus is the client load one node served over its last
// WindowSeconds whole seconds: Redis commands and HTTP key operations
// (GET, HEAD, PUT, DELETE on /v1/kv/), failed ones included, counted on
// the node the client sent them to (not the replicas it forwarded to).
// P99Ms is their 99th-percentile latency as the node measured it, rounded
// up to its histogram's bin (at most 25% above), 0 when there were none.
type LoadStatus struct {
	RequestsPerSecond float64 `json:"requests_per_second"`
	P99Ms             float64 `json:"p99_ms"`
	WindowSeconds     int     `json:"window_seconds"`
	Requests          uint64  `json:"requests"`
}

// MemberStatus is one node in [ClusterStatus].
type MemberStatus struct {
	ID     string `json:"id"`
	DC     string `json:"dc,omitempty"`
	Rack   string `json:"rack,omitempty"`
	Weight int    `json:"weight"`
	// State is the ring state: joining, normal, leaving or left.
	State string `json:"state"`
	// Alive is the failure detector's opinion.
	Alive    bool   `json:"alive"`
	PeerAddr string `json:"peer_addr,omitempty"`
	RESPAddr string `json:"resp_addr,omitempty"`
	HTTPAddr string `json:"http_addr,omitempty"`
	// Hinted handoff, as the answering node sees it: the hints it keeps
	// for this member (writes the member did not acknowledge) and their
	// size in bytes, the hints it refused for the member since it started
	// (past the byte bound or the hint window), and its last failure to
	// deliver them (empty after a success).
	HintsPending int    `json:"hints_pending"`
	HintsBytes   int64  `json:"hints_bytes"`
	HintsRefused uint64 `json:"hints_refused"`
	HintError    string `json:"hint_error,omitempty"`
	// Anti-entropy, as the answering node sees it: of the partitions both
	// nodes replicate (RepairShared), how many were never verified against
	// this member since the answering node started (RepairUnverified), and
	// the oldest time one of the others was last verified (compared and
	// repaired; RepairOldestVerified, RFC 3339, empty if none). The
	// answering node's rounds are in GET /v1/repair.
	RepairShared         int    `json:"repair_shared,omitempty"`
	RepairUnverified     int    `json:"repair_unverified,omitempty"`
	RepairOldestVerified string `json:"repair_oldest_verified,omitempty"`
	// RepairOldestAgeSeconds is the age of RepairOldestVerified, or -1 when
	// some shared partition was never verified.
	RepairOldestAgeSeconds float64 `json:"repair_oldest_age_seconds,omitempty"`
}

// StatusFromRing fills the ring-derived parts of a ClusterStatus: members
// (ID, DC, rack, weight, state), Q, N, ownership and counts. The caller adds
// liveness, addresses and default quorums. r may be nil.
func StatusFromRing(self string, r *ring.Ring) ClusterStatus {
	st := ClusterStatus{
		NodeID:        self,
		Members:       []MemberStatus{},
		Ownership:     map[string][]int{},
		PrimaryCounts: map[string]int{},
		ReplicaCounts: map[string]int{},
	}
	if r == nil {
		return st
	}
	st.Partitions, st.Replicas, st.ReplicasPlaced = r.Partitions(), r.Replicas(), r.Placed()
	for _, m := range r.Members() {
		st.Members = append(st.Members, MemberStatus{
			ID: m.ID, DC: m.DC, Rack: m.Rack, Weight: m.Weight, State: m.State.String(),
		})
	}
	for id, ps := range r.Ownership() {
		st.Ownership[id] = ps
		st.PrimaryCounts[id] = len(ps)
	}
	for id, n := range r.ReplicaCount() {
		st.ReplicaCounts[id] = n
	}
	return st
}

// Dot is the JSON form of a version.Dot: the write event that made a
// sibling, the Counter-th write of the key coordinated by node Node in its
// incarnation Incarnation (a random number below 2^53 that a node takes
// when it starts on a new data directory or after a crash; 0 for writes
// made before incarnations existed).
type Dot struct {
	Node        string `json:"node"`
	Incarnation uint64 `json:"incarnation"`
	Counter     uint64 `json:"counter"`
}

// newDot splits a dot's actor into node ID and incarnation.
func newDot(d version.Dot) Dot {
	node, inc, ok := version.SplitActor(d.Node)
	if !ok { // not from a valid object; shown as is
		node, inc = d.Node, 0
	}
	return Dot{Node: node, Incarnation: inc, Counter: d.Counter}
}

// Sibling is one live version in a [ReadResponse].
type Sibling struct {
	// Value is the value's bytes (base64 in JSON).
	Value []byte `json:"value"`
	// ValueText is the value as text, present only if it is valid UTF-8.
	ValueText *string `json:"value_text,omitempty"`
	// Timestamp is the coordinator's wall clock at the write (RFC 3339 with
	// nanoseconds, UTC).
	Timestamp time.Time `json:"timestamp"`
	Dot       Dot       `json:"dot"`
}

// ReadResponse is the JSON body of a successful GET (and of a PUT or DELETE
// that left concurrent siblings).
type ReadResponse struct {
	// Key is the key as text (invalid UTF-8 replaced); KeyBase64 is set
	// only when the key is not valid UTF-8.
	Key       string `json:"key"`
	KeyBase64 []byte `json:"key_base64,omitempty"`
	// Context is the causal-context token to send back with a write.
	Context  string    `json:"context"`
	Siblings []Sibling `json:"siblings"`
}

// ErrorResponse is the JSON body of every error.
type ErrorResponse struct {
	Error string `json:"error"`
	// Quorum failures only.
	ReplicasAnswered *int `json:"replicas_answered,omitempty"`
	ReplicasNeeded   *int `json:"replicas_needed,omitempty"`
	Replicas         *int `json:"replicas,omitempty"`
	// Context is set on a 404 for a deleted key: the token to write with.
	Context string `json:"context,omitempty"`
}

// newReadResponse renders the live siblings of o.
func newReadResponse(key []byte, o *version.Object) ReadResponse {
	resp := ReadResponse{Key: string(key), Context: version.ClockToString(o.Context), Siblings: []Sibling{}}
	if !utf8.Valid(key) {
		resp.KeyBase64 = key
	}
	for _, s := range o.Live() {
		js := Sibling{
			Value:     s.Value,
			Timestamp: time.Unix(0, s.Timestamp).UTC(),
			Dot:       newDot(s.Dot),
		}
		if js.Value == nil {
			js.Value = []byte{}
		}
		if utf8.Valid(s.Value) {
			t := string(s.Value)
			js.ValueText = &t
		}
		resp.Siblings = append(resp.Siblings, js)
	}
	return resp
}
