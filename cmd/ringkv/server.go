package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/server"
)

func newServerCmd() *cobra.Command {
	var cfg server.Config
	var join, perDC, configPath, logFormat, logLevel string
	var quiet bool
	var readRepairChance float64
	var shutdownTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run one ringkv node",
		Long: `Runs one ringkv node. Clients use the Redis protocol (--resp-addr) or
HTTP/JSON (--http-addr); nodes reach each other on --peer-addr (RPC, TCP) and
gossip on the port after it (memberlist, TCP and UDP). --peer-addr and --join
may be DNS names (e.g. a container's service name); the node listens on
--peer-bind and gossip advertises the IP its --peer-addr name resolves to.

Defaults: N=3 replicas, R=W=QUORUM (a majority of N), 1024 partitions,
commit-log sync mode "batch" (a write is acknowledged after its fsync).

Every flag below can also come from the environment, as RINGKV_ and the
flag's name in capitals with - as _ (RINGKV_DATA_DIR=/data), or from a
config file (--config FILE: one "name = value" per line, # comments).
A flag on the command line wins over the environment, which wins over the
file.

On SIGTERM or SIGINT the node shuts down gracefully: it stops accepting
clients, lets the requests in flight finish, hands its hints to their
targets that are up (bounded by --shutdown-timeout), leaves gossip and
closes its engine cleanly.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := applySettings(cmd, configPath); err != nil {
				return err
			}
			if join != "" {
				cfg.Join = strings.Split(join, ",")
			}
			if perDC != "" {
				m, err := server.ParseReplicasPerDC(perDC)
				if err != nil {
					return err
				}
				sum := 0
				for _, n := range m {
					sum += n
				}
				if cmd.Flags().Changed("replicas") && cfg.Replicas != sum {
					return fmt.Errorf("--replicas %d disagrees with --replicas-per-dc %s (sum %d); give one or make them agree", cfg.Replicas, perDC, sum)
				}
				cfg.Replicas, cfg.ReplicasPerDC = sum, m
			}
			chance, err := readRepairChanceOption(readRepairChance)
			if err != nil {
				return err
			}
			cfg.ReadRepairChance = chance
			logger, err := newLogger(logFormat, logLevel, quiet)
			if err != nil {
				return err
			}
			logger = logger.With("node", cfg.NodeID)
			cfg.Logf = func(format string, args ...any) { logger.Info(fmt.Sprintf(format, args...)) }
			s, err := server.Start(cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s: resp %s, http %s, peer %s\n", cfg.NodeID, s.RespAddr(), s.HTTPAddr(), cfg.PeerAddr)
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			<-sig
			logger.Info("shutting down")
			ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.Shutdown(ctx) }()
			select {
			case err := <-done:
				return err
			case <-time.After(shutdownTimeout + 10*time.Second):
				return fmt.Errorf("shutdown timed out")
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.NodeID, "node-id", "", "unique node ID (required)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "data directory (required)")
	f.StringVar(&cfg.RespAddr, "resp-addr", "127.0.0.1:6379", "Redis-protocol listen address (empty to disable)")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "127.0.0.1:8080", "HTTP listen address (empty to disable)")
	f.StringVar(&cfg.PeerAddr, "peer-addr", "127.0.0.1:7000", "address other nodes dial for peer RPCs, HOST:PORT (an IP or a DNS name resolving to this node); gossip uses the next port")
	f.StringVar(&cfg.PeerBind, "peer-bind", "", "listen address for peer RPCs, IP:PORT (default: --peer-addr's host if an IP, else 0.0.0.0, at its port); gossip binds the next port")
	f.StringVar(&join, "join", "", "comma-separated peer addresses (IPs or DNS names) of existing nodes; this node's own address is skipped")
	f.StringVar(&cfg.Replace, "replace", "", "ID of a dead member this new node takes over: it takes its place on the ring and streams its partitions from the surviving replicas (needs --join and an empty --data-dir)")
	f.StringVar(&cfg.DC, "dc", "", "datacenter name")
	f.StringVar(&cfg.Rack, "rack", "", "rack or zone name")
	f.IntVar(&cfg.Weight, "weight", 1, "relative capacity (partitions are spread in proportion)")
	f.IntVar(&cfg.Replicas, "replicas", 3, "N: replicas per key")
	f.StringVar(&perDC, "replicas-per-dc", "", "replicas per datacenter, e.g. dc1:3,dc2:2 (N is their sum; every node passes the same, and its --dc must be listed)")
	f.IntVar(&cfg.Partitions, "partitions", 1024, "Q: partitions (power of two, fixed at cluster creation)")
	f.StringVar(&cfg.R, "r", "QUORUM", "default read quorum: a number, ONE, QUORUM or ALL")
	f.StringVar(&cfg.W, "w", "QUORUM", "default write quorum: a number, ONE, QUORUM or ALL")
	f.StringVar(&cfg.Sync, "sync", "batch", "commit-log sync mode: batch, periodic or none")
	f.IntVar(&cfg.MaxValueSize, "max-value-size", 1<<20, "largest value accepted from clients, bytes")
	f.IntVar(&cfg.MaxKeySize, "max-key-size", 1<<10, "largest key accepted from clients, bytes")
	f.DurationVar(&cfg.RequestTimeout, "timeout", 2*time.Second, "per-request timeout")
	f.Int64Var(&cfg.BlockCacheSize, "block-cache", 128<<20, "storage engine block cache, bytes")
	f.IntVar(&cfg.MemTableSize, "memtable-size", 64<<20, "storage engine write buffer: the memtable is flushed to disk at this size, bytes")
	f.Float64Var(&cfg.BackgroundShare, "background-share", 0.5, "share of one processor the engine's flushes and compactions take while writes arrive and they are not behind (1: full speed)")
	f.Int64Var(&cfg.HintMaxBytes, "hint-max-bytes", 256<<20, "hinted handoff: most bytes of hints kept for one node; past it new hints are refused and counted")
	f.DurationVar(&cfg.HintWindow, "hint-window", 3*time.Hour, "hinted handoff: a node whose hints have been pending this long collects no new ones")
	f.Int64Var(&cfg.HintRate, "hint-rate", 8<<20, "hinted handoff: delivery rate, bytes per second")
	f.BoolVar(&cfg.NoWriteIDs, "no-write-ids", false, "drop the write IDs of client writes (X-Ringkv-Write-Id), storing none: for a rolling upgrade from a release before write IDs, whose nodes refuse versions that carry one; retried writes are then not recognized")
	f.Float64Var(&readRepairChance, "read-repair-chance", 0.1, "fraction of reads below R=N that ask every replica, repairing each stale one (0: none; 1: all); each such read costs the extra replicas a read")
	f.DurationVar(&cfg.RepairInterval, "repair-interval", 10*time.Second, "anti-entropy: pause between two rounds of comparing hash trees with the other replicas (negative: no anti-entropy)")
	f.Int64Var(&cfg.RepairRate, "repair-rate", 16<<20, "anti-entropy: exchange rate, bytes per second (negative: unbounded)")
	f.DurationVar(&cfg.TombstoneGrace, "tombstone-grace", 24*time.Hour, "deletes: a tombstone is purged no sooner than this after it was noted, and only once anti-entropy verified every replica of its partition holds it (negative: never); keep it above the longest a hint may wait")
	f.StringVar(&cfg.AuthFile, "auth-file", "", "users file (`ringkv user add`): clients must authenticate (Redis AUTH; HTTP basic auth or a bearer token); /healthz stays open")
	f.BoolVar(&cfg.OpenMetrics, "open-metrics", false, "with --auth-file: serve /metrics and /debug/pprof/ without authentication")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate (chain) for TLS on the Redis and HTTP ports; plaintext clients are then refused")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key of --tls-cert")
	f.StringVar(&cfg.PeerTLSCA, "peer-tls-ca", "", "PEM file of the cluster CA: mutual TLS on the peer port; a peer without a certificate it signed is refused")
	f.StringVar(&cfg.PeerTLSCert, "peer-tls-cert", "", "PEM certificate of this node for the peer port, signed by --peer-tls-ca, common name = --node-id")
	f.StringVar(&cfg.PeerTLSKey, "peer-tls-key", "", "PEM private key of --peer-tls-cert")
	f.StringVar(&cfg.GossipKeyFile, "gossip-key-file", "", "file holding the cluster's gossip key (base64 of 32 bytes, `ringkv gossip-key`): gossip is encrypted and authenticated")
	f.BoolVar(&cfg.Insecure, "insecure", false, "allow listening beyond loopback without authentication (clients without --auth-file, peers without mutual TLS)")
	f.IntVar(&cfg.MaxClients, "max-clients", 0, "most open client connections, Redis and HTTP each (0: 10000; negative: no limit); a Redis client over it gets \"max number of clients reached\"")
	f.DurationVar(&cfg.ClientTimeout, "client-timeout", 0, "a started client request must arrive, and its reply be taken, within this (slow or stalled clients are closed; 0: 30s; negative: none)")
	f.DurationVar(&cfg.ClientIdleTimeout, "client-idle-timeout", 0, "close a Redis connection idle this long (0: never)")
	f.IntVar(&cfg.MaxOutputBuffer, "max-output-buffer", 0, "bytes of replies a Redis connection may hold unsent before the node stops reading it (0: 1 MiB)")
	f.IntVar(&cfg.PeerMaxConnections, "peer-max-connections", 0, "most connections the peer port keeps open (0: 1024)")
	f.StringVar(&cfg.SnapshotRoot, "snapshot-root", "", "snapshots through the API (`ringkv snapshot`) are written only under this directory (required on a node with --auth-file)")
	f.DurationVar(&shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM: how long to drain requests in flight and hand hints over before closing")
	f.BoolVar(&quiet, "quiet", false, "do not log (same as --log-level off)")
	f.StringVar(&configPath, "config", "", "config file: one NAME = VALUE per line, NAME a flag of this command (flags and RINGKV_<FLAG> environment variables win over it)")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json (log/slog, on standard error)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error or off")
	return cmd
}

// newLogger returns the server's structured logger on standard error.
func newLogger(format, level string, quiet bool) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "info", "":
		lv = slog.LevelInfo
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	case "off":
		quiet = true
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn, error or off", level)
	}
	if quiet {
		return slog.New(slog.DiscardHandler), nil
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text", "":
		return slog.New(slog.NewTextHandler(os.Stderr, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// readRepairChanceOption is server.Config.ReadRepairChance for the
// --read-repair-chance flag's value, where 0 means no read repair reads.
func readRepairChanceOption(v float64) (float64, error) {
	switch {
	case math.IsNaN(v) || v < 0 || v > 1:
		return 0, fmt.Errorf("--read-repair-chance %v is not a fraction of reads (0 to 1)", v)
	case v == 0:
		return -1, nil
	}
	return v, nil
}
