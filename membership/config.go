package membership

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/ringkv/ringkv/ring"
)

// Config configures Start. Durations left zero take the defaults below,
// which are tuned for fast failure detection on a LAN or loopback.
type Config struct {
	// NodeID names this node in gossip and in the ring. It must be unique
	// and stable: it seeds the node's tokens.
	NodeID string
	// BindAddr is the gossip address, host:port, used for both TCP and UDP
	// (e.g. 127.0.0.2:7947). Port 0 picks a free port; LocalNode().GossipAddr
	// reports the real one.
	BindAddr string
	// AdvertiseAddr is the gossip address other nodes use to reach this
	// one, when it differs from BindAddr (e.g. binding 0.0.0.0). The host
	// must be an IP. A missing or zero port means the bound port.
	AdvertiseAddr string
	// PeerAddr, RespAddr and HTTPAddr are this node's advertised service
	// addresses, published in its record. PeerAddr is what Addr returns.
	PeerAddr, RespAddr, HTTPAddr string
	// DC and Rack are the node's failure domains; Weight scales its share
	// of the data (0 means 1).
	DC, Rack string
	Weight   int
	// Join lists gossip addresses of existing nodes. Empty starts a new
	// cluster (or, with persisted state, rejoins the known members).
	Join []string
	// DataDir is where ring.json is persisted. Empty keeps the ring state
	// in memory only (tests).
	DataDir string
	// Ring is the ring configuration; it must be the same on every node.
	Ring ring.Config
	// StreamOnJoin makes a new node (no persisted state) that joins an
	// established cluster (one whose ring, without this node, already
	// places every key's N replicas) enter as ring.StateJoining: it owns
	// nothing until whoever set this (package rebalance) has streamed its
	// partitions to it and calls SetState(ring.StateNormal). A node that
	// forms a cluster (the ring places fewer than N), or whose ID the
	// cluster already knows as an owner (a node back on an empty disk),
	// enters Normal, as every new node does without this option.
	StreamOnJoin bool
	// Replace is the ID of a dead member this new node takes over: it
	// takes that member's tokens (so it is placed where that member was),
	// enters joining, marks the dead member leaving, and streams its
	// partitions from the surviving replicas; package rebalance then makes
	// it normal and the dead member left together. Needs StreamOnJoin and
	// a data directory with no ring state.
	Replace string

	// SecretKey, when set (16, 24 or 32 bytes: AES-128, -192 or -256),
	// encrypts and authenticates every gossip message (memberlist's
	// keyring, AES-GCM): a node without the key can neither read the
	// cluster's gossip nor join it. Every node must have the same key.
	SecretKey []byte

	// ProbeInterval is how often each node probes one random peer
	// (default 500ms). ProbeTimeout is how long a direct probe may take
	// before indirect probes are tried (default 250ms).
	ProbeInterval, ProbeTimeout time.Duration
	// SuspicionMult scales how long a suspected node has to refute before
	// it is declared down: SuspicionMult × log10(n) × ProbeInterval
	// (default 3, so about 1.5s in a small cluster).
	SuspicionMult int
	// GossipInterval is how often queued gossip is sent (default 100ms).
	GossipInterval time.Duration
	// PushPullInterval is how often the full record table is exchanged
	// with a random peer (default 5s).
	PushPullInterval time.Duration
	// JoinTimeout bounds how long Start keeps retrying Join (default 5s).
	JoinTimeout time.Duration
	// RejoinInterval is how often the background loop tries to rejoin
	// known members that are down (default 5s).
	RejoinInterval time.Duration
	// DeadNodeReclaimTime is how long a node must have been down before
	// another node may take over its ID at a different gossip address
	// (default 30s).
	DeadNodeReclaimTime time.Duration

	// Logf receives this package's and memberlist's log lines (memberlist
	// debug lines are dropped). Nil discards them.
	Logf func(format string, args ...any)
}

// Defaults for the zero fields of Config.
const (
	DefaultProbeInterval       = 500 * time.Millisecond
	DefaultProbeTimeout        = 250 * time.Millisecond
	DefaultSuspicionMult       = 3
	DefaultGossipInterval      = 100 * time.Millisecond
	DefaultPushPullInterval    = 5 * time.Second
	DefaultJoinTimeout         = 5 * time.Second
	DefaultRejoinInterval      = 5 * time.Second
	DefaultDeadNodeReclaimTime = 30 * time.Second
)

// maxIDLen bounds node IDs so a record always fits in node metadata.
const maxIDLen = 64

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ProbeInterval, DefaultProbeInterval)
	def(&c.ProbeTimeout, DefaultProbeTimeout)
	def(&c.GossipInterval, DefaultGossipInterval)
	def(&c.PushPullInterval, DefaultPushPullInterval)
	def(&c.JoinTimeout, DefaultJoinTimeout)
	def(&c.RejoinInterval, DefaultRejoinInterval)
	def(&c.DeadNodeReclaimTime, DefaultDeadNodeReclaimTime)
	if c.SuspicionMult <= 0 {
		c.SuspicionMult = DefaultSuspicionMult
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("membership: NodeID is required")
	case len(c.NodeID) > maxIDLen:
		return fmt.Errorf("membership: NodeID %q is longer than %d bytes", c.NodeID, maxIDLen)
	case c.BindAddr == "":
		return errors.New("membership: BindAddr is required")
	case c.Weight < 0 || c.Weight > ring.MaxWeight:
		return fmt.Errorf("membership: weight %d must be between 1 and %d (0 means 1)", c.Weight, ring.MaxWeight)
	}
	if len(c.Ring.ReplicasPerDC) > 0 {
		if _, ok := c.Ring.ReplicasPerDC[c.DC]; !ok {
			return fmt.Errorf("membership: DC %q is not listed in the ring's replicas per DC", c.DC)
		}
	}
	return nil
}

// splitHostPort parses host:port with a numeric port.
func splitHostPort(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, port, nil
}

// normAddr canonicalises host:port the way memberlist prints node
// addresses, so addresses from config and from gossip compare equal.
func normAddr(addr string) string {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}
