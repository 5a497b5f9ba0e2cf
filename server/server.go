// Package server wires one ringkv node together: the storage engine, the
// replica store, the peer transport, gossip membership, the coordinator and
// the client APIs (Redis protocol and HTTP). It owns start and stop order.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/netutil"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/api/resp"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/membership"
	"github.com/ringkv/ringkv/metrics"
	"github.com/ringkv/ringkv/rebalance"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// Version is the ringkv release this binary reports.
const Version = "0.1.0-dev"

// Config configures one node. See the flags of `ringkv server`.
type Config struct {
	NodeID   string
	DataDir  string
	RespAddr string
	HTTPAddr string
	// PeerAddr is where other nodes reach this one for RPCs (TCP): an IP
	// or a DNS name, kept as given in the node's record. Gossip (memberlist,
	// TCP and UDP) uses the next port. PeerBind is where the RPC listener
	// binds (default: PeerAddr's host if an IP, else 0.0.0.0, at its port);
	// gossip binds its host at the next port. See addr.go.
	PeerAddr string
	PeerBind string
	// Join lists peer addresses of existing nodes (any one is enough).
	Join   []string
	DC     string
	Rack   string
	Weight int
	// Replicas is N; Partitions is Q (a power of two, fixed at cluster
	// creation: every node must agree).
	Replicas   int
	Partitions int
	// ReplicasPerDC, when set, places that many replicas in each named DC
	// (N is their sum; Replicas must be 0 or equal it). Every node must
	// pass the same counts, and its own DC must be among them. A DC with
	// no members yet simply gets no replicas until its first node joins.
	ReplicasPerDC map[string]int
	// R and W are the default quorums (numbers or ONE/QUORUM/ALL).
	R, W string
	// Sync is the engine's commit-log sync mode (batch, periodic, none).
	Sync string
	// MaxValueSize bounds a value accepted from clients. Default: 1 MiB.
	MaxValueSize int
	// MaxKeySize bounds a key accepted from clients, over every API.
	// Default: 1 KiB.
	MaxKeySize int
	// RequestTimeout bounds one client request. Default: 2s.
	RequestTimeout time.Duration
	// BlockCacheSize is the engine's block cache, in bytes. Default: 128 MiB.
	BlockCacheSize int64
	// MemTableSize is the engine's write buffer: the memtable is flushed to
	// an SSTable when it reaches this many bytes. Default: 64 MiB.
	MemTableSize int
	// BackgroundShare is the share of one processor the engine's flushes
	// and compactions take while writes arrive and they are not behind
	// (storage.Options.BackgroundShare). Default: 0.5; 1 or more: full
	// speed.
	BackgroundShare float64
	// HintMaxBytes bounds the hints kept for one node (past it new hints
	// are refused and counted). Default: 256 MiB.
	HintMaxBytes int64
	// HintWindow: a node whose hints have been pending for longer than
	// this collects no new ones. Default: 3h.
	HintWindow time.Duration
	// HintRate bounds hint delivery, bytes per second. Default: 8 MiB/s.
	HintRate int64
	// Replace is the ID of a dead member this new node takes over (its
	// tokens, its partitions, streamed from the surviving replicas).
	Replace string
	// NoWriteIDs makes this node drop client write IDs
	// (coordinator.Options.IgnoreWriteIDs): for a rolling upgrade from a
	// release before write IDs, until every node runs this one.
	NoWriteIDs bool
	// ReadRepairChance is the fraction of reads (below R=N) that ask every
	// replica and so repair each stale one, instead of R of them.
	// Default: 0.1; negative: never; at most 1 (every read).
	ReadRepairChance float64
	// RepairInterval is the pause between two anti-entropy rounds.
	// Default: 10s. Negative: no anti-entropy at all (no trees, no rounds;
	// for measurements). RepairRate bounds anti-entropy's exchange, bytes per
	// second (default 16 MiB/s; negative: no bound).
	RepairInterval time.Duration
	RepairRate     int64
	// TombstoneGrace: a tombstone is purged no sooner than this after a
	// scan noted it, and only once every replica of its partition was
	// verified to hold it. Default: 24h; negative: never.
	TombstoneGrace time.Duration

	// AuthFile names the users file (package auth): clients then
	// authenticate (Redis AUTH or HELLO AUTH; HTTP basic auth or a bearer
	// token) on every path but /healthz, and /metrics and /debug/pprof/
	// unless OpenMetrics.
	AuthFile    string
	OpenMetrics bool
	// TLSCert and TLSKey (PEM files) put TLS on the Redis and HTTP ports;
	// plaintext clients are then refused.
	TLSCert, TLSKey string
	// Client limits (zero: the defaults of api/resp and transport; see
	// their Options). MaxClients bounds open Redis connections and, apart,
	// open HTTP connections; ClientTimeout bounds the arrival of a
	// started request and the writing of its reply (Redis and HTTP bodies);
	// ClientIdleTimeout closes a Redis connection that sends nothing for
	// that long (0: never); MaxOutputBuffer bounds the replies a Redis
	// connection holds unsent; PeerMaxConnections bounds the connections
	// the peer port keeps.
	MaxClients         int
	ClientTimeout      time.Duration
	ClientIdleTimeout  time.Duration
	MaxOutputBuffer    int
	PeerMaxConnections int
	// SnapshotRoot, when set, is the directory snapshots made through the
	// API (POST /v1/snapshot) must be written under; a node with users
	// refuses API snapshots without it.
	SnapshotRoot string
	// HintInterval is the time between two hint delivery passes
	// (default 1s).
	HintInterval time.Duration
	// PeerTLSCA, PeerTLSCert and PeerTLSKey (PEM files) put mutual TLS on
	// the peer port: every node presents a certificate signed by the
	// cluster's CA whose common name is its node ID, and a peer without one
	// is refused before it can send a message.
	PeerTLSCA, PeerTLSCert, PeerTLSKey string
	// GossipKeyFile holds the cluster's gossip secret (base64 of 16, 24
	// or 32 bytes, `ringkv gossip-key`): gossip is then encrypted and
	// authenticated, and a node without the key cannot join.
	GossipKeyFile string
	// Insecure lets the node listen beyond loopback without
	// authentication (clients without AuthFile; peers without mutual TLS).
	Insecure bool

	Logf func(format string, args ...any)
}

