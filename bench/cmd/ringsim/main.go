// Command ringsim looks at ringkv beyond the clusters it has been run on:
// it builds rings with package ring for clusters of 10 to 1,000 nodes of
// mixed weights and prints markdown tables of
//
//   - balance: each node's replica slots and primaries against its
//     weighted fair share;
//   - movement: the replica slots that change owner when one node joins or
//     leaves, against the ideal (the node's own fair share);
//   - at the largest size, the same for other partition counts and vnodes
//     per weight, with how many distinct replica sets the ring has;
//   - per-node overhead: partitions held, anti-entropy peers and the bytes
//     of one anti-entropy round of root comparisons (from the wire format),
//     the memory of the Merkle trees (measured), and hints (who holds the
//     hints for a node that is down, and for how many targets a node may
//     hold hints);
//   - gossip: memberlist's timers at each size (from its formulas), the
//     size of one push/pull of the record table (encoded as memberlist and
//     package membership encode it, then compressed as memberlist does),
//     and a simulation of memberlist's broadcast dissemination.
//
// Everything is computed in this process: nothing is sent on a network.
//
//	go run ./cmd/ringsim [-sizes 10,30,100,300,1000] [-partitions 1024] [-vnodes 64]
//	    [-mix 1:50,2:30,4:20] [-racks 0] [-events 3] [-sweep-nodes 1000]
//	    [-sweep-q 1024,4096,16384] [-sweep-v 16,64,256] [-sweep-vq 1024,16384]
//	    [-gossip-trials 200] [-loss 0,0.05] [-sections balance,moves,sweep,overhead,gossip]
//
// The default run takes about a minute of CPU; -partitions 16384 and
// sweep points at 65536 partitions take longer.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"strconv"
	"strings"
)

type options struct {
	sizes      []int
	partitions int
	replicas   int
	vnodes     int
	mix        []weightShare
	racks      int
	seed       uint64
	sweepN     int
	sweepQ     []int
	sweepV     []int
	sweepVQ    []int
	trials     int
	events     int
	loss       []float64
}

func main() {
	sizes := flag.String("sizes", "10,30,100,300,1000", "cluster sizes (nodes)")
	partitions := flag.Int("partitions", 1024, "partitions (Q) for the per-size tables")
	replicas := flag.Int("replicas", 3, "replicas (N)")
	vnodes := flag.Int("vnodes", 64, "vnodes per weight for the per-size tables")
	mix := flag.String("mix", "1:50,2:30,4:20", "node weights as weight:percent, drawn at random (seeded)")
	racks := flag.Int("racks", 0, "spread the nodes round-robin over this many racks (0: no racks)")
	seed := flag.Uint64("seed", 1, "random seed (weights, gossip simulation)")
	events := flag.Int("events", 3, "joins and leaves per weight and size in the movement table")
	sweepN := flag.Int("sweep-nodes", 1000, "cluster size of the partition-count and vnode sweeps")
	sweepQ := flag.String("sweep-q", "1024,4096,16384", "partition counts of the sweep (vnodes as -vnodes)")
	sweepV := flag.String("sweep-v", "16,64,256", "vnodes per weight of the sweep")
	sweepVQ := flag.String("sweep-vq", "1024,16384", "partition counts at which vnodes are swept")
	trials := flag.Int("gossip-trials", 200, "runs of the dissemination simulation per row")
	loss := flag.String("loss", "0,0.05", "packet loss rates of the dissemination simulation at the largest size")
	sections := flag.String("sections", "balance,moves,sweep,overhead,gossip", "tables to print")
	flag.Parse()

	o := options{
		sizes: ints(*sizes), partitions: *partitions, replicas: *replicas, vnodes: *vnodes,
		mix: parseMix(*mix), racks: *racks, seed: *seed,
		sweepN: *sweepN, sweepQ: ints(*sweepQ), sweepV: ints(*sweepV), sweepVQ: ints(*sweepVQ),
		trials: *trials, events: *events, loss: floats(*loss),
	}
	fmt.Printf("ringsim: N=%d, weights %s, racks %d, seed %d, GOMAXPROCS %d, %s\n\n",
		o.replicas, *mix, o.racks, o.seed, runtime.GOMAXPROCS(0), runtime.Version())
	for _, s := range strings.Split(*sections, ",") {
		switch strings.TrimSpace(s) {
		case "balance":
			balanceTable(o)
		case "moves":
			movesTable(o)
		case "sweep":
			sweepTable(o)
		case "overhead":
			overheadTable(o)
		case "gossip":
			gossipTables(o)
		case "":
		default:
			log.Fatalf("unknown section %q", s)
		}
	}
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			log.Fatalf("%q: %v", s, err)
		}
		out = append(out, n)
	}
	return out
}

func floats(s string) []float64 {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			log.Fatalf("%q: %v", s, err)
		}
		out = append(out, v)
	}
	return out
}

func parseMix(s string) []weightShare {
	var out []weightShare
	for _, f := range strings.Split(s, ",") {
		w, p, ok := strings.Cut(strings.TrimSpace(f), ":")
		wi, err1 := strconv.Atoi(w)
		pi, err2 := strconv.Atoi(p)
		if !ok || err1 != nil || err2 != nil || wi < 1 || pi < 1 {
			fmt.Fprintf(os.Stderr, "bad -mix entry %q (want weight:percent)\n", f)
			os.Exit(2)
		}
		out = append(out, weightShare{weight: wi, percent: pi})
	}
	return out
}
