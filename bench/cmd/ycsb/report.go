package main

import (
	"fmt"
	"log"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/ringkv/ringkv/bench/internal/hist"
)

const clkTck = 100 // USER_HZ

// cpuPerOp formats CPU ticks per operation in µs ("–" when unknown).
func cpuPerOp(ticks int64, ops uint64) string {
	if ticks < 0 || ops == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", float64(ticks)/clkTck/float64(ops)*1e6)
}

func cpuPerOpF(ticks int64, ops uint64) float64 {
	if ticks < 0 || ops == 0 {
		return math.NaN()
	}
	return float64(ticks) / clkTck / float64(ops) * 1e6
}

func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func ratio(a, b float64) string {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// detailClients is the client count the per-workload tables and the
// ratios are given for: 32 if measured, else the largest.
func (r *results) detailClients() int {
	if slices.Contains(r.clients, 32) {
		return 32
	}
	return slices.Max(r.clients)
}

func (r *results) measured() []targetSpec {
	var out []targetSpec
	for _, t := range r.targets {
		if _, ok := r.versions[t.name]; ok {
			out = append(out, t)
		}
	}
	return out
}

func (r *results) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("### YCSB run of %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	p("- machine: %s; every server and the load generator share it\n", machine())
	p("- %s\n", strings.TrimPrefix(ringkvBuild, ""))
	p("- clients: ringkv's Go client (`client`, token-aware, HTTP), go-redis %s, go.etcd.io/etcd/client/v3 %s\n", modVersion("github.com/redis/go-redis/v9"), modVersion("go.etcd.io/etcd/client/v3"))
	p("- %d keys loaded per target by %d writers; each run phase: %v after a %v unmeasured warm-up, closed-loop clients (one request at a time each), a new client pool per phase\n",
		*flagRecords, *flagLoadConc, *flagRun, *flagWarmup)
	p("- workloads %s; key choice %s; values %s B; clients %s\n", strings.Join(r.wls, ", "), strings.Join(r.dists, ", "), joinInts(r.sizes), joinInts(r.clients))
	p("- wall time %v (%s → %s UTC); load average %s before, %s after\n\n", r.ended.Sub(r.started).Round(time.Second),
		r.started.UTC().Format("15:04:05"), r.ended.UTC().Format("15:04:05"), r.loadBefore, r.loadAfter)

	p("| target | what | version | what an acknowledged write means |\n|---|---|---|---|\n")
	for _, t := range r.targets {
		v := r.versions[t.name]
		if v == "" {
			v = "not run"
		}
		p("| %s | %s | %s | %s |\n", t.name, t.label, v, t.guarantees)
	}
	p("\n")
	if len(r.skipped) > 0 {
		for _, k := range sortedKeys(r.skipped) {
			p("- **%s**: %s\n", k, r.skipped[k])
		}
		p("\n")
	}

	p("Load phase (blind writes of every key, %d writers):\n\n| target | value B | ops/s | p50 ms | p99 ms | server CPU µs/op | errors |\n|---|--:|--:|--:|--:|--:|--:|\n", *flagLoadConc)
	for _, t := range r.measured() {
		for _, s := range r.sizes {
			if lp := r.loads[t.name][s]; lp != nil {
				p("| %s | %d | %s | %s | %s | %s | %s |\n", t.name, s, thousands(lp.opsPerSec()), ms(lp.all.Quantile(0.5)), ms(lp.all.Quantile(0.99)), cpuPerOp(lp.serverTicks, lp.ops), lp.errSummary())
			}
		}
	}
	p("\n")

	dc := r.detailClients()
	p("Run phases at %d clients. Latency is per operation as the client saw it (a read-modify-write of F counts as one operation: its read and its write; \"write p99\" is that of the updates, or of F's read-modify-writes); server CPU is user + system time of all the target's server processes over the run phase (`/proc/PID/stat`), client CPU that of this load generator, each divided by the operations done.\n\n", dc)
	for _, size := range r.sizes {
		for _, wl := range r.wls {
			for _, dist := range r.dists {
				p("#### Workload %s (%s), %s, %d B values, %d clients\n\n", wl, workloads[wl].about, dist, size, dc)
				p("| target | ops/s | p50 ms | p99 ms | p99.9 ms | read p99 ms | write p99 ms | server CPU µs/op | client CPU µs/op | errors |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
				for _, t := range r.measured() {
					x := r.runs[runKey{t.name, wl, dist, size, dc}]
					if x == nil {
						continue
					}
					wp99 := "–"
					if x.wr.Count() > 0 {
						wp99 = ms(x.wr.Quantile(0.99))
					}
					p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", t.name, thousands(x.opsPerSec()), ms(x.all.Quantile(0.5)), ms(x.all.Quantile(0.99)), ms(x.all.Quantile(0.999)),
						ms(x.rd.Quantile(0.99)), wp99, cpuPerOp(x.serverTicks, x.ops), cpuPerOp(x.selfTicks, x.ops), x.errSummary())
				}
				p("\n")
			}
		}
	}

	// Ratios of each ringkv target against each peer.
	var rk, peers []targetSpec
	for _, t := range r.measured() {
		if t.ringkv {
			rk = append(rk, t)
		} else {
			peers = append(peers, t)
		}
	}
	if len(rk) > 0 && len(peers) > 0 {
		p("Ratios, ringkv ÷ peer, at %d clients: each cell is throughput ratio / p99 ratio / server-CPU-per-op ratio (throughput above 1: ringkv faster; p99 and CPU below 1: ringkv better).\n\n", dc)
		p("| workload | ringkv target |")
		for _, pe := range peers {
			p(" vs %s |", pe.name)
		}
		p("\n|---|---|%s\n", strings.Repeat("--:|", len(peers)))
		for _, size := range r.sizes {
			for _, wl := range r.wls {
				for _, dist := range r.dists {
					for _, t := range rk {
						a := r.runs[runKey{t.name, wl, dist, size, dc}]
						if a == nil {
							continue
						}
						p("| %s %s %d B | %s |", wl, dist, size, t.name)
						for _, pe := range peers {
							x := r.runs[runKey{pe.name, wl, dist, size, dc}]
							if x == nil {
								p(" – |")
								continue
							}
							p(" %s / %s / %s |", ratio(a.opsPerSec(), x.opsPerSec()), ratio(float64(a.all.Quantile(0.99)), float64(x.all.Quantile(0.99))),
								ratio(cpuPerOpF(a.serverTicks, a.ops), cpuPerOpF(x.serverTicks, x.ops)))
						}
						p("\n")
					}
				}
			}
		}
		p("\n")
	}

	if len(r.clients) > 1 {
		r.sweep(&b)
	}
	if r.kill != nil {
		r.killReport(&b)
	}
	return b.String()
}

func (r *results) plotLink(name string) string {
	prefix := *flagPlotLink
	if prefix == "" {
		prefix = *flagPlots
	}
	return filepath.ToSlash(filepath.Join(prefix, name))
}

func (r *results) writePlot(name, svg string) bool {
	if *flagPlots == "" {
		return false
	}
	if err := os.MkdirAll(*flagPlots, 0o755); err != nil {
		log.Printf("plots: %v", err)
		return false
	}
	if err := os.WriteFile(filepath.Join(*flagPlots, name), []byte(svg), 0o644); err != nil {
		log.Printf("plots: %v", err)
		return false
	}
	return true
}

// sweep reports throughput and p99 against the client count.
func (r *results) sweep(b *strings.Builder) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	for _, size := range r.sizes {
		for _, wl := range r.wls {
			for _, dist := range r.dists {
				p("#### Client sweep: workload %s, %s, %d B — ops/s (p99 ms)\n\n| clients |", wl, dist, size)
				ts := r.measured()
				for _, t := range ts {
					p(" %s |", t.name)
				}
				p("\n|--:|%s\n", strings.Repeat("--:|", len(ts)))
				var tput, p99 []series
				for i, t := range ts {
					col := palette[i%len(palette)]
					st, sl := series{label: t.name, color: col}, series{label: t.name, color: col}
					for _, c := range r.clients {
						if x := r.runs[runKey{t.name, wl, dist, size, c}]; x != nil {
							st.xs, st.ys = append(st.xs, float64(c)), append(st.ys, x.opsPerSec())
							sl.xs, sl.ys = append(sl.xs, float64(c)), append(sl.ys, float64(x.all.Quantile(0.99))/1e6)
						}
					}
					tput, p99 = append(tput, st), append(p99, sl)
				}
				for _, c := range r.clients {
					p("| %d |", c)
					for _, t := range ts {
						if x := r.runs[runKey{t.name, wl, dist, size, c}]; x != nil {
							p(" %s (%s) |", thousands(x.opsPerSec()), ms(x.all.Quantile(0.99)))
						} else {
							p(" – |")
						}
					}
					p("\n")
				}
				p("\n")
				name := fmt.Sprintf("ycsb-sweep-%s-%s-%d.svg", wl, dist, size)
				svg := chart(fmt.Sprintf("YCSB workload %s (%s), %s keys, %d B values", wl, workloads[wl].about, dist, size),
					fmt.Sprintf("%d keys, %v per point, closed-loop clients; servers and clients on one %d-CPU machine; %s", *flagRecords, *flagRun, runtime.NumCPU(), r.started.UTC().Format("2006-01-02")),
					"clients (log scale)", true,
					[]panel{{"operations per second", tput}, {"p99 latency (ms)", p99}}, nil)
				if r.writePlot(name, svg) {
					p("![workload %s sweep](%s)\n\n", wl, r.plotLink(name))
				}
			}
		}
	}
}