// ParseReplicasPerDC parses per-datacenter replica counts written as
// "dc1:3,dc2:2" (spaces around items allowed; a count may be 0).
func ParseReplicasPerDC(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		dc, count, ok := strings.Cut(item, ":")
		if !ok || dc == "" {
			return nil, fmt.Errorf("replicas per DC %q: want DC:COUNT items separated by commas, e.g. dc1:3,dc2:2", s)
		}
		n, err := strconv.Atoi(count)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("replicas per DC %q: count of %q must be a number >= 0", s, dc)
		}
		if _, dup := out[dc]; dup {
			return nil, fmt.Errorf("replicas per DC %q: DC %q appears twice", s, dc)
		}
		out[dc] = n
	}
	return out, nil
}

// Server is a running node.
type Server struct {
	cfg     Config
	db      *storage.DB
	store   *replica.Store
	peer    *transport.Server
	client  *transport.Client
	members *membership.Membership
	coord   *coordinator.Coordinator
	hints   *handoff.Service
	ae      atomic.Pointer[antientropy.Service] // nil until started, or when disabled
	rb      atomic.Pointer[rebalance.Service]   // nil when anti-entropy is disabled
	resp    *resp.Server
	respLn  net.Listener
	http    *http.Server
	httpLn  net.Listener
	dirLock *os.File // held for the node's life: one process per data directory

	// load counts the client requests served, for /v1/cluster.
	load *loadMeter
	// metrics are served on /metrics.
	metrics *metrics.Registry
	// sec checks clients: users and TLS.
	sec security

	closeOnce sync.Once
	closeErr  error
}

