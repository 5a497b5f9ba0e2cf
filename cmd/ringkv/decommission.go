package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	httpapi "github.com/ringkv/ringkv/api/http"
	"github.com/ringkv/ringkv/rebalance"
	"github.com/ringkv/ringkv/server"
)

func newDecommissionCmd() *cobra.Command {
	return newMoveCmd("decommission", false,
		"Take a live node out of the ring: its partitions stream to their next owners, then it is left and can be stopped",
		`Marks NODE-ID leaving on the node at --addr (any member). Every node that
gains a share of its partitions streams it from the current owners
(NODE-ID included), throttled by each node's --repair-rate; once every one
holds its share, verified by a Merkle comparison, NODE-ID becomes left: it
owns nothing and can be stopped. A node that has left does not come back
under its ID. Progress is shown until then, unless --detach.`)
}

func newRemoveNodeCmd() *cobra.Command {
	return newMoveCmd("removenode", true,
		"Take a dead node out of the ring, rebuilding its replicas from the surviving copies",
		`For a node that is down and will not return. Marks NODE-ID leaving on the
node at --addr; the nodes that take over its partitions stream them from
the surviving replicas, and once every one holds its share NODE-ID becomes
left, as a decommissioned node does. Refused while NODE-ID is up: use
decommission, which streams its own copies too.`)
}

func newMoveCmd(verb string, remove bool, short, long string) *cobra.Command {
	var addr string
	var detach bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   verb + " NODE-ID",
		Short: short,
		Long:  long,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, out := args[0], cmd.OutOrStdout()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			rep, err := nodeJSON[server.MoveReply](ctx, http.MethodPost, addr, "/v1/"+verb+"?node="+url.QueryEscape(id))
			cancel()
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s is %s\n", rep.Node, rep.State)
			if detach || rep.State == "left" {
				return nil
			}
			return watchLeave(cmd.Context(), out, addr, id, interval)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8081", "HTTP address of any member")
	cmd.Flags().BoolVar(&detach, "detach", false, "return once the move has started")
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "how often progress is shown")
	return cmd
}

// watchLeave prints the progress of id's leave until it has left.
func watchLeave(ctx context.Context, out io.Writer, addr, id string, interval time.Duration) error {
	start := time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := nodeJSON[httpapi.ClusterStatus](cctx, http.MethodGet, addr, "/v1/cluster")
		if err != nil {
			cancel()
			return err
		}
		var me httpapi.MemberStatus
		for _, m := range st.Members {
			if m.ID == id {
				me = m
			}
		}
		state := me.State
		if state == "left" {
			held, err := handingOver(cctx, me)
			cancel()
			switch {
			case err != nil:
				fmt.Fprintf(out, "%s has left the ring; waiting for it to say it has handed over what it holds (%v): do not stop it yet\n", id, err)
			case held == 0:
				fmt.Fprintf(out, "%s has left the ring after %s: it owns nothing and can be stopped\n", id, time.Since(start).Round(time.Second))
				return nil
			default:
				fmt.Fprintf(out, "%s has left the ring; it still hands %d partitions (writes it took while leaving) to their owners: do not stop it yet\n", id, held)
			}
			if err := sleepCtx(ctx, interval); err != nil {
				return err
			}
			continue
		}
		t, found := findTransfer(cctx, st, "leave", id)
		cancel()
		if found {
			fmt.Fprint(out, formatTransfers(server.TransfersStatus{NodeID: t.Node, State: state, Transfers: []rebalance.Transfer{t}}))
			if t.Waiting != "" {
				fmt.Fprintf(out, "        waiting for: %s\n", t.Waiting)
			}
		} else {
			fmt.Fprintf(out, "%s is %s; waiting for the move to report progress\n", id, state)
		}
		if err := sleepCtx(ctx, interval); err != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// handingOver asks member m itself how many partitions it still holds but
// does not replicate: 0 when the cluster says it is down (nothing to wait
// for: a left node is refused if it restarts), an error when it is up and
// does not answer or does not say.
func handingOver(ctx context.Context, m httpapi.MemberStatus) (int, error) {
	if !m.Alive {
		return 0, nil
	}
	if m.HTTPAddr == "" {
		return 0, fmt.Errorf("%s advertises no HTTP address", m.ID)
	}
	st, err := nodeJSON[httpapi.ClusterStatus](ctx, http.MethodGet, m.HTTPAddr, "/v1/cluster")
	switch {
	case err != nil:
		return 0, err
	case st.NodeID != m.ID:
		return 0, fmt.Errorf("%s answered at %s's address", st.NodeID, m.ID)
	case st.HandingOver == nil:
		return 0, fmt.Errorf("%s does not report what it hands over (anti-entropy off?)", m.ID)
	}
	return *st.HandingOver, nil
}

// findTransfer finds the change kind/node among the members' transfers:
// the member that completes it sums every receiver's progress.
func findTransfer(ctx context.Context, st httpapi.ClusterStatus, kind, node string) (rebalance.Transfer, bool) {
	for _, m := range st.Members {
		if !m.Alive || m.HTTPAddr == "" {
			continue
		}
		ts, err := transfersCall(ctx, m.HTTPAddr)
		if err != nil {
			continue
		}
		for _, t := range ts.Transfers {
			if t.Kind == kind && t.Node == node && t.State != "stopped" {
				return t, true
			}
		}
	}
	return rebalance.Transfer{}, false
}
