// Command joinbench measures what a join costs: three `ringkv server`
// processes on loopback (N=3, default flags except --repair-rate), loaded
// with -size of data (keys of 14 bytes, incompressible values of -value
// bytes, written at W=2), then a fourth node started with --join while a
// steady load of GETs and SETs (go-redis, -concurrency connections, R=W=2,
// SETs overwrite loaded keys so the key count stays fixed) runs through the
// three original nodes; the load goes on while the old owners drop the
// partitions they no longer replicate (at most -drop-wait), then for -after.
//
// It reports:
//
//   - the timeline of the join (process started, joining seen, streaming,
//     normal), the bytes of the join (GET /v1/transfers of the joiner:
//     anti-entropy payloads sent and received while it streamed), and what
//     the joiner received until it was normal (GET /v1/repair: bytes and
//     keys pulled);
//   - when each old owner (n1-n3) began and finished dropping what it no
//     longer replicates, and the keys it removed;
//   - once every node is stopped, each node's engine read offline: the keys
//     it holds and their stored bytes, the joiner's share of the cluster's
//     replicas (its keys ÷ N × keys; ideal 1/4 with four equal nodes), a
//     check that it holds exactly the keys the four-node ring gives it, and
//     each data directory's size before and after compacting its engine;
//   - per second: GET and SET throughput and p50/p99 latency, and the bytes
//     the joiner received, as a CSV (-csv) and an SVG plot (-svg).
//
// Usage, from the bench module:
//
//	go run ./cmd/joinbench [-bin PATH] [-size 100MB] [-value 1024] [-repair-rate -1]
//		[-concurrency 16] [-get-ratio 0.5] [-rate 0] [-before 20s] [-drop-wait 5m] [-after 20s]
//		[-svg join.svg] [-csv join.csv] [-out report.md]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	httpapi "github.com/ringkv/ringkv/api/http"
	"github.com/ringkv/ringkv/rebalance"
)

const (
	replicas   = 3
	partitions = 1024
)

var (
	flagBin        = flag.String("bin", "", "the ringkv binary (default: built from the main module into the temporary directory)")
	flagSize       = flag.String("size", "100MB", "logical data loaded before the join: keys × (key + value) bytes (KB, MB, GB are powers of 1000; KiB, MiB, GiB of 1024)")
	flagKeys       = flag.Int("keys", 0, "keys loaded (overrides -size)")
	flagValue      = flag.Int("value", 1024, "value bytes")
	flagRepairRate = flag.String("repair-rate", "-1", "--repair-rate of every node, bytes per second (negative: unbounded; the server's default is 16777216)")
	flagLoadConc   = flag.Int("load-concurrency", 12, "connections of the initial load (pipelines of 100 SETs)")
	flagConc       = flag.Int("concurrency", 16, "connections of the steady load (each one request at a time)")
	flagGetRatio   = flag.Float64("get-ratio", 0.5, "share of GETs in the steady load (the rest are SETs of loaded keys)")
	flagRate       = flag.Int("rate", 0, "steady load: total requests per second, spread over the connections (0: as fast as they go)")
	flagBefore     = flag.Duration("before", 20*time.Second, "steady load before the fourth node starts")
	flagAfter      = flag.Duration("after", 20*time.Second, "steady load after the fourth node is normal and the old owners' drops are done")
	flagTimeout    = flag.Duration("join-timeout", 30*time.Minute, "give up when the fourth node is not normal after this long")
	flagIP         = flag.Int("ip", 41, "the nodes listen on 127.0.0.IP, IP+1, IP+2 and IP+3")
	flagDir        = flag.String("dir", "", "where the temporary directory goes (default: the system's)")
	flagKeep       = flag.Bool("keep", false, "keep the temporary directory (data directories and node logs)")
	flagSVG        = flag.String("svg", "", "write the per-second plot here")
	flagCSV        = flag.String("csv", "", "write the per-second figures here")
	flagOut        = flag.String("out", "", "also write the report here")
	flagDropWait   = flag.Duration("drop-wait", 5*time.Minute, "once n4 is normal, run the steady load until n1-n3 have dropped the partitions they no longer replicate, for at most this long, before the -after period (0: do not wait; for a build without drops)")
)

