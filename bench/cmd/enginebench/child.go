package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/ringkv/ringkv/bench/internal/engines"
	"github.com/ringkv/ringkv/bench/internal/hist"
)

const (
	keySize   = 16
	valueSize = 100
)

// result is one engine's measurements for one workload. Durations are in
// nanoseconds and sizes in bytes; fields that do not apply are left zero and
// their Has* flag false.
type result struct {
	Workload string
	Ops      int64
	Seconds  float64

	HasLatency bool
	P50, P99   int64

	// Fill workloads only.
	LogicalBytes   int64
	HasIOWrite     bool
	IOWriteBytes   int64
	HasEngineWA    bool
	EngineWA       float64
	HasDisk        bool
	DiskAllocated  int64
	DiskApparent   int64
	HasPeakRSS     bool
	PeakRSS        int64
	WrongResults   int64
	ReopenSeconds  float64
	HasReopenStats bool
}

// childReport is what a child process prints to stdout as JSON.
type childReport struct {
	Engine   string
	Settings string
	Results  []result
	Error    string
}

// runner runs the workloads for one engine inside a child process.
type runner struct {
	eng    engines.Engine
	cfg    engines.Config
	dir    string
	p      params
	values []byte // db_bench-style compressible value pool
	out    []result
}

// params are the workload parameters shared by parent and child.
type params struct {
	Num       int
	Workloads []string
	SyncNum   int
	SyncTime  time.Duration
	Scans     int
	ScanLen   int
	Threads   int
	Seed      uint64
}

func runChild(engineName, dir string, cfg engines.Config, p params) {
	rep := childReport{Engine: engineName}
	eng, err := engines.Lookup(engineName)
	if err == nil {
		rep.Settings = eng.Settings(cfg)
		r := &runner{eng: eng, cfg: cfg, dir: dir, p: p, values: valuePool(p.Seed)}
		err = r.run()
		rep.Results = r.out
	}
	if err != nil {
		rep.Error = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fmt.Fprintln(os.Stderr, "enginebench child:", err)
		os.Exit(1)
	}
}

func (r *runner) want(w string) bool { return slices.Contains(r.p.Workloads, w) }

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", r.eng.Name, fmt.Sprintf(format, args...))
}

