package storage

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/manifest"
	"github.com/ringkv/ringkv/storage/vfs"
)

// l0Table is an L0 table covering the user keys [smallest, largest].
func l0Table(smallest, largest string) *tableFile {
	return &tableFile{meta: manifest.FileMeta{
		Smallest: base.MakeInternalKey(nil, []byte(smallest), 1, base.KindSet),
		Largest:  base.MakeInternalKey(nil, []byte(largest), 1, base.KindSet),
	}}
}

func TestL0DepthOf(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ranges [][2]string
		want   int
	}{
		{"empty", nil, 0},
		{"one", [][2]string{{"a", "z"}}, 1},
		{"one flush cut in four", [][2]string{{"a", "f"}, {"g", "m"}, {"n", "s"}, {"t", "z"}}, 1},
		{"ranges are inclusive", [][2]string{{"a", "c"}, {"c", "f"}}, 2},
		{"two flushes", [][2]string{{"a", "f"}, {"g", "z"}, {"b", "h"}, {"i", "y"}}, 2},
		{"nested", [][2]string{{"a", "z"}, {"c", "d"}, {"c", "c"}, {"x", "y"}}, 3},
		{"four flushes of one key", [][2]string{{"k", "k"}, {"k", "k"}, {"k", "k"}, {"k", "k"}}, 4},
	} {
		var files []*tableFile
		for _, r := range tc.ranges {
			files = append(files, l0Table(r[0], r[1]))
		}
		if got := l0DepthOf(files); got != tc.want {
			t.Errorf("%s: l0DepthOf = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestL0DepthOfMatchesACount checks l0DepthOf against counting, for every
// key, the tables that hold it.
func TestL0DepthOfMatchesACount(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key := func(i int) string { return fmt.Sprintf("k%02d", i) }
	for round := range 500 {
		n := rng.IntN(12)
		var files []*tableFile
		var ranges [][2]int
		for range n {
			a, b := rng.IntN(40), rng.IntN(40)
			a, b = min(a, b), max(a, b)
			ranges = append(ranges, [2]int{a, b})
			files = append(files, l0Table(key(a), key(b)))
		}
		want := 0
		for k := range 40 {
			in := 0
			for _, r := range ranges {
				if r[0] <= k && k <= r[1] {
					in++
				}
			}
			want = max(want, in)
		}
		if got := l0DepthOf(files); got != want {
			t.Fatalf("round %d, ranges %v: l0DepthOf = %d, want %d", round, ranges, got, want)
		}
	}
}

// l0TestOptions: every flush is cut into several tables, and L0 compacts
// at a depth of 2.
func l0TestOptions() *Options {
	return &Options{
		FS:                  vfs.NewMem(),
		Sync:                SyncNone,
		MemTableSize:        256 << 10,
		TargetFileSize:      16 << 10,
		BlockSize:           1 << 10,
		L0CompactionTrigger: 2,
		LBaseMaxBytes:       64 << 20,
	}
}

// writeAndFlush writes keys prefix+"%06d" for i in [from, to) and flushes.
func writeAndFlush(t *testing.T, db *DB, prefix string, from, to int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(from), uint64(to)))
	value := make([]byte, 100) // random, so that compression keeps the tables many
	for i := from; i < to; i++ {
		for j := range value {
			value[j] = byte(rng.Uint32())
		}
		if err := db.Set(fmt.Appendf(nil, "%s%06d", prefix, i), value); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
}

// waitForCompactions waits until the engine has run at least n compactions.
func waitForCompactions(t *testing.T, db *DB, n uint64) Metrics {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := db.Metrics()
		if m.Compactions >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d compactions after 10 s, want %d (L0: %d tables, depth %d)", m.Compactions, n, m.Levels[0].Tables, m.L0Depth)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAFlushCutInManyTablesCountsOnceTowardsL0Compaction: one flush adds
// one to L0's depth however many tables it writes, so it does not by itself
// start an L0 compaction (which rewrites every L1 table its range covers);
// the second flush over the same keys does.
func TestAFlushCutInManyTablesCountsOnceTowardsL0Compaction(t *testing.T) {
	db, err := Open("db", l0TestOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	writeAndFlush(t, db, "key", 0, 1000)
	time.Sleep(100 * time.Millisecond) // room for a compaction, if one were due
	m := db.Metrics()
	if m.L0Depth != 1 || m.Compactions != 0 {
		t.Fatalf("after one flush: L0 %d tables, depth %d, %d compactions; want depth 1 and no compaction",
			m.Levels[0].Tables, m.L0Depth, m.Compactions)
	}
	if m.Levels[0].Tables < 3 {
		t.Fatalf("the flush wrote %d L0 tables; the test needs several", m.Levels[0].Tables)
	}

	writeAndFlush(t, db, "key", 0, 1000)
	m = waitForCompactions(t, db, 1)
	if m.Levels[0].Tables != 0 || m.L0Depth != 0 || m.Levels[1].Tables == 0 {
		t.Fatalf("after the L0 compaction: L0 %d tables, depth %d; L1 %d tables", m.Levels[0].Tables, m.L0Depth, m.Levels[1].Tables)
	}
	for _, i := range []int{0, 500, 999} {
		if _, err := db.Get(fmt.Appendf(nil, "key%06d", i)); err != nil {
			t.Fatalf("key %d after the compaction: %v", i, err)
		}
	}
}

// TestDisjointFlushesCompactAtTheFileTrigger: flushes of disjoint key
// ranges (sequential keys) leave L0 one table deep, and the table count
// still starts a compaction.
func TestDisjointFlushesCompactAtTheFileTrigger(t *testing.T) {
	o := l0TestOptions()
	o.L0CompactionFileTrigger = 12
	db, err := Open("db", o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for f := 0; ; f++ {
		writeAndFlush(t, db, "key", f*1000, (f+1)*1000)
		m := db.Metrics()
		if m.Compactions > 0 {
			break
		}
		if m.L0Depth != 1 {
			t.Fatalf("after %d disjoint flushes: L0 depth %d, want 1", f+1, m.L0Depth)
		}
		if m.Levels[0].Tables >= o.L0CompactionFileTrigger {
			waitForCompactions(t, db, 1)
			break
		}
		if f == 20 {
			t.Fatalf("no compaction after 21 disjoint flushes (L0: %d tables)", m.Levels[0].Tables)
		}
	}
}