type node struct {
	id, ip, dir      string
	resp, http, peer string
	join             string
	logPath          string
	cmd              *exec.Cmd
	exited           chan struct{}
}

var (
	runMu   sync.Mutex
	running = map[*node]bool{}
	root    string
)

// die stops every node this command started, removes the temporary
// directory unless -keep, and exits.
func die(format string, args ...any) {
	log.Printf("joinbench: "+format, args...)
	runMu.Lock()
	for n := range running {
		n.cmd.Process.Signal(syscall.SIGKILL)
		fmt.Fprintf(os.Stderr, "--- last lines of %s's log ---\n%s", n.id, tail(n.logPath, 20))
	}
	runMu.Unlock()
	if root != "" && !*flagKeep {
		os.RemoveAll(root)
	} else if root != "" {
		log.Printf("kept %s", root)
	}
	os.Exit(1)
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	ls := strings.SplitAfter(string(b), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "")
}

// freePort finds a port p on ip such that p and p+1 are free for TCP and
// UDP (the peer port and the gossip port after it).
func freePort(ip string) int {
	for range 100 {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			die("listen on %s: %v", ip, err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := p < 65000
		for _, port := range []int{p, p + 1} {
			if !ok {
				break
			}
			tl, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				ok = false
				break
			}
			ul, err := net.ListenPacket("udp", fmt.Sprintf("%s:%d", ip, port))
			tl.Close()
			if err != nil {
				ok = false
				break
			}
			ul.Close()
		}
		if ok {
			return p
		}
	}
	die("no free port pair on %s", ip)
	return 0
}

func newNode(i int) *node {
	ip := fmt.Sprintf("127.0.0.%d", *flagIP+i)
	id := fmt.Sprintf("n%d", i+1)
	return &node{
		id: id, ip: ip, dir: filepath.Join(root, id),
		resp:    fmt.Sprintf("%s:%d", ip, freePort(ip)),
		http:    fmt.Sprintf("%s:%d", ip, freePort(ip)),
		peer:    fmt.Sprintf("%s:%d", ip, freePort(ip)),
		logPath: filepath.Join(root, id+".log"),
	}
}

