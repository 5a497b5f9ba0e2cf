// Command enginebench is a db_bench-style benchmark that runs ringkv's
// storage engine and its peers (Pebble, goleveldb, Badger) side by side, with
// the same cache, memtable, block, bloom-filter and compression settings, and
// prints a markdown report.
//
// Each engine runs in its own child process (the binary re-executes itself
// with -child), so that the peak RSS and the /proc/self/io write counters it
// reports belong to that engine alone. Engines run one after another, never
// concurrently. Per engine the workloads run in this order:
//
//	fillseq      fresh DB, Num keys in ascending order, one Set each, no fsync
//	fillrandom   fresh DB, the same Num keys in random order (a permutation,
//	             so every key exists afterwards), one Set each, no fsync
//	             (the DB is then closed and reopened)
//	readrandom   Num gets of random existing keys
//	readmissing  Num gets of absent keys that sort inside the key range
//	readrandom4  Num gets of random existing keys over 4 goroutines
//	readseq      one iterator over the whole DB in key order; ops = keys
//	scan         -scans times: new iterator, SeekGE(random key), read 100
//	             entries; ops = scans
//	fillsync     fresh DB, -syncnum random keys (or until -synctime), every
//	             Set fsynced
//
// Keys are 16-byte zero-padded decimals and values 100 bytes that compress to
// about half, as in LevelDB's db_bench.
//
// Usage:
//
//	cd bench && go run ./cmd/enginebench -num 1000000 [-engines ringkv,pebble,goleveldb,badger]
//	    [-workloads fillseq,fillrandom,...] [-cache 8MiB] [-out report.md]
//
// Build with -tags noringkv to leave ringkv out (for example while its engine
// does not compile).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ringkv/ringkv/bench/internal/engines"
)

var allWorkloads = []string{"fillseq", "fillrandom", "readrandom", "readmissing", "readrandom4", "readseq", "scan", "fillsync"}

