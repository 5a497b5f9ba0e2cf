// Command ringkv is the one ringkv binary: `ringkv server` runs a node,
// `ringkv demo` a local cluster, `ringkv get/put/del/status` talk to a
// cluster over HTTP, `ringkv bench engine` runs the storage engine's
// benchmark.
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
		// RINGKV_<FLAG> environment variables set the flags not given.
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error { return applySettings(cmd, "") },
	}
	bench := &cobra.Command{Use: "bench", Short: "Benchmarks"}
	bench.AddCommand(newBenchEngineCmd())
	root.AddCommand(bench, newServerCmd(), newDemoCmd(), newGetCmd(), newPutCmd(), newDelCmd(), newStatusCmd(), newRepairCmd(), newTransfersCmd(), newDecommissionCmd(), newRemoveNodeCmd(), newSetReplicasCmd())
	root.AddCommand(newAutoscaleCmd(), newUserCmd(), newGossipKeyCmd(), newSnapshotCmd(), newRestoreCmd())
	addCredentialFlags(root)
	return root
}
