package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/ringkv/ringkv/bench/internal/engines"
)

// report collects every engine's results and renders them as markdown.
type report struct {
	Cfg     engines.Config
	P       params
	Started time.Time
	Engines []engineRun
}

func (r *report) markdown() string {
	var b strings.Builder
	pf := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }

	pf("# enginebench\n\n")
	pf("- started %s, %s %s/%s, %d CPUs (GOMAXPROCS %d), %s RAM%s\n",
		r.Started.Format(time.RFC3339), runtime.Version(), runtime.GOOS, runtime.GOARCH,
		runtime.NumCPU(), runtime.GOMAXPROCS(0), memTotal(), cpuModel())
	pf("- %d keys of %d bytes, values of %d bytes (compressible to ~50%%); block cache %s, memtable %s, "+
		"block size %d, bloom %d bits/key, Snappy\n",
		r.P.Num, keySize, valueSize, sizeStr(r.Cfg.CacheSize), sizeStr(int64(r.Cfg.MemTableSize)),
		r.Cfg.BlockSize, r.Cfg.BloomBitsPerKey)
	pf("- fillsync: up to %d writes or %s; scan: %d scans of %d entries; readrandom4: %d goroutines\n\n",
		r.P.SyncNum, r.P.SyncTime, r.P.Scans, r.P.ScanLen, r.P.Threads)

	for _, w := range r.P.Workloads {
		r.workloadTable(&b, w)
	}
	r.ratioTable(&b)
	r.engineTable(&b)
	pf("Columns: ops/s = ops / wall time of the timed loop; p50/p99 = per-op latency quantiles " +
		"(log-linear histogram, ≤3%% bucket error; for scan one op is a whole 100-entry scan); " +
		"WA (io) = /proc/self/io write_bytes during the fill and the Close after it ÷ (key+value bytes); " +
		"WA (engine) = the engine's own counter (see docs/benchmarks.md); disk = allocated bytes of the DB " +
		"directory after Close (file sizes = sum of apparent file sizes); peak RSS = VmHWM of the engine's process, reset at the start of the workload.\n")
	return b.String()
}

func (r *report) workloadTable(b *strings.Builder, w string) {
	fill := strings.HasPrefix(w, "fill")
	fmt.Fprintf(b, "## %s\n\n", w)
	if fill {
		b.WriteString("| engine | ops | ops/s | p50 | p99 | WA (io) | WA (engine) | disk | file sizes | peak RSS |\n")
		b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	} else {
		b.WriteString("| engine | ops | ops/s | p50 | p99 | peak RSS |\n")
		b.WriteString("|---|--:|--:|--:|--:|--:|\n")
	}
	var notes []string
	for _, e := range r.Engines {
		res, ok := e.result(w)
		if !ok {
			if fill {
				fmt.Fprintf(b, "| %s | – | – | – | – | – | – | – | – | – |\n", e.Engine)
			} else {
				fmt.Fprintf(b, "| %s | – | – | – | – | – |\n", e.Engine)
			}
			continue
		}
		p50, p99 := "–", "–"
		if res.HasLatency {
			p50, p99 = durStr(res.P50), durStr(res.P99)
		}
		rss := "–"
		if res.HasPeakRSS {
			rss = sizeStr(res.PeakRSS)
		}
		row := fmt.Sprintf("| %s | %d | %s | %s | %s |", e.Engine, res.Ops, rateStr(res), p50, p99)
		if fill {
			waIO, waEng, disk, files := "–", "–", "–", "–"
			if res.HasIOWrite && res.LogicalBytes > 0 {
				waIO = fmt.Sprintf("%.2f", float64(res.IOWriteBytes)/float64(res.LogicalBytes))
			}
			if res.HasEngineWA {
				waEng = fmt.Sprintf("%.2f", res.EngineWA)
			}
			if res.HasDisk {
				disk, files = sizeStr(res.DiskAllocated), sizeStr(res.DiskApparent)
			}
			row += fmt.Sprintf(" %s | %s | %s | %s |", waIO, waEng, disk, files)
		}
		b.WriteString(row + fmt.Sprintf(" %s |\n", rss))
		if res.WrongResults > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d wrong results (missing keys, unexpected hits or short scans)", e.Engine, res.WrongResults))
		}
	}
	for _, n := range notes {
		fmt.Fprintf(b, "\n**%s**\n", n)
	}
	b.WriteString("\n")
}

