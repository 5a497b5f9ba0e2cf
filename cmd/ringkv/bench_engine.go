package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/ringkv/ringkv/storage"
)

type engineBenchFlags struct {
	dir       string
	num       int
	valueSize int
	sync      string
	keep      bool
}

func newBenchEngineCmd() *cobra.Command {
	var f engineBenchFlags
	cmd := &cobra.Command{
		Use:   "engine",
		Short: "Run db_bench-style workloads against the storage engine on this machine",
		Long: `Runs fillseq, fillrandom, readrandom (after close and reopen), readmissing
and a full scan against ringkv's storage engine, and prints ops/s and latency
percentiles. The comparison with other engines lives in the bench/ module.`,
		RunE: func(cmd *cobra.Command, args []string) error { return runEngineBench(cmd, f) },
	}
	cmd.Flags().StringVar(&f.dir, "dir", "", "engine directory (default: a new temporary directory, removed afterwards)")
	cmd.Flags().IntVar(&f.num, "num", 200000, "number of keys")
	cmd.Flags().IntVar(&f.valueSize, "value-size", 100, "value size in bytes")
	cmd.Flags().StringVar(&f.sync, "sync", "none", "commit-log sync mode for the fills: batch, periodic or none")
	cmd.Flags().BoolVar(&f.keep, "keep", false, "keep the directory afterwards")
	return cmd
}

func benchKey(i int) []byte { return fmt.Appendf(nil, "%016d", i) }

// latencies collects per-operation durations for percentiles.
type latencies []time.Duration

func (l latencies) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := append(latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func runEngineBench(cmd *cobra.Command, f engineBenchFlags) error {
	out := cmd.OutOrStdout()
	mode, err := storage.ParseSyncMode(f.sync)
	if err != nil {
		return err
	}
	dir := f.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "ringkv-bench-"); err != nil {
			return err
		}
	}
	if !f.keep {
		defer os.RemoveAll(dir)
	}
	opts := &storage.Options{Sync: mode}
	value := make([]byte, f.valueSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	fmt.Fprintf(out, "engine directory %s, %d keys, %d-byte values, sync=%s\n\n", dir, f.num, f.valueSize, mode)
	fmt.Fprintf(out, "%-12s %12s %10s %10s\n", "workload", "ops/s", "p50", "p99")
	report := func(name string, n int, elapsed time.Duration, lat latencies) {
		fmt.Fprintf(out, "%-12s %12.0f %10s %10s\n", name, float64(n)/elapsed.Seconds(), lat.percentile(0.5), lat.percentile(0.99))
	}
	run := func(name string, n int, op func(i int) error) error {
		lat := make(latencies, 0, n)
		start := time.Now()
		for i := 0; i < n; i++ {
			t := time.Now()
			if err := op(i); err != nil {
				return fmt.Errorf("%s: op %d: %w", name, i, err)
			}
			lat = append(lat, time.Since(t))
		}
		report(name, n, time.Since(start), lat)
		return nil
	}

	db, err := storage.Open(dir+"/seq", opts)
	if err != nil {
		return err
	}
	if err := run("fillseq", f.num, func(i int) error { return db.Set(benchKey(i), value) }); err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}

	db, err = storage.Open(dir+"/random", opts)
	if err != nil {
		return err
	}
	perm := rand.Perm(f.num)
	if err := run("fillrandom", f.num, func(i int) error { return db.Set(benchKey(perm[i]), value) }); err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	if db, err = storage.Open(dir+"/random", opts); err != nil {
		return err
	}
	defer db.Close()
	if err := run("readrandom", f.num, func(i int) error {
		_, err := db.Get(benchKey(rand.IntN(f.num)))
		return err
	}); err != nil {
		return err
	}
	if err := run("readmissing", f.num, func(i int) error {
		if _, err := db.Get(benchKey(f.num + rand.IntN(f.num))); err != storage.ErrNotFound {
			return fmt.Errorf("want not found, got %v", err)
		}
		return nil
	}); err != nil {
		return err
	}
	start := time.Now()
	it := db.NewIter(nil)
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	if err := it.Close(); err != nil {
		return err
	}
	if n != f.num {
		return fmt.Errorf("scan: saw %d keys, want %d", n, f.num)
	}
	report("scan", n, time.Since(start), nil)
	fmt.Fprintf(out, "\n%s", db.Metrics())
	return nil
}