// GossipAddr returns the gossip address that goes with a peer address.
func GossipAddr(peer string) (string, error) {
	host, port, err := net.SplitHostPort(peer)
	if err != nil {
		return "", fmt.Errorf("peer address %q: %w", peer, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p >= 65535 {
		return "", fmt.Errorf("peer address %q: bad port", peer)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1)), nil
}

// Start starts a node and returns once it serves clients.
func Start(cfg Config) (s *Server, err error) {
	if cfg.NodeID == "" || cfg.DataDir == "" || cfg.PeerAddr == "" {
		return nil, errors.New("server: --node-id, --data-dir and --peer-addr are required")
	}
	if err := version.CheckNodeID(cfg.NodeID); err != nil {
		return nil, fmt.Errorf("server: --node-id: %w", err)
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.MaxValueSize <= 0 {
		cfg.MaxValueSize = 1 << 20
	}
	if cfg.MaxKeySize <= 0 {
		cfg.MaxKeySize = 1 << 10
	}
	if cfg.MaxValueSize > maxClientValueSize {
		return nil, fmt.Errorf("server: --max-value-size %d is over the limit of %d bytes (a key's object, all its siblings together, is limited to %d bytes)",
			cfg.MaxValueSize, maxClientValueSize, version.MaxObjectSize)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 2 * time.Second
	}
	if math.IsNaN(cfg.ReadRepairChance) || cfg.ReadRepairChance > 1 {
		return nil, fmt.Errorf("server: --read-repair-chance %v is not a fraction of reads (0 to 1)", cfg.ReadRepairChance)
	}
	if cfg.BlockCacheSize <= 0 {
		cfg.BlockCacheSize = 128 << 20
	}
	if cfg.MemTableSize <= 0 {
		cfg.MemTableSize = 64 << 20
	}
	rLevel, err := coordinator.ParseLevel(cfg.R)
	if err != nil {
		return nil, fmt.Errorf("--r: %w", err)
	}
	wLevel, err := coordinator.ParseLevel(cfg.W)
	if err != nil {
		return nil, fmt.Errorf("--w: %w", err)
	}
	syncMode, err := storage.ParseSyncMode(cfg.Sync)
	if err != nil {
		return nil, err
	}
	peerPlan, err := planPeerAddrs(cfg.PeerAddr, cfg.PeerBind, cfg.Join)
	if err != nil {
		return nil, err
	}
	for _, note := range peerPlan.notes {
		cfg.Logf("node %s: %s", cfg.NodeID, note)
	}

	sec, err := loadSecurity(cfg, peerPlan.rpcBind)
	if err != nil {
		return nil, err
	}

	srv := &Server{cfg: cfg, load: newLoadMeter(), sec: sec}
	s = srv
	defer func() {
		// A failed start releases what it opened; s itself is nil by then.
		if err != nil {
			srv.Close()
		}
	}()
	if s.dirLock, err = lockDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	if err = checkDataFormat(cfg.DataDir); err != nil {
		return nil, err
	}
	if s.db, err = storage.Open(filepath.Join(cfg.DataDir, "engine"), &storage.Options{Sync: syncMode, BlockCacheSize: cfg.BlockCacheSize, MemTableSize: cfg.MemTableSize, MemTableIndex: true,
		BackgroundShare: cfg.BackgroundShare,
		MemTableFingers: true, MemTableFingerOffset: replica.TokenOffset, Logf: cfg.Logf,
		// A table that fails its checksum is set aside; anti-entropy gets
		// its keys back from the other replicas (at start, the first round
		// does, as the trees are built from what the engine holds).
		OnQuarantine: func(q storage.QuarantinedTable) {
			cfg.Logf("node %s: storage quarantined a damaged table (%s): %s", cfg.NodeID, q.FileName(), q.Reason)
			if ae := s.ae.Load(); ae != nil {
				ae.LostRange(q.Smallest, q.Largest)
			}
		}}); err != nil {
		return nil, err
	}
	if s.store, err = replica.Open(s.db, cfg.NodeID); err != nil {
		return nil, err
	}
	if why := s.store.Minted(); why != "" {
		cfg.Logf("node %s: new incarnation %d (actor %s): %s", cfg.NodeID, s.store.Incarnation(), s.store.Actor(), why)
	} else {
		cfg.Logf("node %s: incarnation %d (actor %s), kept after a clean shutdown", cfg.NodeID, s.store.Incarnation(), s.store.Actor())
	}
	s.client = transport.NewClient(cfg.PeerAddr, transport.Options{Logf: cfg.Logf, ClientTLS: sec.peerClient})
	// The coordinator needs the membership and the membership needs the
	// peer server up; the handler indirection breaks the cycle.
	var handler transport.HandlerFunc = func(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
		if antientropy.Owns(kind) {
			ae := s.ae.Load()
			if ae == nil {
				return nil, errors.New("anti-entropy is not running on this node")
			}
			return ae.Handle(ctx, from, kind, payload)
		}
		if s.coord == nil {
			return nil, errors.New("node is starting")
		}
		if rebalance.Owns(kind) {
			return s.rb.Load().Handle(s.members.Ring(), kind, payload)
		}
		return s.coord.Handle(ctx, from, kind, payload)
	}
	if s.peer, err = transport.Listen(peerPlan.rpcBind, handler, transport.Options{Logf: cfg.Logf, ServerTLS: sec.peerServer, MaxConnections: cfg.PeerMaxConnections}); err != nil {
		return nil, fmt.Errorf("peer listener: %w", err)
	}
	if cfg.Replace != "" {
		if _, statErr := os.Stat(filepath.Join(cfg.DataDir, "ring.json")); errors.Is(statErr, fs.ErrNotExist) {
			// A new replacement: check before announcing anything.
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			err := rebalance.CheckReplace(ctx, s.client, cfg.Join, cfg.Replace, cfg.Weight, cfg.DC)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("--replace: %w", err)
			}
		}
	}
	s.members, err = membership.Start(membership.Config{
		NodeID:    cfg.NodeID,
		SecretKey: sec.gossipKey,
		BindAddr:  peerPlan.gossipBind,
		PeerAddr:  cfg.PeerAddr,
		RespAddr:  cfg.RespAddr,
		HTTPAddr:  cfg.HTTPAddr,
		DC:        cfg.DC,
		Rack:      cfg.Rack,
		Weight:    cfg.Weight,
		Join:      peerPlan.join,
		DataDir:   cfg.DataDir,
		Ring:      ring.Config{Partitions: cfg.Partitions, Replicas: cfg.Replicas, ReplicasPerDC: cfg.ReplicasPerDC},
		// A joiner streams its partitions through anti-entropy before it
		// owns them; without anti-entropy it enters normal, empty.
		StreamOnJoin: cfg.RepairInterval >= 0,
		Replace:      cfg.Replace,
		Logf:         cfg.Logf,
		// Memberlist advertises an IP: the one PeerAddr's name resolves to.
		AdvertiseAddr: peerPlan.gossipAdvertise,
	})
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	// Hints are counted from the engine before the coordinator can add
	// any; delivery starts once the coordinator exists.
	if s.hints, err = handoff.Open(s.store, handoff.Options{
		MaxBytes: cfg.HintMaxBytes, Window: cfg.HintWindow, Rate: cfg.HintRate, Interval: cfg.HintInterval,
		Timeout: cfg.RequestTimeout, Logf: cfg.Logf,
	}); err != nil {
		return nil, err
	}
	// Anti-entropy's trees must see every write: installed before the
	// coordinator exists, built from the engine once started.
	var ae *antientropy.Service
	if cfg.RepairInterval >= 0 {
		if ae, err = antientropy.New(cfg.NodeID, s.store, s.members, s.client, antientropy.Options{
			Interval: cfg.RepairInterval, Rate: cfg.RepairRate, TombstoneGrace: cfg.TombstoneGrace,
			Timeout: cfg.RequestTimeout * 5, Logf: cfg.Logf,
		}); err != nil {
			return nil, err
		}
	}
	s.metrics = s.newMetrics()
	s.coord = coordinator.New(cfg.NodeID, s.members, s.store, s.client, coordinator.Options{
		R: rLevel, W: wLevel, Timeout: cfg.RequestTimeout, ReadRepairChance: cfg.ReadRepairChance, Logf: cfg.Logf, Hints: s.hints,
		Observer: s.metrics.Observer(), IgnoreWriteIDs: cfg.NoWriteIDs,
	})
	s.hints.Start(s.coord, func(id string) bool {
		// A left node's hints go to its key's owners (the coordinator's
		// DeliverBatch), whether the left node is up or not.
		if m, ok := s.members.Ring().Member(id); ok && m.State == ring.StateLeft {
			return true
		}
		return s.members.Alive(id)
	})
	if ae != nil {
		s.ae.Store(ae) // first: a quarantine from now on reaches it
		ae.Start()
		rb := rebalance.New(cfg.NodeID, s.members, ae, s.client, rebalance.Options{Logf: cfg.Logf})
		s.rb.Store(rb)
		rb.Start()
	} else if s.members.LocalNode().State == ring.StateJoining {
		// Joining from an earlier run, anti-entropy off now: nothing can
		// stream, so own the partitions empty as a node without it would.
		cfg.Logf("node %s: joining, but anti-entropy is off (--repair-interval): entering normal without streaming", cfg.NodeID)
		if err := s.members.SetState(ring.StateNormal); err != nil {
			return nil, err
		}
	}
	if cfg.RespAddr != "" {
		ro := resp.Options{MaxValueSize: cfg.MaxValueSize, Logf: cfg.Logf, OnCommand: s.load.onCommand,
			BaseContext:    coordinator.WithAPI(context.Background(), "resp"),
			MaxConnections: cfg.MaxClients, ReadTimeout: cfg.ClientTimeout, WriteTimeout: cfg.ClientTimeout,
			IdleTimeout: cfg.ClientIdleTimeout, MaxOutputBuffer: cfg.MaxOutputBuffer}
		if sec.users != nil {
			ro.Authenticate = sec.authenticateRESP
		}
		s.resp = resp.NewServer(respBackend{s}, ro)
		if s.respLn, err = net.Listen("tcp", cfg.RespAddr); err != nil {
			return nil, fmt.Errorf("resp listener: %w", err)
		}
		if sec.clientTLS != nil {
			s.respLn = tls.NewListener(s.respLn, sec.clientTLS)
		}
		go s.resp.Serve(s.respLn)
	}
	if cfg.HTTPAddr != "" {
		if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("http listener: %w", err)
		}
		maxHTTP := cfg.MaxClients
		if maxHTTP == 0 {
			maxHTTP = resp.DefaultMaxConnections
		}
		if maxHTTP > 0 {
			// Past it new connections wait in the kernel's backlog.
			s.httpLn = netutil.LimitListener(s.httpLn, maxHTTP)
		}
		if sec.clientTLS != nil {
			s.httpLn = tls.NewListener(s.httpLn, sec.clientTLS)
		}
		s.http = &http.Server{Handler: s.httpHandler(), ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
			ErrorLog:    log.New(logWriter(cfg.Logf), "http: ", 0),
			BaseContext: func(net.Listener) context.Context { return coordinator.WithAPI(context.Background(), "http") }}
		go s.http.Serve(s.httpLn)
	}
	return s, nil
}

