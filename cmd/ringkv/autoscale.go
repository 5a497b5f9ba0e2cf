package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/autoscale"
)

func newAutoscaleCmd() *cobra.Command {
	var (
		addrs, seeds, orchestrator, peerAddr string
		p                                    autoscale.Policy
		o                                    autoscale.Options
		d                                    autoscale.Docker
	)
	cmd := &cobra.Command{
		Use:   "autoscale",
		Short: "Add a node when the load stays high, decommission one when it stays low",
		Long: `autoscale watches the cluster's load (each node's requests per second and
p99 latency over its last 10 seconds, from GET /v1/cluster) and, following
the policy, adds a node when the load stays high for --window and
decommissions one when it stays low, at most one action per --cooldown and
within --min-nodes and --max-nodes. It does not run nodes itself: it asks an
orchestrator (today Docker: a container of --docker-image on
--docker-network, joining through --seed). To scale down it decommissions
the node it started last (POST /v1/decommission), waits until the cluster
reports it left, then stops and removes its container. Every decision is
logged with its reason; --dry-run logs them and acts on none.

The load is high when the mean rate per node is above --high-rps or the
slowest node's p99 is above --high-p99; it is low when it is below every low
threshold set (--low-rps, --low-p99). See docs/autoscale.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if orchestrator != "docker" {
				return fmt.Errorf("--orchestrator %q: only docker is implemented (for Kubernetes see docs/autoscale.md)", orchestrator)
			}
			if err := p.Validate(); err != nil {
				return err
			}
			logger := log.New(os.Stderr, "", log.LstdFlags)
			o.Logf = logger.Printf
			hc, err := httpClient()
			if err != nil {
				return err
			}
			hc.Timeout = 5 * time.Second
			cluster := &autoscale.HTTPCluster{Addrs: strings.Split(addrs, ","), Client: hc}
			if credentials.cacert != "" {
				cluster.Scheme = "https"
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if seeds != "" {
				d.Join = strings.Split(seeds, ",")
			} else {
				var err error
				if d.Join, err = liveSeeds(ctx, cluster); err != nil {
					return err
				}
				logger.Printf("autoscale: new nodes join through %s (the live members' peer addresses; --seed to choose)", strings.Join(d.Join, ","))
			}
			if d.Network == "" && !o.DryRun {
				return errors.New("--docker-network: say which network the nodes are on")
			}
			switch peerAddr {
			case "name":
				d.PeerByName = true
			case "ip":
			default:
				return fmt.Errorf("--docker-peer-addr %q: name or ip", peerAddr)
			}
			d.Reserved = func(ctx context.Context) ([]string, error) {
				ms, err := cluster.Members(ctx)
				ids := make([]string, len(ms))
				for i, m := range ms {
					ids[i] = m.ID
				}
				return ids, err
			}
			ctl, err := autoscale.NewController(p, cluster, &d, o)
			if err != nil {
				return err
			}
			return ctl.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&addrs, "addr", "127.0.0.1:8081", "HTTP addresses of nodes, comma-separated (tried in turn; the members they report are asked too)")
	f.DurationVar(&o.Interval, "interval", 10*time.Second, "time between two looks at the cluster")
	f.Float64Var(&p.HighRPS, "high-rps", 0, "add a node when the mean client requests per second per node stays above this (0: not used)")
	f.Float64Var(&p.LowRPS, "low-rps", 0, "remove a node when the mean requests per second per node stays below this (0: not used)")
	f.DurationVar(&p.HighP99, "high-p99", 0, "add a node when the slowest node's p99 latency stays above this (0: not used)")
	f.DurationVar(&p.LowP99, "low-p99", 0, "remove a node only while the slowest node's p99 stays below this (0: not used)")
	f.DurationVar(&p.Window, "window", time.Minute, "how long the load must stay high (or low) before a node is added (or removed)")
	f.DurationVar(&p.Cooldown, "cooldown", 5*time.Minute, "least time between two actions")
	f.IntVar(&p.MinNodes, "min-nodes", 3, "never fewer members (joining or normal) than this; keep it at N or more")
	f.IntVar(&p.MaxNodes, "max-nodes", 9, "never more members than this")
	f.DurationVar(&o.JoinTimeout, "join-timeout", 15*time.Minute, "stop waiting for a new node that has not become normal after this long")
	f.BoolVar(&o.DryRun, "dry-run", false, "log every decision, act on none")
	f.StringVar(&orchestrator, "orchestrator", "docker", "what starts and stops nodes (docker)")
	f.StringVar(&seeds, "seed", "", "peer addresses new nodes join through, comma-separated (default: the live members' at start)")
	f.StringVar(&d.Socket, "docker-socket", dockerSocket(), "the Docker daemon's unix socket")
	f.StringVar(&d.Image, "docker-image", "ringkv:dev", "the ringkv image (deploy/docker/Dockerfile; it is not pulled)")
	f.StringVar(&d.Network, "docker-network", "", "the user-defined network the nodes reach each other on")
	f.StringSliceVar(&d.ExtraNetworks, "docker-extra-network", nil, "more networks for new nodes (repeatable)")
	f.StringVar(&d.Prefix, "docker-prefix", "ringkv-auto", "container names and node IDs are PREFIX-<n>; only containers with this prefix's label are managed")
	f.StringArrayVar(&d.Args, "docker-arg", nil, "a server flag for new nodes, e.g. --docker-arg=--replicas=3 (repeatable; give the cluster's --replicas and --partitions)")
	f.StringVar(&d.PublishHost, "docker-publish", "", "publish new nodes' Redis and HTTP ports on this host address (e.g. 127.0.0.1; ports chosen by Docker)")
	f.StringVar(&peerAddr, "docker-peer-addr", "name", "new nodes' --peer-addr: name (the container's name, resolved by Docker's DNS on a user-defined network) or ip (a fixed address, the highest free one of the network's subnet: for a network created with --subnet)")
	f.DurationVar(&d.StopTimeout, "docker-stop-timeout", 30*time.Second, "time a removed node has to shut down before it is killed")
	return cmd
}

// dockerSocket is DOCKER_HOST's socket when it names one, else the
// default socket.
func dockerSocket() string {
	if s, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		return s
	}
	return "/var/run/docker.sock"
}

// liveSeeds returns the peer addresses of the cluster's live normal
// members.
func liveSeeds(ctx context.Context, c autoscale.Cluster) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ms, err := c.Members(ctx)
	if err != nil {
		return nil, fmt.Errorf("find peer addresses to join through (or give --seed): %w", err)
	}
	var out []string
	for _, m := range ms {
		if m.Alive && m.State == "normal" && m.PeerAddr != "" {
			out = append(out, m.PeerAddr)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no live normal member to join through: give --seed")
	}
	return out, nil
}
