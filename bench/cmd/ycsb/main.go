// Command ycsb is a YCSB-style system benchmark: it starts ringkv and its
// peers (redis-server, a Redis Cluster, an etcd cluster) on 127.0.0.1,
// loads each, runs the core workloads against it, stops it, and prints a
// markdown report with SVG plots. Everything runs on this machine in one
// run: the clients and every server share its CPUs.
//
//	cd bench && go run ./cmd/ycsb [-out report.md] [-plots DIR] [-full]
//
// Workloads (YCSB core): A 50% read / 50% update, B 95/5, C read only, F
// 50% read / 50% read-modify-write. Keys "user<i>" chosen uniformly or by
// YCSB's scrambled zipfian (0.99); values of -sizes bytes. Per target: a
// load phase writes -records keys, then each run phase drives -clients
// closed-loop clients for -run. The default is a quick profile (A and C,
// uniform, 100 B, 32 clients); -full runs the whole matrix with a client
// sweep 1..256. With -kill (default on), the three-node ringkv cluster at
// W=2 also runs a steady load through a kill -9 of one node and its
// restart, and the per-second throughput, p99 and failed requests are
// reported.
//
// Every process it starts is stopped by its PID at exit, and its
// temporary directory removed. ringkv is built from this checkout (the
// bench module's replace) unless -bin is given.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	flagTargets   = flag.String("targets", "ringkv-1,ringkv-1-resp,ringkv-3-w2,ringkv-3-w2-resp,ringkv-3-w2-rr,ringkv-3-w1,redis,redis-cluster,etcd", "targets, in this order (see the report for what each is)")
	flagWorkloads = flag.String("workloads", "A,C", "YCSB workloads among A,B,C,F")
	flagDists     = flag.String("dists", "uniform", "key distributions among uniform,zipfian")
	flagSizes     = flag.String("sizes", "100", "value sizes in bytes")
	flagClients   = flag.String("clients", "32", "closed-loop client counts (several: a sweep, plotted)")
	flagRecords   = flag.Int("records", 50000, "keys written by the load phase")
	flagLoadConc  = flag.Int("load-clients", 32, "concurrent writers of the load phase")
	flagRun       = flag.Duration("run", 10*time.Second, "length of each run phase")
	flagWarmup    = flag.Duration("warmup", time.Second, "unmeasured load before each run phase (the new clients' connections)")
	flagFull      = flag.Bool("full", false, "the full matrix: workloads A,B,C,F × uniform,zipfian × 100,1024 B × clients 1,2,4,8,16,32,64,128,256 (hours)")
	flagKill      = flag.Bool("kill", true, "on ringkv-3-w2: a steady load through a kill -9 of one node and its restart")
	flagKillConc  = flag.Int("kill-clients", 16, "clients of the kill timeline")
	flagKillAt    = flag.Int("kill-at", 10, "second of the timeline at which n3 is killed")
	flagRestart   = flag.Int("restart-after", 10, "seconds after the kill at which n3 is restarted on its data directory")
	flagKillLen   = flag.Int("kill-seconds", 40, "length of the timeline, seconds")
	flagRetry     = flag.Bool("write-retry", true, "the Go client retries a write whose outcome is unknown on another node under the same write ID, which the cluster applies once (the client's default; -write-retry=false sets client.Options.NoWriteRetry)")
	flagOut       = flag.String("out", "", "also write the report to this file")
	flagPlots     = flag.String("plots", "", "write the SVG plots into this directory (none without it)")
	flagPlotLink  = flag.String("plot-link", "", "path prefix of the plots in the report's links (default: -plots)")
	flagBin       = flag.String("bin", "", "a ringkv binary to run instead of building this checkout")
)

var root string // the run's temporary directory

func die(format string, args ...any) {
	log.Printf("ycsb: "+format, args...)
	cleanup()
	os.Exit(1)
}

func cleanup() {
	stopAll()
	if root != "" {
		os.RemoveAll(root)
	}
}