func main() {
	var (
		engineList = flag.String("engines", "ringkv,pebble,goleveldb,badger", "comma-separated engines to run, in this order")
		workloads  = flag.String("workloads", strings.Join(allWorkloads, ","), "comma-separated workloads (they always run in the canonical order)")
		num        = flag.Int("num", 1_000_000, "keys written by fillseq/fillrandom and gets done by each read workload")
		cacheFlag  = flag.String("cache", "8MiB", "block-cache size for every engine (bytes, or with KiB/MiB/GiB suffix)")
		memFlag    = flag.String("memtable", "8MiB", "memtable / write-buffer size for every engine")
		blockSize  = flag.Int("blocksize", 4096, "data block size for every engine")
		bloomBits  = flag.Int("bloom", 10, "bloom filter bits per key")
		syncNum    = flag.Int("syncnum", 10_000, "writes done by fillsync")
		syncTime   = flag.Duration("synctime", 60*time.Second, "fillsync stops early after this long (0 = no limit)")
		scans      = flag.Int("scans", 0, "range scans done by scan (0 = num/10)")
		scanLen    = flag.Int("scanlen", 100, "entries read by each range scan")
		threads    = flag.Int("threads", 4, "goroutines used by readrandom4")
		seed       = flag.Uint64("seed", 1, "random seed (the same for every engine)")
		dirFlag    = flag.String("dir", "", "parent directory for the temporary DB directories (default: os.TempDir)")
		out        = flag.String("out", "", "also write the markdown report to this file")
		child      = flag.Bool("child", false, "internal: run one engine in this process and print JSON results")
		engineName = flag.String("engine", "", "internal: the engine a -child runs")
		cpuProfile = flag.String("cpuprofile", "", "write a CPU profile per engine to DIR/<engine>.pprof")
	)
	flag.Parse()

	cacheSize, err := parseSize(*cacheFlag)
	check(err)
	memSize, err := parseSize(*memFlag)
	check(err)
	cfg := engines.Config{
		CacheSize:       cacheSize,
		MemTableSize:    int(memSize),
		BlockSize:       *blockSize,
		BloomBitsPerKey: *bloomBits,
	}
	p := params{
		Num:      *num,
		SyncNum:  *syncNum,
		SyncTime: *syncTime,
		Scans:    *scans,
		ScanLen:  *scanLen,
		Threads:  *threads,
		Seed:     *seed,
	}
	if p.Scans <= 0 {
		p.Scans = max(p.Num/10, 1)
	}
	if p.Num <= 0 || p.SyncNum < 0 || p.ScanLen <= 0 {
		check(errors.New("-num and -scanlen must be positive, -syncnum not negative"))
	}
	for _, w := range splitList(*workloads) {
		if !slices.Contains(allWorkloads, w) {
			check(fmt.Errorf("unknown workload %q (have %s)", w, strings.Join(allWorkloads, ",")))
		}
		p.Workloads = append(p.Workloads, w)
	}

	if *child {
		if *cpuProfile != "" {
			f, err := os.Create(filepath.Join(*cpuProfile, *engineName+".pprof"))
			check(err)
			check(pprof.StartCPUProfile(f))
			defer pprof.StopCPUProfile()
		}
		runChild(*engineName, *dirFlag, cfg, p)
		return
	}

	var names []string
	for _, e := range splitList(*engineList) {
		if !engines.Registered(e) {
			if e == "ringkv" {
				fmt.Fprintln(os.Stderr, "enginebench: ringkv is not compiled in (built with -tags noringkv); skipping it")
				continue
			}
			check(fmt.Errorf("unknown engine %q (have %s)", e, strings.Join(engines.Names(), ",")))
		}
		names = append(names, e)
	}
	if len(names) == 0 {
		check(errors.New("no engines to run"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	base, err := os.MkdirTemp(*dirFlag, "enginebench-")
	check(err)
	defer os.RemoveAll(base)

	exe, err := os.Executable()
	check(err)
	rep := report{Cfg: cfg, P: p, Started: time.Now()}
	for _, name := range names {
		er := runEngine(ctx, exe, name, filepath.Join(base, name), *cpuProfile, cfg, p)
		rep.Engines = append(rep.Engines, er)
		if ctx.Err() != nil {
			break
		}
	}
	text := rep.markdown()
	fmt.Print(text)
	if *out != "" {
		check(os.WriteFile(*out, []byte(text), 0o644))
	}
}

// engineRun is one child's report plus what the parent observed of it.
type engineRun struct {
	childReport
	// MaxRSS is the child's peak RSS in bytes: the largest of its
	// per-workload VmHWM readings and its rusage maxrss. (The child resets
	// VmHWM at each workload, and the kernel derives ru_maxrss from the same
	// high-water mark, so rusage alone would only cover the last workload.)
	MaxRSS  int64
	CPU     time.Duration // user + system time of the child
	Elapsed time.Duration
	// LoadBefore and LoadAfter are the 1-minute load averages when the child
	// started and ended: a busy machine makes the numbers unreliable.
	LoadBefore, LoadAfter string
}

func runEngine(ctx context.Context, exe, name, dir, cpuProfile string, cfg engines.Config, p params) engineRun {
	args := []string{
		"-child", "-engine", name, "-dir", dir,
		"-num", strconv.Itoa(p.Num),
		"-workloads", strings.Join(p.Workloads, ","),
		"-cache", strconv.FormatInt(cfg.CacheSize, 10),
		"-memtable", strconv.Itoa(cfg.MemTableSize),
		"-blocksize", strconv.Itoa(cfg.BlockSize),
		"-bloom", strconv.Itoa(cfg.BloomBitsPerKey),
		"-syncnum", strconv.Itoa(p.SyncNum),
		"-synctime", p.SyncTime.String(),
		"-scans", strconv.Itoa(p.Scans),
		"-scanlen", strconv.Itoa(p.ScanLen),
		"-threads", strconv.Itoa(p.Threads),
		"-seed", strconv.FormatUint(p.Seed, 10),
	}
	if cpuProfile != "" {
		args = append(args, "-cpuprofile", cpuProfile)
	}
	er := engineRun{childReport: childReport{Engine: name}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		er.Error = err.Error()
		return er
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	var stdout strings.Builder
	cmd.Stdout = &stdout
	er.LoadBefore = loadAvg()
	start := time.Now()
	runErr := cmd.Run()
	er.Elapsed = time.Since(start)
	er.LoadAfter = loadAvg()
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			er.MaxRSS = ru.Maxrss << 10 // KiB on Linux
		}
		er.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	var cr childReport
	if err := json.Unmarshal([]byte(stdout.String()), &cr); err == nil {
		er.childReport = cr
	}
	for _, res := range er.Results {
		if res.HasPeakRSS {
			er.MaxRSS = max(er.MaxRSS, res.PeakRSS)
		}
	}
	if runErr != nil && er.Error == "" {
		er.Error = "child process: " + runErr.Error()
	}
	if er.Error != "" {
		fmt.Fprintf(os.Stderr, "enginebench: %s: %s\n", name, er.Error)
	}
	return er
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseSize parses a byte count with an optional KiB/MiB/GiB (or K/M/G,
// KB/MB/GB, all binary) suffix.
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, suf := range []struct {
		s string
		m int64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(t, suf.s); ok {
			t, mult = strings.TrimSpace(rest), suf.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "enginebench:", err)
		os.Exit(2)
	}
}
