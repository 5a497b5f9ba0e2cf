// Command ringkv is the one ringkv binary. Today it drives the storage
// engine (`ringkv bench engine`); the cluster commands (server, demo, get,
// put, status) build on it.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ringkv:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "ringkv",
		Short:         "ringkv: a Dynamo-style distributed key-value store",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	bench := &cobra.Command{Use: "bench", Short: "Benchmarks"}
	bench.AddCommand(newBenchEngineCmd())
	root.AddCommand(bench)
	return root
}