func (n *node) start(bin string) {
	args := []string{"server", "--node-id", n.id, "--data-dir", n.dir, "--resp-addr", n.resp,
		"--http-addr", n.http, "--peer-addr", n.peer, "--replicas", strconv.Itoa(replicas),
		"--repair-rate", *flagRepairRate}
	if n.join != "" {
		args = append(args, "--join", n.join)
	}
	lf, err := os.Create(n.logPath)
	if err != nil {
		die("%v", err)
	}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Stdout, n.cmd.Stderr = lf, lf
	runMu.Lock()
	if err := n.cmd.Start(); err != nil {
		runMu.Unlock()
		die("starting %s: %v", n.id, err)
	}
	running[n] = true
	runMu.Unlock()
	n.exited = make(chan struct{})
	go func() {
		n.cmd.Wait()
		lf.Close()
		close(n.exited)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-n.exited:
			die("%s exited at start", n.id)
		default:
		}
		if resp, err := httpc.Get("http://" + n.http + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			die("%s did not start", n.id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the node with SIGTERM (a clean shutdown, so its engine opens
// offline without a crash recovery), SIGKILL after 60s.
func (n *node) stop() {
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(60 * time.Second):
		log.Printf("%s did not stop in 60s: killed", n.id)
		n.cmd.Process.Signal(syscall.SIGKILL)
		<-n.exited
	}
	runMu.Lock()
	delete(running, n)
	runMu.Unlock()
}

var httpc = &http.Client{Timeout: 5 * time.Second}

func getJSON(addr, path string, out any) error {
	resp, err := httpc.Get("http://" + addr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func cluster(n *node) (httpapi.ClusterStatus, error) {
	var st httpapi.ClusterStatus
	return st, getJSON(n.http, "/v1/cluster", &st)
}

type transfersStatus struct {
	NodeID    string               `json:"node_id"`
	State     string               `json:"state"`
	Transfers []rebalance.Transfer `json:"transfers"`
}

type repairStatus struct {
	KeysPulled    uint64 `json:"keys_pulled"`
	KeysPushed    uint64 `json:"keys_pushed"`
	BytesSent     uint64 `json:"bytes_sent"`
	BytesReceived uint64 `json:"bytes_received"`
}

func waitFor(d time.Duration, what string, cond func() bool) {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			die("timed out: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// parseSize reads 100MB, 1GB, 512MiB, 1e9 or a plain number of bytes.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := 1.0
	num := strings.TrimSpace(s)
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(num), strings.ToUpper(u.suffix)) {
			mult, num = u.mult, strings.TrimSpace(num[:len(num)-len(u.suffix)])
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(f * mult), nil
}

// build compiles ./cmd/ringkv of the main module (the bench module's
// replace points at it) and describes what was built.
func build() (bin, desc string) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/ringkv/ringkv").Output()
	if err != nil {
		die("finding the main module (run from the bench module, or pass -bin): %v", err)
	}
	src := strings.TrimSpace(string(out))
	bin = filepath.Join(root, "ringkv")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ringkv")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		die("go build: %v\n%s", err, out)
	}
	commit, _ := exec.Command("git", "-C", src, "rev-parse", "--short", "HEAD").Output()
	dirty, _ := exec.Command("git", "-C", src, "status", "--porcelain", "--untracked-files=all", "--", "*.go").Output()
	desc = "built from the working tree at commit " + strings.TrimSpace(string(commit))
	if len(strings.TrimSpace(string(dirty))) > 0 {
		desc += " with uncommitted Go changes"
	} else {
		desc += ", no uncommitted Go changes"
	}
	return bin, desc
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

// joinTimeline is what the joiner's status showed, and when (offsets from
// the start of the steady load).
type joinTimeline struct {
	launched, joining, streaming, normal time.Duration
	move                                 rebalance.Transfer // the "join" transfer, once done
	stream                               rebalance.Transfer // the joiner's own "stream" transfer
	repairAtNormal                       repairStatus
	// received samples the joiner's anti-entropy bytes received.
	received []receivedSample
}

type receivedSample struct {
	at    time.Duration
	bytes uint64
}

func main() {
	log.SetFlags(log.Ltime)
	flag.Parse()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { die("interrupted by %v", <-sig) }()

	var err error
	if root, err = os.MkdirTemp(*flagDir, "joinbench-"); err != nil {
		log.Fatal(err)
	}
	keys := *flagKeys
	const keyLen = 14 // "key:%010d"
	if keys <= 0 {
		size, err := parseSize(*flagSize)
		if err != nil {
			die("%v", err)
		}
		keys = int(size / int64(keyLen+*flagValue))
	}
	logical := int64(keys) * int64(keyLen+*flagValue)
	if _, err := strconv.ParseInt(*flagRepairRate, 10, 64); err != nil {
		die("-repair-rate: %v", err)
	}

	bin, binDesc := *flagBin, "given with -bin"
	if bin == "" {
		log.Printf("building ringkv")
		bin, binDesc = build()
	}
	var rep report
	rep.started = time.Now()
	rep.loadBefore = loadAvg()
	rep.binDesc, rep.keys, rep.logical = binDesc, keys, logical

	nodes := make([]*node, 4)
	for i := range nodes {
		nodes[i] = newNode(i)
		if i > 0 {
			nodes[i].join = nodes[0].peer
		}
	}
	for _, n := range nodes[:3] {
		n.start(bin)
	}
	waitFor(30*time.Second, "three members alive on every node", func() bool {
		for _, n := range nodes[:3] {
			st, err := cluster(n)
			if err != nil {
				return false
			}
			alive := 0
			for _, m := range st.Members {
				if m.Alive && m.State == "normal" {
					alive++
				}
			}
			if alive != 3 {
				return false
			}
		}
		return true
	})
	origAddrs := []string{nodes[0].resp, nodes[1].resp, nodes[2].resp}
	vals := newValues(*flagValue)

	log.Printf("loading %d keys of %d+%d bytes (%s) through n1-n3", keys, keyLen, *flagValue, human(float64(logical)))
	t0 := time.Now()
	if err := bulkLoad(origAddrs, keys, *flagLoadConc, vals); err != nil {
		die("load: %v", err)
	}
	rep.loadTook = time.Since(t0)
	log.Printf("loaded in %v", rep.loadTook.Round(time.Millisecond))
	waitFor(5*time.Minute, "no hints pending after the load", func() bool {
		for _, n := range nodes[:3] {
			st, err := cluster(n)
			if err != nil {
				return false
			}
			for _, m := range st.Members {
				if m.HintsPending != 0 {
					return false
				}
			}
		}
		return true
	})

	rec := newRecorder()
	ctx, stopLoad := context.WithCancel(context.Background())
	loadDone := steadyLoad(ctx, rec, origAddrs, keys, vals)
	rep.cpu = append(rep.cpu, markCPU(rec.since(), nodes))
	log.Printf("steady load for %v before the join", *flagBefore)
	time.Sleep(*flagBefore)

	var tl joinTimeline
	joiner := nodes[3]
	tl.launched = rec.since()
	rep.cpu = append(rep.cpu, markCPU(tl.launched, nodes))
	log.Printf("starting n4 (--join %s)", joiner.join)
	joiner.start(bin)
	deadline := time.Now().Add(*flagTimeout)
	lastLog := time.Now()
	for {
		var ts transfersStatus
		err := getJSON(joiner.http, "/v1/transfers", &ts)
		at := rec.since()
		var rs repairStatus
		if getJSON(joiner.http, "/v1/repair", &rs) == nil {
			tl.received = append(tl.received, receivedSample{at, rs.BytesReceived})
		}
		if err == nil {
			if ts.State == "joining" && tl.joining == 0 {
				tl.joining = at
			}
			for _, t := range ts.Transfers {
				switch {
				case t.Kind == "stream" && t.Node == joiner.id:
					tl.stream = t
					if (t.State == "streaming" || t.State == "done") && tl.streaming == 0 {
						tl.streaming = at
					}
				case t.Kind == "join" && t.Node == joiner.id:
					tl.move = t
				}
			}
			if time.Since(lastLog) > 5*time.Second {
				log.Printf("n4 %s: %d/%d partitions, %s", ts.State, tl.stream.PartitionsDone, tl.stream.PartitionsTotal, human(float64(tl.stream.Bytes)))
				lastLog = time.Now()
			}
			if ts.State == "normal" {
				tl.normal = at
				tl.repairAtNormal = rs
				rep.cpu = append(rep.cpu, markCPU(at, nodes))
				break
			}
		}
		if time.Now().After(deadline) {
			die("n4 not normal after %v", *flagTimeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	log.Printf("n4 normal %v after it started", (tl.normal - tl.launched).Round(time.Millisecond))
	if st, err := cluster(joiner); err == nil {
		rep.ringReplicaCounts = st.ReplicaCounts
	}
	drops := map[string]*dropInfo{}
	poll := func() {
		var rs repairStatus
		if getJSON(joiner.http, "/v1/repair", &rs) == nil {
			tl.received = append(tl.received, receivedSample{rec.since(), rs.BytesReceived})
		}
		pollDrops(nodes[:3], drops, rec.since())
		time.Sleep(200 * time.Millisecond)
	}
	if *flagDropWait > 0 {
		log.Printf("steady load until n1-n3 have dropped what they no longer replicate (at most %v)", *flagDropWait)
		end := time.Now().Add(*flagDropWait)
		for !dropsDone(nodes[:3], drops) && time.Now().Before(end) {
			poll()
		}
		if !dropsDone(nodes[:3], drops) {
			log.Printf("the drops are not all done after %v", *flagDropWait)
		}
	}
	rep.afterFrom = rec.since()
	rep.cpu = append(rep.cpu, markCPU(rep.afterFrom, nodes))
	log.Printf("steady load for %v more", *flagAfter)
	for end := time.Now().Add(*flagAfter); time.Now().Before(end); {
		poll()
	}
	rep.cpu = append(rep.cpu, markCPU(rec.since(), nodes))
	stopLoad()
	<-loadDone
	rep.loadEnded = rec.since()
	rep.loadAfter = loadAvg()
	rep.drops = drops

	log.Printf("stopping the nodes")
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.stop() }()
	}
	wg.Wait()

	log.Printf("reading every node's engine offline")
	rep.counts, err = countReplicas(nodes, keys, joiner.id)
	if err != nil {
		die("counting: %v", err)
	}
	rep.tl, rep.series = tl, rec.series()
	rep.fillReceived()
	out := rep.markdown()
	fmt.Print(out)
	if *flagOut != "" {
		if err := os.WriteFile(*flagOut, []byte(out), 0o644); err != nil {
			log.Print(err)
		}
	}
	if *flagCSV != "" {
		if err := os.WriteFile(*flagCSV, []byte(rep.csv()), 0o644); err != nil {
			log.Print(err)
		}
	}
	if *flagSVG != "" {
		if err := os.WriteFile(*flagSVG, []byte(rep.svg()), 0o644); err != nil {
			log.Print(err)
		}
	}
	if *flagKeep {
		log.Printf("kept %s", root)
	} else {
		os.RemoveAll(root)
	}
}

// report gathers the run's figures.
type report struct {
	started               time.Time
	loadBefore, loadAfter string
	binDesc               string
	keys                  int
	logical               int64
	loadTook              time.Duration
	tl                    joinTimeline
	loadEnded             time.Duration
	series                []second
	counts                replicaCounts
	ringReplicaCounts     map[string]int
	// afterFrom is when the after phase began: the drops done (or n4
	// normal, without -drop-wait).
	afterFrom time.Duration
	// cpu marks the steady load's start, n4's start, n4 normal, the start
	// of the after phase, and the end of the steady load.
	cpu []cpuMark
	// drops are n1-n3's removals of what they no longer replicate.
	drops map[string]*dropInfo
}

func human(b float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for b >= 1024 && i < len(units)-1 {
		b /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %s", b, units[i])
}

func dur(d time.Duration) string {
	return d.Round(10 * time.Millisecond).String()
}

func (r *report) markdown() string {
	var b strings.Builder
	tl, c := r.tl, r.counts
	fmt.Fprintf(&b, "### joinbench\n\n")
	fmt.Fprintf(&b, "- started %s, %s %s/%s, %d CPUs; load average %s before, %s after\n",
		r.started.UTC().Format(time.RFC3339), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), r.loadBefore, r.loadAfter)
	fmt.Fprintf(&b, "- ringkv %s\n", r.binDesc)
	fmt.Fprintf(&b, "- nodes on 127.0.0.%d-%d, N=%d, Q=%d, default flags except --repair-rate %s\n", *flagIP, *flagIP+3, replicas, partitions, *flagRepairRate)
	fmt.Fprintf(&b, "- data: %d keys × (14 + %d) bytes = %d bytes (%s) of logical data, incompressible values; loaded through n1-n3 at W=2 in %s (%s/s of logical data)\n",
		r.keys, *flagValue, r.logical, human(float64(r.logical)), dur(r.loadTook), human(float64(r.logical)/r.loadTook.Seconds()))
	rateDesc := "as fast as they go"
	if *flagRate > 0 {
		rateDesc = fmt.Sprintf("paced at %d requests/s in total", *flagRate)
	}
	fmt.Fprintf(&b, "- steady load: %d go-redis connections spread over n1-n3, one request at a time, %s; %.0f%% GETs at R=2, the rest SETs of loaded keys at W=2\n\n",
		*flagConc, rateDesc, *flagGetRatio*100)

	fmt.Fprintf(&b, "#### The join\n\n")
	fmt.Fprintf(&b, "| step | at (s since the load began) |\n|---|--:|\n")
	fmt.Fprintf(&b, "| n4 started (`--join`) | %.2f |\n", tl.launched.Seconds())
	fmt.Fprintf(&b, "| n4 seen joining | %.2f |\n", tl.joining.Seconds())
	fmt.Fprintf(&b, "| n4 streaming | %.2f |\n", tl.streaming.Seconds())
	fmt.Fprintf(&b, "| n4 normal | %.2f |\n\n", tl.normal.Seconds())
	total := tl.normal - tl.launched
	streamDur := tl.normal - tl.streaming
	fmt.Fprintf(&b, "| figure | value |\n|---|--:|\n")
	fmt.Fprintf(&b, "| join duration (n4 started → normal) | %s |\n", dur(total))
	fmt.Fprintf(&b, "| of which streaming (first seen streaming → normal) | %s |\n", dur(streamDur))
	fmt.Fprintf(&b, "| partitions streamed | %d |\n", tl.move.PartitionsTotal)
	fmt.Fprintf(&b, "| join bytes (`/v1/transfers`, anti-entropy payloads both ways) | %d (%s) |\n", tl.move.Bytes, human(float64(tl.move.Bytes)))
	fmt.Fprintf(&b, "| bytes n4 received by anti-entropy until normal (`/v1/repair`) | %d (%s) |\n", tl.repairAtNormal.BytesReceived, human(float64(tl.repairAtNormal.BytesReceived)))
	fmt.Fprintf(&b, "| keys n4 pulled until normal (`/v1/repair`) | %d |\n", tl.repairAtNormal.KeysPulled)
	if total > 0 {
		fmt.Fprintf(&b, "| rate: bytes received ÷ join duration | %s/s |\n", human(float64(tl.repairAtNormal.BytesReceived)/total.Seconds()))
	}
	if streamDur > 0 {
		fmt.Fprintf(&b, "| rate: bytes received ÷ streaming time | %s/s |\n", human(float64(tl.repairAtNormal.BytesReceived)/streamDur.Seconds()))
	}
	fmt.Fprintln(&b)

	fmt.Fprintf(&b, "#### What n4 holds (engines read offline after the run)\n\n")
	want := replicas * r.keys
	fmt.Fprintf(&b, "| node | keys held | share of N × keys (%d) | stored bytes (key + object) | data dir after the run | after compacting its engine |\n|---|--:|--:|--:|--:|--:|\n", want)
	for _, n := range c.nodes {
		fmt.Fprintf(&b, "| %s | %d | %.4f | %d (%s) | %s | %s |\n", n.id, n.keys, float64(n.keys)/float64(want),
			n.bytes, human(float64(n.bytes)), human(float64(n.dirBefore)), human(float64(n.dirAfter)))
	}
	j := c.nodes[len(c.nodes)-1]
	keyShare := float64(j.keys) / float64(want)
	byteShare := float64(j.bytes) / float64(replicas*c.oneCopyBytes)
	fmt.Fprintf(&b, "\n| figure | value | goal |\n|---|--:|---|\n")
	fmt.Fprintf(&b, "| n4's keys ÷ (N × keys) | %.4f (%+.1f%% of 1/4) | within 10%% of 1/4: %s |\n", keyShare, (keyShare/0.25-1)*100, pass(keyShare))
	fmt.Fprintf(&b, "| n4's stored bytes ÷ (N × stored bytes of one copy, %d) | %.4f (%+.1f%% of 1/4) | %s |\n", replicas*c.oneCopyBytes, byteShare, (byteShare/0.25-1)*100, pass(byteShare))
	ringShare := float64(c.ringPartitions) / float64(partitions*replicas)
	fmt.Fprintf(&b, "| n4's partitions in the four-node ring ÷ (Q × N) | %d / %d = %.4f | |\n", c.ringPartitions, partitions*replicas, ringShare)
	if rc, ok := r.ringReplicaCounts[j.id]; ok {
		fmt.Fprintf(&b, "| the same from n4's `/v1/cluster` `replica_counts` once normal | %d | |\n", rc)
	}
	fmt.Fprintf(&b, "| keys the four-node ring gives n4 | %d | |\n", c.expected)
	fmt.Fprintf(&b, "| of those, missing on n4 / held by n4 but not its own | %d / %d | 0 / 0 |\n", c.missing, c.extra)
	fmt.Fprintf(&b, "| keys held by fewer than N nodes | %d | 0 |\n", c.underReplicated)
	fmt.Fprintf(&b, "| bytes n4 received ÷ its stored bytes | %.3f | |\n\n", float64(tl.repairAtNormal.BytesReceived)/float64(j.bytes))
	fmt.Fprintf(&b, "The old owners' drops (`/v1/transfers` kind `drop` on n1-n3, polled under the steady load from n4 normal until all were done, at most -drop-wait %v, and during the -after period):\n\n", *flagDropWait)
	fmt.Fprintf(&b, "| node | first seen (s) | done (s) | partitions | keys removed |\n|---|--:|--:|--:|--:|\n")
	for _, id := range []string{"n1", "n2", "n3"} {
		d := r.drops[id]
		if d == nil {
			fmt.Fprintf(&b, "| %s | not seen | | | |\n", id)
			continue
		}
		done := "not done"
		if d.done > 0 {
			done = fmt.Sprintf("%.2f", d.done.Seconds())
		}
		fmt.Fprintf(&b, "| %s | %.2f | %s | %d | %d |\n", id, d.seen.Seconds(), done, d.partitions, d.keysRemoved)
	}
	fmt.Fprintf(&b, "\nThe after phase began at %.2f s; the steady load ended at %.2f s.\n\n", r.afterFrom.Seconds(), r.loadEnded.Seconds())

	fmt.Fprintf(&b, "#### The steady load\n\n")
	fmt.Fprintf(&b, "p50/p99 are of every request finished in the phase, failed ones included at their time to fail.\n\n")
	fmt.Fprintf(&b, "| phase | seconds | requests/s | GET/s | SET/s | GET p50 | GET p99 | SET p50 | SET p99 | errors | GETs not found |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, p := range r.phases() {
		fmt.Fprintf(&b, "| %s | %.1f | %.0f | %.0f | %.0f | %s | %s | %s | %s | %d | %d |\n", p.name, p.secs,
			float64(p.get.Count()+p.set.Count())/p.secs, float64(p.get.Count())/p.secs, float64(p.set.Count())/p.secs,
			ms(p.get.Quantile(0.5)), ms(p.get.Quantile(0.99)), ms(p.set.Quantile(0.5)), ms(p.set.Quantile(0.99)), p.errs, p.misses)
	}
	fmt.Fprintln(&b)
	if len(r.cpu) == 5 {
		fmt.Fprintf(&b, "CPU used (cores, user + system, averaged over each phase; the machine has %d):\n\n", runtime.NumCPU())
		fmt.Fprintf(&b, "| phase | n1 | n2 | n3 | n4 | joinbench (the load) |\n|---|--:|--:|--:|--:|--:|\n")
		for i, name := range []string{"before", "during the join", "until the drops are done", "after"} {
			a, z := r.cpu[i], r.cpu[i+1]
			if z.at-a.at < time.Second {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", name, cores(a, z, "n1"), cores(a, z, "n2"), cores(a, z, "n3"), cores(a, z, "n4"), cores(a, z, "load"))
		}
		fmt.Fprintln(&b)
	}
	return b.String()
}

func pass(share float64) string {
	if share >= 0.225 && share <= 0.275 {
		return "yes"
	}
	return "no"
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/1e6)
}