// ratioTable compares ringkv with Pebble and goleveldb.
func (r *report) ratioTable(b *strings.Builder) {
	base, ok := r.engine("ringkv")
	if !ok {
		return
	}
	var peers []engineRun
	for _, p := range []string{"pebble", "goleveldb"} {
		if e, ok := r.engine(p); ok {
			peers = append(peers, e)
		}
	}
	if len(peers) == 0 {
		return
	}
	b.WriteString("## ratios (ringkv ÷ peer)\n\nops/s above 1 means ringkv is faster; p99 and WA below 1 mean ringkv is better.\n\n| metric |")
	for _, p := range peers {
		fmt.Fprintf(b, " ringkv/%s |", p.Engine)
	}
	b.WriteString("\n|---|" + strings.Repeat("--:|", len(peers)) + "\n")
	type metric struct {
		w, name string
		f       func(result) (float64, bool)
	}
	ops := func(x result) (float64, bool) { return float64(x.Ops) / x.Seconds, x.Seconds > 0 }
	p99 := func(x result) (float64, bool) { return float64(x.P99), x.HasLatency && x.P99 > 0 }
	wa := func(x result) (float64, bool) {
		return float64(x.IOWriteBytes) / float64(x.LogicalBytes), x.HasIOWrite && x.LogicalBytes > 0
	}
	for _, m := range []metric{
		{"fillrandom", "ops/s", ops}, {"fillrandom", "p99", p99}, {"fillrandom", "WA (io)", wa},
		{"readrandom", "ops/s", ops}, {"readrandom", "p99", p99},
	} {
		x, ok := base.result(m.w)
		if !ok {
			continue
		}
		fmt.Fprintf(b, "| %s %s |", m.w, m.name)
		for _, p := range peers {
			y, ok := p.result(m.w)
			xv, okx := m.f(x)
			yv, oky := m.f(y)
			if ok && okx && oky && yv > 0 {
				fmt.Fprintf(b, " %.2f |", xv/yv)
			} else {
				b.WriteString(" – |")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func (r *report) engineTable(b *strings.Builder) {
	b.WriteString("## per engine\n\n| engine | process peak RSS | reopen | wall time | CPU time | load avg before → after | error |\n" +
		"|---|--:|--:|--:|--:|--:|---|\n")
	for _, e := range r.Engines {
		reopen := "–"
		for _, res := range e.Results {
			if res.HasReopenStats {
				reopen = durStr(int64(res.ReopenSeconds * 1e9))
			}
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s → %s | %s |\n", e.Engine, sizeStr(e.MaxRSS), reopen,
			e.Elapsed.Round(time.Second), e.CPU.Round(100*time.Millisecond), e.LoadBefore, e.LoadAfter,
			strings.ReplaceAll(e.Error, "|", "\\|"))
	}
	b.WriteString("\nSettings:\n\n")
	for _, e := range r.Engines {
		if e.Settings != "" {
			fmt.Fprintf(b, "- %s: %s\n", e.Engine, e.Settings)
		}
	}
	b.WriteString("\n")
}

func (r *report) engine(name string) (engineRun, bool) {
	for _, e := range r.Engines {
		if e.Engine == name {
			return e, true
		}
	}
	return engineRun{}, false
}

func (e engineRun) result(w string) (result, bool) {
	for _, res := range e.Results {
		if res.Workload == w {
			return res, true
		}
	}
	return result{}, false
}

func rateStr(res result) string {
	if res.Seconds <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", float64(res.Ops)/res.Seconds)
}

func durStr(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", ns)
	case d < time.Millisecond:
		return fmt.Sprintf("%.2fµs", float64(ns)/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(ns)/1e6)
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func sizeStr(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func memTotal() string {
	kb, err := procField("/proc/meminfo", "MemTotal:")
	if err != nil {
		return "?"
	}
	return sizeStr(kb << 10)
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return ", " + strings.TrimSpace(v)
		}
	}
	return ""
}
