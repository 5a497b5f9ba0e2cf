package main

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/server"
)

func newSnapshotCmd() *cobra.Command {
	var addr, out string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "snapshot --addr HTTP-ADDR --out DIR",
		Short: "Make a node write a consistent point-in-time copy of its data into DIR on its own host",
		Long: `snapshot asks the node at --addr to write a snapshot of its storage engine
into --out, a directory on the NODE's host (an absolute path there) that must not
exist or must be empty. The node keeps serving meanwhile. Tables are hard links
of the node's immutable table files when --out is on the same filesystem as the
data directory (no data is copied: cheap, instant), else copies; with them go a
manifest naming exactly those tables, the node's ring state (ring.json) and a
description (ringkv-snapshot.json). Every write the node acknowledged before the
snapshot began is in it; later writes may or may not be.

A snapshot on the same filesystem shares the disk with the node: copy it
elsewhere (rsync, tar) for a backup that survives the disk. For a whole
cluster, snapshot every node at once and keep one manifest of node -> directory
(docs/backup.md). Restore with 'ringkv restore'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("--out is required: an absolute directory on the node's host")
			}
			if !filepath.IsAbs(out) {
				return fmt.Errorf("--out %q: must be an absolute path (it is a directory on the node's host, not relative to here)", out)
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			info, err := nodeJSON[server.SnapshotInfo](ctx, "POST", addr, "/v1/snapshot?dir="+url.QueryEscape(out))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s: snapshot in %s on its host: %d tables, %d bytes (%d hard-linked, %d copied), incarnation %d, %.3fs\n",
				info.NodeID, info.Dir, info.Tables, info.Bytes, info.Linked, info.Copied, info.Incarnation, info.Seconds)
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8081", "HTTP address of the node to snapshot")
	cmd.Flags().StringVar(&out, "out", "", "directory to write the snapshot into, on the node's host (absolute; must not exist or be empty)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "give up after this long (a snapshot first flushes the node's memtable)")
	return cmd
}

func newRestoreCmd() *cobra.Command {
	var from, dataDir string
	var opts server.RestoreOptions
	cmd := &cobra.Command{
		Use:   "restore --from SNAPSHOT-DIR --data-dir DIR",
		Short: "Prepare a node's data directory from a snapshot (offline), with a new incarnation",
		Long: `restore turns a snapshot made by 'ringkv snapshot' into a data directory for
'ringkv server --data-dir DIR'. Run it on the host that will run the node, with
no node running on DIR. DIR must not exist or must be empty. The engine files go
to DIR/engine (hard links where --from is on the same filesystem, unless
--copy), are checked by opening the engine once, and the data gets a new
incarnation: the node the snapshot came from may have stamped writes after the
snapshot with the old one, and a restored node reusing it would mint versions
its peers already hold and would ignore.

Start the restored node with the snapshot's --node-id and with anti-entropy on
(the default; not --repair-interval -1), joining the running cluster (--join):
the snapshot lacks every write made after it, and anti-entropy copies those
from the other replicas (watch 'ringkv status', or run 'ringkv repair'). Until
then, reads at R=1 from the restored node may return older values.

--ring also restores the ring state saved with the snapshot (ring.json). Use it
when the whole cluster is restored from one backup, so every node starts with
the ring it had; leave it off for one node rejoining a live cluster, which
knows the current ring. See docs/backup.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" || dataDir == "" {
				return fmt.Errorf("--from and --data-dir are required")
			}
			res, err := server.Restore(from, dataDir, opts)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			node := res.Snapshot.NodeID
			if node == "" {
				node = "(unknown: no ringkv-snapshot.json)"
			}
			fmt.Fprintf(w, "restored %s into %s: %d tables, %d bytes (%d hard-linked, %d copied)\n",
				from, res.DataDir, res.Tables, res.Bytes, res.Linked, res.Copied)
			if res.Snapshot.TakenAt != "" {
				fmt.Fprintf(w, "snapshot of node %s taken at %s\n", node, res.Snapshot.TakenAt)
			}
			fmt.Fprintf(w, "incarnation %d -> %d (new)\n", res.OldIncarnation, res.Incarnation)
			if res.RingState {
				fmt.Fprintln(w, "ring state (ring.json) restored")
			}
			fmt.Fprintf(w, "start it with: ringkv server --node-id %s --data-dir %s ... --join PEER (anti-entropy on, so it catches up with the writes made after the snapshot)\n",
				res.Snapshot.NodeID, res.DataDir)
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the snapshot directory (made by 'ringkv snapshot')")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the node's data directory to create (must not exist or be empty)")
	cmd.Flags().BoolVar(&opts.Ring, "ring", false, "also restore the ring state saved with the snapshot (whole-cluster restore)")
	cmd.Flags().BoolVar(&opts.Copy, "copy", false, "copy the tables even where hard links would work")
	return cmd
}
