package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/client"
)

// kvFlags are the flags shared by the client commands.
type kvFlags struct {
	addrs   string
	level   string
	context string
	timeout time.Duration
}

func (f *kvFlags) register(cmd *cobra.Command, levelName string) {
	cmd.Flags().StringVar(&f.addrs, "addr", "127.0.0.1:8081", "HTTP addresses of nodes, comma-separated (tried in turn)")
	if levelName != "" {
		cmd.Flags().StringVar(&f.level, levelName, "", "quorum for this request: a number, ONE, QUORUM, ALL, LOCAL_ONE, LOCAL_QUORUM (in the DC of the --addr node) or EACH_QUORUM (default: the node's)")
	}
	cmd.Flags().DurationVar(&f.timeout, "timeout", 5*time.Second, "request timeout")
}

func (f *kvFlags) client() (*client.Client, context.Context, context.CancelFunc) {
	hc, err := httpClient()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ringkv:", err)
		os.Exit(1)
	}
	var addrs []string
	for _, a := range strings.Split(f.addrs, ",") {
		addrs = append(addrs, nodeURL(strings.TrimSpace(a), ""))
	}
	c := client.New(addrs, client.Options{HTTPClient: hc})
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	return c, ctx, cancel
}

// writeOptions turns --w into the client's option.
func (f *kvFlags) writeOptions() []client.WriteOption {
	if f.level == "" {
		return nil
	}
	return []client.WriteOption{client.WithW(f.level)}
}

func newGetCmd() *cobra.Command {
	var f kvFlags
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Read a key: every sibling, and the causal context to write with",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel := f.client()
			defer cancel()
			var opts []client.ReadOption
			if f.level != "" {
				opts = append(opts, client.WithR(f.level))
			}
			res, err := c.Get(ctx, []byte(args[0]), opts...)
			out := cmd.OutOrStdout()
			if errors.Is(err, client.ErrNotFound) {
				if res != nil && res.Context != "" {
					fmt.Fprintf(out, "context: %s\n", res.Context)
				}
				return fmt.Errorf("%s: not found", args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "context: %s\n", res.Context)
			for _, s := range res.Siblings {
				fmt.Fprintf(out, "%s  (%s:%d, %s)\n", s.Value, s.Node, s.Counter, s.Timestamp.Format(time.RFC3339Nano))
			}
			return nil
		},
	}
	f.register(cmd, "r")
	return cmd
}

func newPutCmd() *cobra.Command {
	var f kvFlags
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write a key; with --context, supersede exactly the versions that context saw",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel := f.client()
			defer cancel()
			newCtx, err := c.Put(ctx, []byte(args[0]), []byte(args[1]), f.context, f.writeOptions()...)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "context: %s\n", newCtx)
			return nil
		},
	}
	f.register(cmd, "w")
	cmd.Flags().StringVar(&f.context, "context", "", "causal context from a read (default: a blind write)")
	return cmd
}

func newDelCmd() *cobra.Command {
	var f kvFlags
	cmd := &cobra.Command{
		Use:   "del KEY",
		Short: "Delete a key (a tombstone, with the same context rules as put)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel := f.client()
			defer cancel()
			return c.Delete(ctx, []byte(args[0]), f.context, f.writeOptions()...)
		},
	}
	f.register(cmd, "w")
	cmd.Flags().StringVar(&f.context, "context", "", "causal context from a read (default: a blind delete)")
	return cmd
}

func newStatusCmd() *cobra.Command {
	var f kvFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster as a node sees it: members, liveness, partitions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ctx, cancel := f.client()
			defer cancel()
			st, err := c.Cluster(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			placed := ""
			if st.ReplicasPlaced < st.Replicas {
				placed = fmt.Sprintf(" (%d placed: too few eligible members)", st.ReplicasPlaced)
			}
			fmt.Fprintf(out, "seen from %s: %d partitions, N=%d%s, R=%d, W=%d\n", st.NodeID, st.Partitions, st.Replicas, placed, st.DefaultR, st.DefaultW)
			fmt.Fprintf(out, "%-10s %-8s %-6s %-8s %-6s %9s %9s %18s %8s %14s  %s\n", "node", "state", "alive", "dc", "rack", "primary", "replicas",
				"hints (bytes)", "refused", "verified", "resp / http / peer")
			for _, m := range st.Members {
				fmt.Fprintf(out, "%-10s %-8s %-6v %-8s %-6s %9d %9d %18s %8d %14s  %s / %s / %s\n", m.ID, m.State, m.Alive, m.DC, m.Rack,
					st.PrimaryCounts[m.ID], st.ReplicaCounts[m.ID], fmt.Sprintf("%d (%d)", m.HintsPending, m.HintsBytes), m.HintsRefused,
					verifiedColumn(m.RepairShared, m.RepairUnverified, m.RepairOldestAgeSeconds), m.RESPAddr, m.HTTPAddr, m.PeerAddr)
			}
			fmt.Fprintf(out, "(verified: the oldest anti-entropy verification of the partitions %s shares with the node)\n", st.NodeID)
			for _, m := range st.Members {
				if m.HintError != "" {
					fmt.Fprintf(out, "hints for %s: last delivery failed: %s\n", m.ID, m.HintError)
				}
			}
			return nil
		},
	}
	f.register(cmd, "")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the raw JSON")
	return cmd
}
