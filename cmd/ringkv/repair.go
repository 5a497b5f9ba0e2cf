package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/server"
)

// verifiedColumn renders a member's anti-entropy verification for status:
// the age of the oldest verification of the partitions it shares with the
// answering node, or how many were never verified.
func verifiedColumn(shared, unverified int, age float64) string {
	switch {
	case shared == 0:
		return "-"
	case unverified > 0:
		return fmt.Sprintf("%d/%d never", unverified, shared)
	}
	return (time.Duration(age * float64(time.Second))).Round(time.Second).String() + " ago"
}

func newRepairCmd() *cobra.Command {
	var f kvFlags
	var only bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "repair",
		Short: "Run a full anti-entropy round now on every live node (or one) and show its progress",
		Long: `repair asks every live node (with --only, just the node at --addr) to compare
its hash trees with the other replicas of each partition it holds now, and to
repair every key that differs, then shows the progress until each has finished
a round that began after the request.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			targets := strings.Split(f.addrs, ",")
			if !only {
				c, ctx, cancel := f.client()
				st, err := c.Cluster(ctx)
				cancel()
				if err != nil {
					return err
				}
				targets = targets[:0]
				for _, m := range st.Members {
					if m.Alive && m.HTTPAddr != "" && m.State != "left" {
						targets = append(targets, m.HTTPAddr)
					}
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			want := make(map[string]uint64, len(targets))
			for _, addr := range targets {
				st, err := repairCall(ctx, http.MethodPost, addr)
				if err != nil {
					return err
				}
				want[addr] = st.Wait
			}
			for {
				done, parts, total, pulled, pushed := 0, 0, 0, uint64(0), uint64(0)
				var failures []string
				for _, addr := range targets {
					st, err := repairCall(ctx, http.MethodGet, addr)
					if err != nil {
						return err
					}
					if st.RoundsDone >= want[addr] {
						done++
						if st.LastError != "" {
							failures = append(failures, fmt.Sprintf("%s: %s", st.NodeID, st.LastError))
						}
					}
					parts, total = parts+st.PartitionsDone, total+st.PartitionsTotal
					pulled, pushed = pulled+st.KeysPulled, pushed+st.KeysPushed
				}
				fmt.Fprintf(out, "repair: %d/%d nodes done, %d/%d partition comparisons in their current rounds, %d keys merged in, %d sent out since they started\n",
					done, len(targets), parts, total, pulled, pushed)
				if done == len(targets) {
					if len(failures) > 0 {
						return fmt.Errorf("repair finished with errors (the next rounds retry):\n  %s", strings.Join(failures, "\n  "))
					}
					return nil
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("repair: not finished after %v", wait)
				case <-time.After(time.Second):
				}
			}
		},
	}
	f.register(cmd, "")
	cmd.Flags().BoolVar(&only, "only", false, "repair only the node at --addr (default: every live node)")
	cmd.Flags().DurationVar(&wait, "wait", time.Hour, "give up after this long")
	return cmd
}

func repairCall(ctx context.Context, method, addr string) (server.RepairStatus, error) {
	return nodeJSON[server.RepairStatus](ctx, method, addr, "/v1/repair")
}

// nodeJSON calls a node's HTTP endpoint and decodes its JSON answer.
func nodeJSON[T any](ctx context.Context, method, addr, path string) (T, error) {
	var st T
	hc, err := httpClient()
	if err != nil {
		return st, err
	}
	req, err := http.NewRequestWithContext(ctx, method, nodeURL(addr, path), nil)
	if err != nil {
		return st, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return st, fmt.Errorf("%s at %s: %w", path, addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return st, fmt.Errorf("%s at %s: %w", path, addr, err)
	}
	if resp.StatusCode/100 != 2 {
		return st, fmt.Errorf("%s at %s: %s: %s", path, addr, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("%s at %s: %w", path, addr, errors.Join(err, errors.New(string(body))))
	}
	return st, nil
}
