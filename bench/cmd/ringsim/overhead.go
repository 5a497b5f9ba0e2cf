package main

import (
	"encoding/binary"
	"fmt"
	"log"
	"runtime"
	"strings"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/ring"
)

// Constants of the code this table describes, repeated here because the
// packages keep them unexported; each names where it comes from.
const (
	frameHeader       = 18        // transport/frame.go headerLen: length, id, type, kind, timeout
	aeInterval        = 10        // antientropy Options.Interval default, seconds
	hintMaxBytes      = 256 << 20 // handoff Options.MaxBytes default, per target
	rootsReplyPerP    = 9         // antientropy KindRoots reply: trusted byte + 8-byte root per partition
	rootsReplyTrailer = 8         // ... then the 8-byte incarnation
)

type nodeOverhead struct {
	held       int // partitions replicated
	peers      int // other replicas of those partitions (anti-entropy partners)
	rootsBytes int // one round's KindRoots requests and replies, this node's side, both directions
	standIns   int // distinct fallbacks that take this node's writes while it is down
	targets    int // nodes this node may keep hints for
}

func overheadOf(r *ring.Ring) map[string]*nodeOverhead {
	out := map[string]*nodeOverhead{}
	shared := map[string]map[string][]int{} // node -> peer -> partitions
	targets := map[string]map[string]bool{} // node -> nodes it may hold hints for
	standIns := map[string]map[string]bool{}
	for _, m := range r.Members() {
		out[m.ID] = &nodeOverhead{}
		shared[m.ID] = map[string][]int{}
		targets[m.ID] = map[string]bool{}
		standIns[m.ID] = map[string]bool{}
	}
	for p := range r.Partitions() {
		pref := r.Preference(p)
		for _, a := range pref {
			out[a].held++
			for _, b := range pref {
				if a != b {
					shared[a][b] = append(shared[a][b], p)
					targets[a][b] = true // a coordinator keeps hints for replicas that do not acknowledge
				}
			}
		}
		for _, f := range r.Extended(p)[len(pref):] {
			for _, a := range pref {
				targets[f][a] = true // a fallback keeps hints for the primary it stands in for
			}
		}
		for _, down := range pref {
			for _, t := range r.Targets(p, func(id string) bool { return id != down }) {
				if t.For == down {
					standIns[down][t.Node] = true
				}
			}
		}
	}
	for id, o := range out {
		o.peers = len(shared[id])
		for _, parts := range shared[id] {
			// This node's round asks the peer; the peer's round asks this node.
			req := frameHeader + uvarintLen(uint64(len(parts)))
			for _, p := range parts {
				req += uvarintLen(uint64(p))
			}
			reply := frameHeader + rootsReplyPerP*len(parts) + rootsReplyTrailer
			o.rootsBytes += 2 * (req + reply)
		}
		o.standIns = len(standIns[id])
		o.targets = len(targets[id])
	}
	return out
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

type stat struct{ mean, max float64 }

func statOf(vals []int) stat {
	s := stat{}
	for _, v := range vals {
		s.mean += float64(v)
		s.max = max(s.max, float64(v))
	}
	s.mean /= float64(len(vals))
	return s
}

func overheadTable(o options) {
	cfg := ring.Config{Partitions: o.partitions, Replicas: o.replicas, VNodesPerWeight: o.vnodes}
	fmt.Printf("### Per-node overhead (Q=%d, N=%d)\n\n", o.partitions, o.replicas)
	fmt.Printf("Held: partitions a node replicates (mean over nodes, and the mean for each weight %s). Peers: the other replicas of those partitions, which anti-entropy compares with every round and a coordinator may keep hints for. ", joinInts(weightsOf(o), " / "))
	fmt.Printf("Roots: bytes of one round's root comparisons through a node (its own round and its peers' rounds, requests and replies with transport headers; computed from the wire format; a round starts every %d s). ", aeInterval)
	fmt.Printf("Stand-ins: distinct fallbacks that receive a node's writes (and keep them as hints for it) while it is down. Hint targets: nodes a node may keep hints for (peers, and the primaries it is a fallback for); each is bounded to %d MiB by default.\n\n", hintMaxBytes>>20)
	fmt.Println("| nodes | held: mean (by weight) | max | peers: mean | max | roots per round: mean | max | stand-ins for a down node: mean | max | hint targets: mean | max |")
	fmt.Println("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, n := range o.sizes {
		ms := cluster(o, n)
		r := build(cfg, ms)
		ov := overheadOf(r)
		var held, peers, roots, stand, tg []int
		byWeight := map[int][]int{}
		for _, m := range ms {
			x := ov[m.ID]
			held, peers, roots = append(held, x.held), append(peers, x.peers), append(roots, x.rootsBytes)
			stand, tg = append(stand, x.standIns), append(tg, x.targets)
			byWeight[m.Weight] = append(byWeight[m.Weight], x.held)
		}
		var bw []string
		for _, w := range weightsOf(o) {
			if len(byWeight[w]) > 0 {
				bw = append(bw, fmt.Sprintf("%.1f", statOf(byWeight[w]).mean))
			}
		}
		h, p, rb, s, t := statOf(held), statOf(peers), statOf(roots), statOf(stand), statOf(tg)
		fmt.Printf("| %d | %.1f (%s) | %.0f | %.1f | %.0f | %s | %s | %.1f | %.0f | %.1f | %.0f |\n",
			n, h.mean, strings.Join(bw, " / "), h.max, p.mean, p.max, size(rb.mean), size(rb.max), s.mean, s.max, t.mean, t.max)
	}
	fmt.Println()

	fmt.Printf("### Merkle trees and the ring in memory (%d nodes)\n\n", o.sweepN)
	fmt.Println("Trees: antientropy.NewTrees(Q) with every partition's tree built (a node builds one per partition of the ring, held or not), measured as heap growth. Ring: ring.New for the cluster, measured the same way (a node holds the current ring and, during a join or leave, its future).")
	fmt.Println()
	fmt.Println("| Q | trees (heap) | trees per partition | ring (heap) |")
	fmt.Println("|--:|--:|--:|--:|")
	ms := cluster(o, o.sweepN)
	for _, q := range o.sweepQ {
		tb := heapOf(func() any {
			t, err := antientropy.NewTrees(q)
			if err != nil {
				log.Fatal(err)
			}
			for p := range q {
				if _, err := t.Rebuild(p, emptyScan); err != nil {
					log.Fatal(err)
				}
			}
			return t
		})
		rb := heapOf(func() any {
			return build(ring.Config{Partitions: q, Replicas: o.replicas, VNodesPerWeight: o.vnodes}, ms)
		})
		fmt.Printf("| %d | %s | %s | %s |\n", q, size(float64(tb)), size(float64(tb)/float64(q)), size(float64(rb)))
	}
	fmt.Println()
}

func emptyScan() func(add func(token, hash uint64)) error {
	return func(func(token, hash uint64)) error { return nil }
}

// heapOf returns the heap that what f returns keeps alive.
func heapOf(f func() any) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return after.HeapAlloc - before.HeapAlloc
}

func size(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 10<<10:
		return fmt.Sprintf("%.0f KiB", b/(1<<10))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		return fmt.Sprintf("%.0f B", b)
	}
}
