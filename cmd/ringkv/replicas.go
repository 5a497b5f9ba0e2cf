package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	httpapi "github.com/ringkv/ringkv/api/http"
	"github.com/ringkv/ringkv/rebalance"
	"github.com/ringkv/ringkv/server"
)

func newSetReplicasCmd() *cobra.Command {
	var addr string
	var detach bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "set-replicas N|DC:N,DC:N",
		Short: "Change the number of replicas of every key, for the whole cluster, on a live cluster",
		Long: `Changes N (or the per-datacenter counts) once for the whole cluster, through
the node at --addr (any member). The nodes that will hold the extra replicas
stream them from the current owners, throttled by --repair-rate; once every
one holds its share, verified by a Merkle comparison, the ring uses the new
count. After a decrease, each node hands over and drops the replicas it no
longer holds once their owners are verified to have them. Progress is shown
until the change is complete, unless --detach.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			q := "n=" + url.QueryEscape(args[0])
			if strings.Contains(args[0], ":") {
				q = "per_dc=" + url.QueryEscape(args[0])
			}
			out := cmd.OutOrStdout()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			rep, err := nodeJSON[server.ReplicasReply](ctx, http.MethodPost, addr, "/v1/replicas?"+q)
			cancel()
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "replication %s, moving to %s\n", rep.Replicas, rep.Next)
			if detach || rep.Next == "" {
				return nil
			}
			return watchReplicas(cmd.Context(), out, addr, rep.Next, interval)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8081", "HTTP address of any member")
	cmd.Flags().BoolVar(&detach, "detach", false, "return once the change has started")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often progress is shown")
	return cmd
}

// watchReplicas prints the progress of the change to target until the
// ring uses it.
func watchReplicas(ctx context.Context, out io.Writer, addr, target string, interval time.Duration) error {
	start := time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rep, err := nodeJSON[server.ReplicasReply](cctx, http.MethodGet, addr, "/v1/replicas")
		if err != nil {
			cancel()
			return err
		}
		if rep.Next == "" {
			cancel()
			if rep.Replicas != target {
				return fmt.Errorf("the replication is %s: the change to %s was replaced or undone", rep.Replicas, target)
			}
			fmt.Fprintf(out, "replication is now %s (after %s)\n", rep.Replicas, time.Since(start).Round(time.Second))
			return nil
		}
		st, err := nodeJSON[httpapi.ClusterStatus](cctx, http.MethodGet, addr, "/v1/cluster")
		var t rebalance.Transfer
		found := false
		if err == nil {
			t, found = findTransfer(cctx, st, "replicas", rep.Next)
		}
		cancel()
		if found {
			fmt.Fprint(out, formatTransfers(server.TransfersStatus{NodeID: "cluster", State: "replicas " + rep.Replicas + " to " + rep.Next, Transfers: []rebalance.Transfer{t}}))
			if t.Waiting != "" {
				fmt.Fprintf(out, "        waiting for: %s\n", t.Waiting)
			}
		} else {
			fmt.Fprintf(out, "replication %s, moving to %s; waiting for the move to report progress\n", rep.Replicas, rep.Next)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
