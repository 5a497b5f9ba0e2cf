package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

func newDemoCmd() *cobra.Command {
	var nodes int
	var dataDir string
	var basePort int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a local ringkv cluster on loopback (one process per node)",
		Long: `Starts a cluster of ringkv server processes on 127.0.0.1, each with its own
data directory, prints every node's addresses and waits. Ctrl-C stops them all.

Try:  redis-cli -p 6380 set hello world && redis-cli -p 6381 get hello
      curl -s localhost:8081/v1/cluster`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.OutOrStdout(), nodes, dataDir, basePort)
		},
	}
	cmd.Flags().IntVar(&nodes, "nodes", 3, "number of nodes")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data directory (default: a temporary one, removed on exit)")
	cmd.Flags().IntVar(&basePort, "base-port", 6380, "node i uses RESP port base+i, HTTP 8081+i, peer 7001+10*i")
	return cmd
}

type demoNode struct {
	id               string
	resp, http, peer string
	cmd              *exec.Cmd
}

func runDemo(out io.Writer, n int, dataDir string, basePort int) error {
	if n < 1 {
		return fmt.Errorf("--nodes must be at least 1")
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if dataDir == "" {
		if dataDir, err = os.MkdirTemp("", "ringkv-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dataDir)
	}
	replicas := min(3, n)
	var started []*demoNode
	stopAll := func() {
		for _, nd := range started {
			nd.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, nd := range started {
			done := make(chan struct{})
			go func() { nd.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				nd.cmd.Process.Kill()
			}
		}
	}
	defer stopAll()
	for i := 0; i < n; i++ {
		nd := &demoNode{
			id:   fmt.Sprintf("n%d", i+1),
			resp: fmt.Sprintf("127.0.0.1:%d", basePort+i),
			http: fmt.Sprintf("127.0.0.1:%d", 8081+i),
			peer: fmt.Sprintf("127.0.0.1:%d", 7001+10*i),
		}
		args := []string{"server", "--node-id", nd.id, "--data-dir", filepath.Join(dataDir, nd.id),
			"--resp-addr", nd.resp, "--http-addr", nd.http, "--peer-addr", nd.peer,
			"--replicas", fmt.Sprint(replicas)}
		if i > 0 {
			args = append(args, "--join", started[0].peer)
		}
		nd.cmd = exec.Command(exe, args...)
		nd.cmd.Stderr = prefixWriter(out, nd.id)
		stdout, err := nd.cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := nd.cmd.Start(); err != nil {
			return fmt.Errorf("start node %s: %w", nd.id, err)
		}
		started = append(started, nd)
		// The node prints one line once it serves clients.
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			return fmt.Errorf("node %s did not start (see its log above)", nd.id)
		}
		go io.Copy(io.Discard, stdout)
		fmt.Fprint(out, line)
	}
	fmt.Fprintf(out, "\nringkv demo: %d nodes, N=%d, data in %s\n", n, replicas, dataDir)
	for _, nd := range started {
		fmt.Fprintf(out, "  %s  redis-cli -h 127.0.0.1 -p %s   curl http://%s/v1/kv/KEY   (peer %s)\n",
			nd.id, strings.TrimPrefix(nd.resp, "127.0.0.1:"), nd.http, nd.peer)
	}
	fmt.Fprintf(out, "Ctrl-C stops the cluster.\n")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Fprintf(out, "stopping...\n")
	return nil
}

// prefixWriter returns a writer that prefixes each line of a node's log.
func prefixWriter(out io.Writer, id string) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			fmt.Fprintf(out, "%s | %s\n", id, sc.Text())
		}
	}()
	return pw
}
