package main

import (
	"fmt"
	"log"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ringkv/ringkv/ring"
)

type weightShare struct{ weight, percent int }

// cluster draws n members, weights from the mix (seeded, so every size
// and every table sees the same first nodes).
func cluster(o options, n int) []ring.Member {
	rng := rand.New(rand.NewPCG(o.seed, 0x5eed))
	total := 0
	for _, m := range o.mix {
		total += m.percent
	}
	ms := make([]ring.Member, n)
	for i := range ms {
		x := rng.IntN(total)
		w := o.mix[len(o.mix)-1].weight
		for _, m := range o.mix {
			if x < m.percent {
				w = m.weight
				break
			}
			x -= m.percent
		}
		ms[i] = ring.Member{ID: fmt.Sprintf("node-%04d", i), Weight: w, DC: "dc1", State: ring.StateNormal}
		if o.racks > 0 {
			ms[i].Rack = fmt.Sprintf("rack-%02d", i%o.racks)
		}
	}
	return ms
}

func build(cfg ring.Config, ms []ring.Member) *ring.Ring {
	r, err := ring.New(cfg, ms)
	if err != nil {
		log.Fatal(err)
	}
	return r
}

// fair returns each placed member's fair share of the Q*N replica slots:
// its weight's share, except that no node can hold a partition twice, so a
// share above Q is capped at Q and the rest shared among the others.
func fair(r *ring.Ring) map[string]float64 {
	var open []ring.Member
	for _, m := range r.Members() {
		if m.State == ring.StateNormal || m.State == ring.StateLeaving {
			open = append(open, m)
		}
	}
	q := float64(r.Partitions())
	slots := q * float64(min(r.Replicas(), len(open)))
	out := map[string]float64{}
	for len(open) > 0 {
		w := 0
		for _, m := range open {
			w += m.Weight
		}
		capped := false
		open = slices.DeleteFunc(open, func(m ring.Member) bool {
			if float64(m.Weight)/float64(w)*slots > q {
				out[m.ID] = q
				slots -= q
				capped = true
				return true
			}
			return false
		})
		if !capped {
			for _, m := range open {
				out[m.ID] = float64(m.Weight) / float64(w) * slots
			}
			break
		}
	}
	return out
}

type spread struct {
	min, max, sd float64
	outside      int // nodes more than 10% off their share
	n            int
}

func spreadOf(ratios []float64) spread {
	s := spread{min: math.Inf(1), max: math.Inf(-1), n: len(ratios)}
	mean := 0.0
	for _, x := range ratios {
		s.min, s.max = min(s.min, x), max(s.max, x)
		mean += x
		if math.Abs(x-1) > 0.10 {
			s.outside++
		}
	}
	mean /= float64(len(ratios))
	for _, x := range ratios {
		s.sd += (x - mean) * (x - mean)
	}
	s.sd = math.Sqrt(s.sd / float64(len(ratios)))
	return s
}

// balanceOf returns the spread of replica slots and of primaries over the
// nodes' fair shares.
func balanceOf(r *ring.Ring) (replicas, primaries spread) {
	f := fair(r)
	total := 0.0
	for _, v := range f {
		total += v
	}
	count := r.ReplicaCount()
	prim := map[string]int{}
	for p := range r.Partitions() {
		if pref := r.Preference(p); len(pref) > 0 {
			prim[pref[0]]++
		}
	}
	var rr, pr []float64
	for id, share := range f {
		rr = append(rr, float64(count[id])/share)
		pr = append(pr, float64(prim[id])/(share/total*float64(r.Partitions())))
	}
	return spreadOf(rr), spreadOf(pr)
}

// movement is what one membership change does to the ring.
type movement struct {
	ideal     float64 // the node's fair share of replica slots
	moved     int     // replica slots that change owner
	self      int     // of them, gained by the joiner or lost by the leaver
	touched   int     // partitions whose replica set changes
	primaries int     // partitions whose primary changes
	primIdeal float64 // the node's fair share of primaries
}

func moves(old, new *ring.Ring, node string, joined bool) movement {
	var mv movement
	base := old
	if joined {
		base = new
	}
	f := fair(base)
	total := 0.0
	for _, v := range f {
		total += v
	}
	mv.ideal = f[node]
	mv.primIdeal = f[node] / total * float64(base.Partitions())
	for _, d := range ring.Diff(old, new) {
		g := d.Gained()
		mv.moved += len(g)
		if len(g) > 0 {
			mv.touched++
		}
		if joined && slices.Contains(g, node) {
			mv.self++
		}
		if !joined && slices.Contains(d.Lost(), node) {
			mv.self++
		}
		if d.PrimaryChanged() {
			mv.primaries++
		}
	}
	return mv
}

// event is one membership change: a node of weight w joins or leaves.
type event struct {
	join bool
	w    int
	id   string
}

