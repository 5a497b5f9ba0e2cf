package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/server"
)

func newTransfersCmd() *cobra.Command {
	var addr string
	var watch bool
	cmd := &cobra.Command{
		Use:   "transfers",
		Short: "Show the partition moves a node runs (a join's stream), with progress",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				st, err := transfersCall(ctx, addr)
				cancel()
				if err != nil {
					return err
				}
				fmt.Fprint(out, formatTransfers(st))
				active := false
				for _, t := range st.Transfers {
					active = active || t.State == "settling" || t.State == "streaming"
				}
				if !watch || !active {
					return nil
				}
				time.Sleep(time.Second)
			}
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8081", "HTTP address of the node")
	cmd.Flags().BoolVar(&watch, "watch", false, "print again every second until no move is running")
	return cmd
}

// formatTransfers renders a node's moves, one line each, with a progress
// bar of the partitions done.
func formatTransfers(st server.TransfersStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s (%s): %d transfer(s)\n", st.NodeID, st.State, len(st.Transfers))
	for _, t := range st.Transfers {
		const width = 30
		filled := 0
		if t.PartitionsTotal > 0 {
			filled = width * t.PartitionsDone / t.PartitionsTotal
		} else if t.State == "done" {
			filled = width
		}
		eta := "-"
		if t.ETASeconds > 0 {
			eta = (time.Duration(t.ETASeconds * float64(time.Second))).Round(time.Second).String()
		}
		fmt.Fprintf(&b, "  %-5s %-9s [%s%s] %d/%d partitions  %s  %s/s  eta %s\n",
			t.Kind, t.State, strings.Repeat("#", filled), strings.Repeat(".", width-filled),
			t.PartitionsDone, t.PartitionsTotal, humanBytes(float64(t.Bytes)), humanBytes(t.RateBytesPerSec), eta)
		if t.LastError != "" {
			fmt.Fprintf(&b, "        last error: %s\n", t.LastError)
		}
	}
	return b.String()
}

func humanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

func transfersCall(ctx context.Context, addr string) (server.TransfersStatus, error) {
	return nodeJSON[server.TransfersStatus](ctx, http.MethodGet, addr, "/v1/transfers")
}