// Coordinator returns the node's coordinator.
func (s *Server) Coordinator() *coordinator.Coordinator { return s.coord }

// Membership returns the node's membership.
func (s *Server) Membership() *membership.Membership { return s.members }

// RespAddr and HTTPAddr return the addresses actually listened on.
func (s *Server) RespAddr() string {
	if s.respLn == nil {
		return ""
	}
	return s.respLn.Addr().String()
}

func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Close stops the node: client APIs first, then gossip (leaving
// gracefully), peer RPCs, hint delivery, the replica store (recording a
// clean shutdown, so the next start keeps this incarnation) and the engine
// last.
// A second call returns the first's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Server) close() error {
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.http.Shutdown(ctx)
		cancel()
	}
	if s.resp != nil {
		s.resp.Close()
	}
	if s.members != nil {
		s.members.Leave(time.Second)
		s.members.Close()
	}
	if s.peer != nil {
		s.peer.Close()
	}
	if s.hints != nil {
		// Before the engine closes: a pass in progress finishes, and
		// hints of writes still replicating are no longer kept (they are
		// lost only if this node is also the one that stays behind).
		s.hints.Close()
	}
	if rb := s.rb.Load(); rb != nil {
		rb.Close() // before anti-entropy: it streams through it
	}
	if ae := s.ae.Load(); ae != nil {
		ae.Close() // before the engine closes: a round in progress stops
	}
	if s.client != nil {
		s.client.Close()
	}
	var err error
	if s.store != nil {
		// Records the clean shutdown: the next start keeps the incarnation.
		err = s.store.Close()
	}
	if s.db != nil {
		if cerr := s.db.Close(); err == nil {
			err = cerr
		}
	}
	if s.dirLock != nil {
		s.dirLock.Close() // releases the lock, last
	}
	return err
}

// maxClientValueSize is the largest value a client may be allowed to send
// (Config.MaxValueSize): a write of it must fit in one object
// (version.MaxObjectSize) with its key's context.
const maxClientValueSize = version.MaxObjectSize / 2

// logWriter turns the lines the standard library logs into Logf calls.
type logWriter func(format string, args ...any)

func (w logWriter) Write(p []byte) (int, error) {
	w("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