// events returns, for each weight of the mix, per new nodes of that
// weight joining and the first per existing nodes of that weight leaving.
func events(o options, ms []ring.Member, per int) []event {
	var evs []event
	for _, w := range weightsOf(o) {
		for i := range per {
			evs = append(evs, event{join: true, w: w, id: fmt.Sprintf("node-new-%d-w%d", i, w)})
		}
		left := 0
		for _, m := range ms {
			if m.Weight == w && left < per {
				evs = append(evs, event{w: w, id: m.ID})
				left++
			}
		}
	}
	return evs
}

// outcome is what one event does, and whether it shifted the balance
// bounds of some weight class.
type outcome struct {
	event
	movement
	shifted bool
}

// apply builds the ring after each event, two at a time, and compares it
// with base.
func apply(cfg ring.Config, ms []ring.Member, base *ring.Ring, evs []event) []outcome {
	out := make([]outcome, len(evs))
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i, ev := range evs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			after := slices.Clone(ms)
			if ev.join {
				after = append(after, ring.Member{ID: ev.id, Weight: ev.w, DC: "dc1", State: ring.StateNormal})
			} else {
				for j := range after {
					if after[j].ID == ev.id {
						after[j].State = ring.StateLeft
					}
				}
			}
			r := build(cfg, after)
			out[i] = outcome{event: ev, movement: moves(base, r, ev.id, ev.join), shifted: !maps.Equal(bounds(base), bounds(r))}
		}()
	}
	wg.Wait()
	return out
}

// bounds returns, per weight class, the integer bounds package ring
// balances each node's replica slots and primaries into: floor and ceiling
// of the fair share times 1 -/+ 5% (balanceSlack, place.go) and of the fair
// share of primaries times 1 -/+ 10% (primarySlack, primary.go). Every
// node of a class shares them, so when a change of the total weight moves
// one across an integer, the whole class is balanced differently.
func bounds(r *ring.Ring) map[int][4]int {
	f := fair(r)
	total := 0.0
	for _, v := range f {
		total += v
	}
	out := map[int][4]int{}
	for _, m := range r.Members() {
		t, ok := f[m.ID]
		if !ok {
			continue
		}
		share := t / total * float64(r.Partitions())
		out[m.Weight] = [4]int{
			int(math.Floor(t * 0.95)), int(math.Ceil(t * 1.05)),
			int(math.Floor(share * 0.9)), int(math.Ceil(share * 1.1)),
		}
	}
	return out
}

func timed(cfg ring.Config, ms []ring.Member) (*ring.Ring, time.Duration) {
	var r *ring.Ring
	d := cpuTime(func() { r = build(cfg, ms) })
	return r, d
}

func weightsOf(o options) []int {
	var ws []int
	for _, m := range o.mix {
		ws = append(ws, m.weight)
	}
	return ws
}

func totalWeight(ms []ring.Member) int {
	w := 0
	for _, m := range ms {
		w += m.Weight
	}
	return w
}

func balanceTable(o options) {
	cfg := ring.Config{Partitions: o.partitions, Replicas: o.replicas, VNodesPerWeight: o.vnodes}
	fmt.Printf("### Balance (Q=%d, N=%d, %d vnodes per weight)\n\n", o.partitions, o.replicas, o.vnodes)
	fmt.Println("Replica slots and primaries of each node over its fair share (its weight's share of Q×N slots, or of Q primaries). ring.New: CPU time of one build.")
	fmt.Println()
	fmt.Println("| nodes | total weight | fair slots of a weight-1 node | slots / fair: min | max | std dev | nodes off by >10% | primaries / fair: min | max | nodes off by >10% | ring.New (CPU) |")
	fmt.Println("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, n := range o.sizes {
		ms := cluster(o, n)
		r, d := timed(cfg, ms)
		rs, ps := balanceOf(r)
		w := totalWeight(ms)
		fmt.Printf("| %d | %d | %.1f | %.2f | %.2f | %.3f | %d (%.0f%%) | %.2f | %.2f | %d (%.0f%%) | %s |\n",
			n, w, float64(o.partitions*o.replicas)/float64(w), rs.min, rs.max, rs.sd, rs.outside, pct(rs.outside, rs.n),
			ps.min, ps.max, ps.outside, pct(ps.outside, ps.n), ms3(d))
	}
	fmt.Println()
}

func movesTable(o options) {
	cfg := ring.Config{Partitions: o.partitions, Replicas: o.replicas, VNodesPerWeight: o.vnodes}
	ws := weightsOf(o)
	fmt.Printf("### One node joins or leaves (Q=%d, N=%d, %d vnodes per weight)\n\n", o.partitions, o.replicas, o.vnodes)
	fmt.Printf("Per size, %d joins and %d leaves: for each weight %s, %d new nodes join (one at a time) and %d existing nodes leave (marked left). ", o.events*len(ws), o.events*len(ws), joinInts(ws, ", "), o.events, o.events)
	fmt.Println("Ideal: the node's own fair share of the Q×N replica slots (shown per weight). Moved: replica slots whose owner changes (ring.Diff, Gained), over the ideal. Touched: partitions whose replica set changes. Primaries: partitions whose primary changes, over the node's fair share of primaries. Bound shift: the change moves a whole weight class's integer balance bounds (see bounds in ring.go).")
	fmt.Println()
	fmt.Println("| nodes | event | ideal, % of slots | moved / ideal: median | max | events above 2× ideal | touched, % of partitions: median | max | primaries changed / ideal: median | max | bound shift: events, median moved / ideal | no shift: events, median |")
	fmt.Println("|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, n := range o.sizes {
		ms := cluster(o, n)
		base := build(cfg, ms)
		outs := apply(cfg, ms, base, events(o, ms, o.events))
		for _, join := range []bool{true, false} {
			var sel []outcome
			for _, x := range outs {
				if x.join == join {
					sel = append(sel, x)
				}
			}
			printMoves(n, join, sel, o, ws)
		}
	}
	fmt.Println()
}