func (r *results) killReport(b *strings.Builder) {
	tl := r.kill
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	tot := tl.total
	p("#### Node kill under load: ringkv-3-w2\n\n")
	retries := "returning a write whose outcome is unknown as failed (`-write-retry=false`, client.Options.NoWriteRetry)"
	if *flagRetry {
		retries = "retrying a write whose outcome is unknown on the next replica under the same write ID (the client's default)"
	}
	p("Workload A (uniform, %d B) with %d clients through the token-aware client, %s, for %d s; `kill -9` of n3 at %.1f s; n3 restarted on its data directory (same flags) at %.1f s",
		tl.size, tl.clients, retries, tl.seconds, tl.killAt.Seconds(), tl.restartAt.Seconds())
	if tl.healthyAt > 0 {
		p(", answering /healthz at %.1f s", tl.healthyAt.Seconds())
	}
	p(".\n\n")
	if tl.restartErr != "" {
		p("Restart problem: %s\n\n", tl.restartErr)
	}
	p("**Failed requests: %d** of %d; %d succeeded, %.0f ops/s on average.", tot.errs, tot.ops+tot.errs, tot.ops, tot.opsPerSec())
	if tot.firstErr != "" {
		p(" First error: `%s`.", tot.firstErr)
	}
	p("\n\n")
	// The goal's yardstick: the p99 of every request of the seconds before
	// the kill, against the worst second's p99 from the kill on.
	if killSec := int(tl.killAt / time.Second); killSec > 0 && killSec < len(tot.perSec) {
		var steady hist.Histogram
		worst, worstSec := time.Duration(0), 0
		for s, x := range tot.perSec {
			if s >= tl.seconds {
				break
			}
			if s < killSec {
				steady.Merge(&x.lat)
			} else if q := x.lat.Quantile(0.99); x.ok > 0 && q > worst {
				worst, worstSec = q, s
			}
		}
		if st := steady.Quantile(0.99); st > 0 {
			p("Steady p99 (every request of the %d s before the kill): %s ms; the worst second from the kill on: %s ms (second %d), **%.2f×** the steady p99.\n\n",
				killSec, ms(st), ms(worst), worstSec, float64(worst)/float64(st))
		}
	}
	p("Per second, each request counted in the second it ended:\n\n")
	p("| second | ok ops | failed | p99 ms | max ms |\n|--:|--:|--:|--:|--:|\n")
	var xs, ok, failed, p99 []float64
	for s, x := range tot.perSec {
		if s >= tl.seconds {
			break
		}
		ev := ""
		if s == int(tl.killAt/time.Second) && tl.killAt > 0 {
			ev = " (kill)"
		}
		if s == int(tl.restartAt/time.Second) && tl.restartAt > 0 {
			ev = " (restart)"
		}
		p("| %d%s | %d | %d | %s | %s |\n", s, ev, x.ok, x.failed, ms(x.lat.Quantile(0.99)), ms(x.lat.Max()))
		xs = append(xs, float64(s)+0.5)
		ok, failed = append(ok, float64(x.ok)), append(failed, float64(x.failed))
		y := math.NaN()
		if x.ok > 0 {
			y = float64(x.lat.Quantile(0.99)) / 1e6
		}
		p99 = append(p99, y)
	}
	p("\n")
	marks := []mark{{tl.killAt.Seconds(), "kill -9 n3"}}
	if tl.restartAt > 0 {
		marks = append(marks, mark{tl.restartAt.Seconds(), "n3 restarted"})
	}
	svg := chart("ringkv, three nodes, N=3, R=W=2: kill -9 of one node under load, and its restart",
		fmt.Sprintf("workload A, %d keys, %d B values, %d closed-loop clients (token-aware HTTP client); %d failed requests in all; %s",
			*flagRecords, tl.size, tl.clients, tot.errs, r.started.UTC().Format("2006-01-02")),
		"seconds since the load began", false,
		[]panel{
			{"successful operations per second", []series{{"ok ops/s", "#1f77b4", xs, ok}}},
			{"p99 latency per second (ms)", []series{{"p99", "#d62728", xs, p99}}},
			{"failed requests per second", []series{{"failed", "#7f7f7f", xs, failed}}},
		}, marks)
	if r.writePlot("ycsb-kill.svg", svg) {
		p("![node kill timeline](%s)\n\n", r.plotLink("ycsb-kill.svg"))
	}
}

func joinInts(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, fmt.Sprint(x))
	}
	return strings.Join(s, ", ")
}

func sortedKeys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