type runKey struct {
	target, wl, dist string
	size, clients    int
}

type results struct {
	started, ended time.Time
	loadBefore     string
	loadAfter      string
	targets        []targetSpec
	versions       map[string]string
	skipped        map[string]string
	loads          map[string]map[int]*phase // target -> size -> load phase
	runs           map[runKey]*phase
	kill           *timeline
	clients        []int
	wls, dists     []string
	sizes          []int
}

func main() {
	log.SetFlags(log.Ltime)
	flag.Parse()
	if *flagFull {
		*flagWorkloads, *flagDists, *flagSizes, *flagClients = "A,B,C,F", "uniform,zipfian", "100,1024", "1,2,4,8,16,32,64,128,256"
	}
	res := &results{versions: map[string]string{}, skipped: map[string]string{}, loads: map[string]map[int]*phase{}, runs: map[runKey]*phase{}}
	for _, w := range split(*flagWorkloads) {
		w = strings.ToUpper(w)
		if _, ok := workloads[w]; !ok {
			die("unknown workload %q", w)
		}
		res.wls = append(res.wls, w)
	}
	for _, d := range split(*flagDists) {
		if d != "uniform" && d != "zipfian" {
			die("unknown distribution %q", d)
		}
		res.dists = append(res.dists, d)
	}
	res.sizes = ints(*flagSizes)
	res.clients = ints(*flagClients)
	for _, name := range split(*flagTargets) {
		i := slices.IndexFunc(specs, func(s targetSpec) bool { return s.name == name })
		if i < 0 {
			die("unknown target %q", name)
		}
		res.targets = append(res.targets, specs[i])
	}

	var err error
	root, err = os.MkdirTemp("", "ringkv-ycsb-")
	if err != nil {
		die("%v", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		log.Printf("%v: stopping every started process", s)
		cleanup()
		os.Exit(130)
	}()
	defer cleanup()

	if slices.ContainsFunc(res.targets, func(s targetSpec) bool { return s.ringkv }) {
		if *flagBin != "" {
			ringkvBin, ringkvBuild, ringkvVersion = *flagBin, "ringkv binary "+*flagBin, "binary "+filepath.Base(*flagBin)
		} else {
			ringkvBin, ringkvBuild, ringkvVersion = build()
		}
	}

	res.started = time.Now()
	res.loadBefore = loadAvg()
	for _, t := range res.targets {
		runTarget(res, t)
	}
	res.ended = time.Now()
	res.loadAfter = loadAvg()

	report := res.markdown()
	fmt.Print(report)
	if *flagOut != "" {
		if err := os.WriteFile(*flagOut, []byte(report), 0o644); err != nil {
			log.Printf("writing %s: %v", *flagOut, err)
		}
	}
}

func runTarget(res *results, t targetSpec) {
	dir := filepath.Join(root, t.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		die("%v", err)
	}
	defer os.RemoveAll(dir)
	log.Printf("=== %s: starting", t.name)
	rt, err := t.start(dir)
	if err != nil {
		msg := fmt.Sprintf("could not start %s, skipped: %v", t.name, err)
		log.Print(msg)
		res.skipped[t.name] = err.Error()
		return
	}
	defer rt.stop()
	res.versions[t.name] = rt.version
	res.loads[t.name] = map[int]*phase{}
	procs := func() []*proc {
		ps := slices.Clone(rt.procs)
		for _, n := range rt.nodes {
			ps = append(ps, n.p)
		}
		return ps
	}
	for _, size := range res.sizes {
		d, err := rt.newDriver(*flagLoadConc)
		if err != nil {
			log.Printf("%s: client: %v; skipped", t.name, err)
			res.skipped[t.name] = err.Error()
			return
		}
		log.Printf("%s: loading %d keys of %d B with %d clients", t.name, *flagRecords, size, *flagLoadConc)
		c0, s0 := procsTicks(procs()), cpuTicks("self")
		lp := load(d, *flagRecords, size, *flagLoadConc)
		lp.serverTicks, lp.selfTicks = diffTicks(c0, procsTicks(procs())), cpuTicks("self")-s0
		d.Close()
		res.loads[t.name][size] = lp
		log.Printf("%s: load %.0f ops/s, %d errors", t.name, lp.opsPerSec(), lp.errs)
		for _, wl := range res.wls {
			for _, dist := range res.dists {
				var kc keyChooser = uniform{*flagRecords}
				if dist == "zipfian" {
					kc = newZipfian(*flagRecords)
				}
				for _, clients := range res.clients {
					d, err := rt.newDriver(clients)
					if err != nil {
						log.Printf("%s: client: %v", t.name, err)
						continue
					}
					if *flagWarmup > 0 {
						runPhase(d, workloads[wl], kc, size, clients, *flagWarmup, false, nil)
					}
					c0, s0 := procsTicks(procs()), cpuTicks("self")
					p := runPhase(d, workloads[wl], kc, size, clients, *flagRun, false, nil)
					p.serverTicks, p.selfTicks = diffTicks(c0, procsTicks(procs())), cpuTicks("self")-s0
					d.Close()
					res.runs[runKey{t.name, wl, dist, size, clients}] = p
					log.Printf("%s: %s %s %d B %d clients: %.0f ops/s p50 %s p99 %s, %d errors", t.name, wl, dist, size, clients,
						p.opsPerSec(), ms(p.all.Quantile(0.5)), ms(p.all.Quantile(0.99)), p.errs)
				}
			}
		}
	}
	for _, p := range procs() {
		if !p.alive() {
			res.skipped[t.name+" (exit)"] = fmt.Sprintf("%s exited during the run: %s", p.name, tail(p.logPath, 5))
		}
	}
	if *flagKill && t.name == "ringkv-3-w2" {
		res.kill = killTimeline(rt, res.sizes[0])
	}
}

func diffTicks(a, b int64) int64 {
	if a < 0 || b < 0 {
		return -1
	}
	return b - a
}

// build compiles ./cmd/ringkv of the main module (the bench module's
// replace points at it) and describes what was built.
func build() (bin, desc, version string) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/ringkv/ringkv").Output()
	if err != nil {
		die("finding the main module (run from the bench module, or pass -bin): %v", err)
	}
	src := strings.TrimSpace(string(out))
	bin = filepath.Join(root, "ringkv")
	log.Printf("building ringkv from %s", src)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ringkv")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		die("go build: %v\n%s", err, out)
	}
	commit, _ := exec.Command("git", "-C", src, "rev-parse", "--short", "HEAD").Output()
	dirty, _ := exec.Command("git", "-C", src, "status", "--porcelain", "--untracked-files=no", "--", "*.go", ":!bench").Output()
	version = "this checkout, " + strings.TrimSpace(string(commit))
	desc = "ringkv built from the working tree at commit " + strings.TrimSpace(string(commit))
	if len(strings.TrimSpace(string(dirty))) > 0 {
		desc += " with uncommitted Go changes (other work in progress in the tree)"
	} else {
		desc += ", no uncommitted Go changes"
	}
	return bin, desc, version
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func split(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func ints(s string) []int {
	var out []int
	for _, x := range split(s) {
		n, err := strconv.Atoi(x)
		if err != nil || n <= 0 {
			die("bad number %q", x)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		die("empty list %q", s)
	}
	return out
}

func ms(d time.Duration) string {
	v := float64(d) / 1e6
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// modVersion returns the version of a module linked into this binary.
func modVersion(path string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "?"
	}
	for _, m := range bi.Deps {
		if m.Path == path {
			return m.Version
		}
	}
	return "?"
}

func machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) >= 2 {
			if kb, err := strconv.Atoi(f[1]); err == nil {
				mem = fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s, %s", runtime.NumCPU(), model, mem, runtime.Version())
}