func (r *runner) run() error {
	n := r.p.Num
	if r.want("fillseq") {
		dir := filepath.Join(r.dir, "fillseq")
		if err := r.fill("fillseq", dir, false, n, 0, func(i int) uint64 { return uint64(i) }); err != nil {
			return err
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}

	needReads := slices.ContainsFunc(readWorkloads, r.want)
	if r.want("fillrandom") || needReads {
		dir := filepath.Join(r.dir, "fillrandom")
		perm := permutation(n, rand.New(rand.NewPCG(r.p.Seed, 1)))
		if err := r.fill("fillrandom", dir, false, n, 0, func(i int) uint64 { return uint64(perm[i]) }); err != nil {
			return err
		}
		if !r.want("fillrandom") {
			r.out = r.out[:len(r.out)-1] // only run to load the reads
		}
		perm = nil
		if needReads {
			if err := r.readPhase(dir); err != nil {
				return err
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}

	if r.want("fillsync") {
		dir := filepath.Join(r.dir, "fillsync")
		rng := rand.New(rand.NewPCG(r.p.Seed, 2))
		keys := make([]uint64, r.p.SyncNum)
		for i := range keys {
			keys[i] = rng.Uint64N(uint64(n))
		}
		if err := r.fill("fillsync", dir, true, r.p.SyncNum, r.p.SyncTime, func(i int) uint64 { return keys[i] }); err != nil {
			return err
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return nil
}

// readWorkloads run, in this order, against the reopened fillrandom DB.
var readWorkloads = []string{"readrandom", "readmissing", "readrandom4", "readseq", "scan"}

// fill opens a fresh DB in dir and writes n keys, one Set each (stopping
// early once limit, if positive, has passed), then closes it. Throughput and
// latency cover the Sets only; write_bytes covers the Sets and the Close.
func (r *runner) fill(name, dir string, sync bool, n int, limit time.Duration, key func(i int) uint64) error {
	cfg := r.cfg
	cfg.Sync = sync
	r.logf("%s: %d ops", name, n)
	db, err := r.eng.Open(dir, cfg)
	if err != nil {
		return fmt.Errorf("%s: open: %w", name, err)
	}
	res := result{Workload: name, HasLatency: true}
	io0, ioOK := ioWriteBytes()
	resetPeakRSS()

	var h hist.Histogram
	kb := make([]byte, keySize)
	start := time.Now()
	prev := start
	ops := 0
	for ops < n {
		formatKey(kb, key(ops))
		if err := db.Set(kb, r.value(ops)); err != nil {
			db.Close()
			return fmt.Errorf("%s: set #%d: %w", name, ops, err)
		}
		now := time.Now()
		h.Record(now.Sub(prev))
		prev = now
		ops++
		if limit > 0 && now.Sub(start) >= limit {
			break
		}
	}
	res.Ops = int64(ops)
	res.Seconds = prev.Sub(start).Seconds()
	res.P50, res.P99 = int64(h.Quantile(0.50)), int64(h.Quantile(0.99))
	res.LogicalBytes = int64(ops) * (keySize + valueSize)
	res.EngineWA, res.HasEngineWA = db.EngineWriteAmp(res.LogicalBytes)
	if err := db.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", name, err)
	}
	if io1, ok := ioWriteBytes(); ok && ioOK {
		res.IOWriteBytes, res.HasIOWrite = io1-io0, true
	}
	res.PeakRSS, res.HasPeakRSS = peakRSS()
	if a, b, err := dirSize(dir); err == nil {
		res.DiskAllocated, res.DiskApparent, res.HasDisk = a, b, true
	}
	r.logf("%s: %.0f ops/s", name, float64(ops)/res.Seconds)
	r.out = append(r.out, res)
	return nil
}

// readPhase reopens the DB in dir and runs the requested read workloads.
func (r *runner) readPhase(dir string) error {
	cfg := r.cfg
	cfg.Sync = false
	resetPeakRSS()
	t0 := time.Now()
	db, err := r.eng.Open(dir, cfg)
	if err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	reopen := time.Since(t0).Seconds()
	r.logf("reopen: %.3fs", reopen)
	first := true
	for _, w := range readWorkloads {
		if !r.want(w) {
			continue
		}
		r.logf("%s", w)
		var res result
		switch w {
		case "readrandom":
			res = r.pointReads(db, w, 1, false)
		case "readmissing":
			res = r.pointReads(db, w, 1, true)
		case "readrandom4":
			res = r.pointReads(db, w, r.p.Threads, false)
		case "readseq":
			res = r.readSeq(db)
		case "scan":
			res = r.scan(db)
		}
		if res.Workload == "" {
			db.Close()
			return fmt.Errorf("%s failed", w)
		}
		if first {
			res.ReopenSeconds, res.HasReopenStats = reopen, true
			first = false
		}
		res.PeakRSS, res.HasPeakRSS = peakRSS()
		r.logf("%s: %.0f ops/s", w, float64(res.Ops)/res.Seconds)
		r.out = append(r.out, res)
		resetPeakRSS()
	}
	return db.Close()
}

// pointReads does Num gets of random keys split over threads goroutines.
// With missing set each key is an existing key with its last byte replaced
// by '.', which sorts inside the key range but is never present.
func (r *runner) pointReads(db engines.DB, name string, threads int, missing bool) result {
	threads = max(threads, 1)
	n := r.p.Num
	hists := make([]hist.Histogram, threads)
	wrong := make([]int64, threads)
	errs := make([]error, threads)
	var wg sync.WaitGroup
	start := time.Now()
	for t := range threads {
		per := n / threads
		if t < n%threads {
			per++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(r.p.Seed, 100+uint64(t)))
			kb := make([]byte, keySize)
			h := &hists[t]
			prev := time.Now()
			for range per {
				formatKey(kb, rng.Uint64N(uint64(n)))
				if missing {
					kb[keySize-1] = '.'
				}
				vlen, found, err := db.Get(kb)
				if err != nil {
					errs[t] = err
					return
				}
				if found == missing || (found && vlen != valueSize) {
					wrong[t]++
				}
				now := time.Now()
				h.Record(now.Sub(prev))
				prev = now
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			r.logf("%s: get: %v", name, err)
			return result{}
		}
	}
	var h hist.Histogram
	res := result{Workload: name, Ops: int64(n), Seconds: elapsed.Seconds(), HasLatency: true}
	for i := range hists {
		h.Merge(&hists[i])
		res.WrongResults += wrong[i]
	}
	res.P50, res.P99 = int64(h.Quantile(0.50)), int64(h.Quantile(0.99))
	return res
}

// readSeq iterates over the whole DB in key order; ops = keys visited.
func (r *runner) readSeq(db engines.DB) result {
	start := time.Now()
	it, err := db.NewIter()
	if err != nil {
		r.logf("readseq: %v", err)
		return result{}
	}
	var n, bytes int64
	for ok := it.First(); ok; ok = it.Next() {
		bytes += int64(len(it.Key()) + len(it.Value()))
		n++
	}
	err = it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	elapsed := time.Since(start)
	if err != nil {
		r.logf("readseq: %v", err)
		return result{}
	}
	res := result{Workload: "readseq", Ops: n, Seconds: elapsed.Seconds()}
	if n != int64(r.p.Num) || bytes != n*(keySize+valueSize) {
		res.WrongResults = max(int64(r.p.Num)-n, 1)
	}
	return res
}

// scan does Scans range scans, each a new iterator, a SeekGE to a random
// existing key and ScanLen entries read (key and value); ops = scans.
func (r *runner) scan(db engines.DB) result {
	rng := rand.New(rand.NewPCG(r.p.Seed, 3))
	kb := make([]byte, keySize)
	span := max(r.p.Num-r.p.ScanLen+1, 1)
	res := result{Workload: "scan", Ops: int64(r.p.Scans), HasLatency: true}
	var h hist.Histogram
	var sink int
	start := time.Now()
	prev := start
	for range r.p.Scans {
		formatKey(kb, rng.Uint64N(uint64(span)))
		it, err := db.NewIter()
		if err != nil {
			r.logf("scan: %v", err)
			return result{}
		}
		got := 0
		for ok := it.SeekGE(kb); ok && got < r.p.ScanLen; ok = got < r.p.ScanLen && it.Next() {
			sink += len(it.Key()) + len(it.Value())
			got++
		}
		err = it.Error()
		if cerr := it.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			r.logf("scan: %v", err)
			return result{}
		}
		if got != min(r.p.ScanLen, r.p.Num) {
			res.WrongResults++
		}
		now := time.Now()
		h.Record(now.Sub(prev))
		prev = now
	}
	res.Seconds = prev.Sub(start).Seconds()
	res.P50, res.P99 = int64(h.Quantile(0.50)), int64(h.Quantile(0.99))
	if sink != r.p.Scans*min(r.p.ScanLen, r.p.Num)*(keySize+valueSize) && res.WrongResults == 0 {
		res.WrongResults = 1
	}
	return res
}

// formatKey writes n as a 16-digit zero-padded decimal, like db_bench.
func formatKey(dst []byte, n uint64) {
	for i := keySize - 1; i >= 0; i-- {
		dst[i] = '0' + byte(n%10)
		n /= 10
	}
}

// permutation returns the integers [0, n) in random order.
func permutation(n int, rng *rand.Rand) []uint32 {
	p := make([]uint32, n)
	for i := range p {
		p[i] = uint32(i)
	}
	rng.Shuffle(n, func(i, j int) { p[i], p[j] = p[j], p[i] })
	return p
}

// valuePool builds 1 MiB of value data the way db_bench does: each 100-byte
// piece is 50 random printable bytes written twice, so values compress to
// about half their size.
func valuePool(seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 4))
	pool := make([]byte, 0, 1<<20+valueSize)
	half := make([]byte, valueSize/2)
	for len(pool) < 1<<20 {
		for i := range half {
			half[i] = ' ' + byte(rng.IntN(95))
		}
		pool = append(pool, half...)
		pool = append(pool, half...)
	}
	return pool
}

// value returns the value for the i-th write, a window of the pool.
func (r *runner) value(i int) []byte {
	off := (i * valueSize) % (len(r.values) - valueSize)
	return r.values[off : off+valueSize]
}