func printMoves(n int, join bool, outs []outcome, o options, ws []int) {
	name := "leave"
	if join {
		name = "join"
	}
	slots := float64(o.partitions * o.replicas)
	var ideal []string
	for _, w := range ws {
		for _, x := range outs {
			if x.w == w {
				ideal = append(ideal, fmt.Sprintf("%.2f", 100*x.ideal/slots))
				break
			}
		}
	}
	var moved, touched, prim, sh, nosh []float64
	above := 0
	for _, x := range outs {
		m := float64(x.moved) / x.ideal
		moved = append(moved, m)
		if m > 2 {
			above++
		}
		touched = append(touched, 100*float64(x.touched)/float64(o.partitions))
		prim = append(prim, float64(x.primaries)/x.primIdeal)
		if x.shifted {
			sh = append(sh, m)
		} else {
			nosh = append(nosh, m)
		}
	}
	fmt.Printf("| %d | %s | %s | %.2f | %.2f | %d of %d | %.1f | %.1f | %.2f | %.2f | %d, %s | %d, %s |\n",
		n, name, strings.Join(ideal, " / "), median(moved), slices.Max(moved), above, len(outs),
		median(touched), slices.Max(touched), median(prim), slices.Max(prim),
		len(sh), medianOrDash(sh), len(nosh), medianOrDash(nosh))
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianOrDash(v []float64) string {
	if len(v) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", median(v))
}

func sweepTable(o options) {
	n := o.sweepN
	ms := cluster(o, n)
	fmt.Printf("### Partition count and vnodes at %d nodes (total weight %d, N=%d)\n\n", n, totalWeight(ms), o.replicas)
	fmt.Printf("Join and leave: for each weight %s, one node joins and one leaves; moved slots over the node's fair share, median and largest of the %d. ", joinInts(weightsOf(o), ", "), len(weightsOf(o)))
	fmt.Println("Replica sets: distinct sets of N nodes that hold some partition; N simultaneous failures lose data only if they are one of these sets, which for N random failures has probability sets / C(n, N). ring.New: CPU time of one build.")
	fmt.Println()
	fmt.Println("| Q | vnodes per weight | fair slots of a weight-1 node | slots / fair: min | max | std dev | nodes off by >10% | primaries / fair: min | max | join moved / ideal: median | max | leave: median | max | replica sets | P(loss), N random failures | ring.New (CPU) |")
	fmt.Println("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	type point struct{ q, v int }
	var pts []point
	for _, q := range o.sweepQ {
		pts = append(pts, point{q, o.vnodes})
	}
	for _, q := range o.sweepVQ {
		for _, v := range o.sweepV {
			pts = append(pts, point{q, v})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		if a.q != b.q {
			return a.q - b.q
		}
		return a.v - b.v
	})
	pts = slices.Compact(pts)
	for _, pt := range pts {
		cfg := ring.Config{Partitions: pt.q, Replicas: o.replicas, VNodesPerWeight: pt.v}
		r, d := timed(cfg, ms)
		rs, ps := balanceOf(r)
		var joins, leaves []float64
		for _, x := range apply(cfg, ms, r, events(o, ms, 1)) {
			if x.join {
				joins = append(joins, float64(x.moved)/x.ideal)
			} else {
				leaves = append(leaves, float64(x.moved)/x.ideal)
			}
		}
		sets := map[string]bool{}
		for p := range r.Partitions() {
			pref := slices.Clone(r.Preference(p))
			slices.Sort(pref)
			sets[strings.Join(pref, " ")] = true
		}
		fmt.Printf("| %d | %d | %.1f | %.2f | %.2f | %.3f | %d (%.0f%%) | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %d | %.1e | %s |\n",
			pt.q, pt.v, float64(pt.q*o.replicas)/float64(totalWeight(ms)), rs.min, rs.max, rs.sd, rs.outside, pct(rs.outside, rs.n),
			ps.min, ps.max, median(joins), slices.Max(joins), median(leaves), slices.Max(leaves), len(sets),
			float64(len(sets))/choose(n, o.replicas), ms3(d))
	}
	fmt.Println()
}

func choose(n, k int) float64 {
	c := 1.0
	for i := range k {
		c = c * float64(n-i) / float64(i+1)
	}
	return c
}

func joinInts(v []int, sep string) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprint(x))
	}
	return strings.Join(s, sep)
}

func pct(a, b int) float64 { return 100 * float64(a) / float64(b) }

func ms3(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
}
