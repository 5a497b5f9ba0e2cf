package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/ringkv/ringkv/storage/vfs"
)

// optionSets are the configurations every model test runs under: they push
// the engine into its corners (many tiny tables, one-entry blocks, no bloom
// filters, no compression, constant compaction).
var optionSets = map[string]func() *Options{
	"defaults": func() *Options { return &Options{} },
	"tiny-memtable": func() *Options {
		return &Options{MemTableSize: 16 << 10, L0CompactionTrigger: 2, LBaseMaxBytes: 64 << 10,
			TargetFileSize: 16 << 10, LevelMultiplier: 4}
	},
	"tiny-blocks": func() *Options {
		return &Options{MemTableSize: 64 << 10, BlockSize: 64, BlockRestartInterval: 1,
			TargetFileSize: 32 << 10, LBaseMaxBytes: 128 << 10, BlockCacheSize: 4 << 10}
	},
	"memtable-index": func() *Options {
		return &Options{MemTableSize: 32 << 10, MemTableIndex: true, L0CompactionTrigger: 2,
			TargetFileSize: 16 << 10, LBaseMaxBytes: 64 << 10}
	},
	// Model keys are "key-%06d": the fingers' field is the digits, ordered
	// rather than hashed, which must change no result.
	"memtable-fingers": func() *Options {
		return &Options{MemTableSize: 32 << 10, MemTableIndex: true, MemTableFingers: true, MemTableFingerOffset: 4,
			L0CompactionTrigger: 2, TargetFileSize: 16 << 10, LBaseMaxBytes: 64 << 10}
	},
	"no-bloom-no-compression": func() *Options {
		return &Options{MemTableSize: 32 << 10, BloomBitsPerKey: -1, Compression: NoCompression,
			L0CompactionTrigger: 2, TargetFileSize: 8 << 10, LBaseMaxBytes: 32 << 10}
	},
}

// model is the expected state: a plain map.
type model map[string]string

func (m model) clone() model {
	c := make(model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// checkDB verifies every key of the key space against m with Get, and a
// bounded scan against the sorted model.
func checkDB(t *testing.T, rng *rand.Rand, get func([]byte) ([]byte, error), newIter func(*IterOptions) *Iterator, m model, keySpace int) {
	t.Helper()
	for i := 0; i < keySpace; i++ {
		k := modelKey(i)
		v, err := get(k)
		want, ok := m[string(k)]
		if !ok {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("get %q: want not found, got %q, %v", k, v, err)
			}
			continue
		}
		if err != nil || string(v) != want {
			t.Fatalf("get %q: want %q, got %q, %v", k, want, v, err)
		}
	}
	// A scan over a random range.
	lo, hi := rng.IntN(keySpace), rng.IntN(keySpace)
	if lo > hi {
		lo, hi = hi, lo
	}
	opts := &IterOptions{LowerBound: modelKey(lo), UpperBound: modelKey(hi)}
	if rng.IntN(4) == 0 {
		opts = nil
	}
	var want []string
	for k := range m {
		if opts == nil || (k >= string(opts.LowerBound) && k < string(opts.UpperBound)) {
			want = append(want, k)
		}
	}
	sort.Strings(want)
	it := newIter(opts)
	var got []string
	for ok := it.First(); ok; ok = it.Next() {
		got = append(got, string(it.Key()))
		if string(it.Value()) != m[string(it.Key())] {
			t.Fatalf("scan: key %q value %q, want %q", it.Key(), it.Value(), m[string(it.Key())])
		}
	}
	if err := it.Close(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("scan %v: got %d keys, want %d\n got %q\nwant %q", opts, len(got), len(want), head(got), head(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("scan: key %d is %q, want %q", i, got[i], want[i])
		}
	}
	// SeekGE to a random key must land on the model's successor.
	if len(want) > 0 && opts != nil {
		target := modelKey(lo + rng.IntN(hi-lo+1))
		it := newIter(opts)
		idx := sort.SearchStrings(want, string(target))
		ok := it.SeekGE(target)
		if (idx < len(want)) != ok || (ok && string(it.Key()) != want[idx]) {
			t.Fatalf("SeekGE(%q): got %v %q, want index %d of %d", target, ok, it.Key(), idx, len(want))
		}
		it.Close()
	}
}

func head(s []string) []string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

func modelKey(i int) []byte { return fmt.Appendf(nil, "key-%06d", i) }

func modelValue(rng *rand.Rand, i int) []byte {
	n := rng.IntN(300)
	if rng.IntN(50) == 0 {
		n = 4000 + rng.IntN(20000) // larger than a block
	}
	v := make([]byte, n)
	for j := range v {
		v[j] = byte('a' + (i+j)%26)
	}
	return fmt.Appendf(v[:0:0], "v%d-%s", rng.Uint32(), v)
}

// TestModelRandomized runs random operations against the engine and a map
// side by side, with flushes, compactions, snapshots and reopens in between,
// and checks after every step group that the engine and the map agree.
func TestModelRandomized(t *testing.T) {
	for name, mk := range optionSets {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for seed := uint64(1); seed <= 3; seed++ {
				runModel(t, mk, seed, 3000)
			}
		})
	}
}

func runModel(t *testing.T, mk func() *Options, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	fs := vfs.NewMem()
	opts := mk()
	opts.FS = fs
	db, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	keySpace := 400 + rng.IntN(400)
	m := model{}
	type snap struct {
		s *Snapshot
		m model
	}
	var snaps []snap
	for step := 0; step < steps; step++ {
		switch r := rng.IntN(100); {
		case r < 45:
			i := rng.IntN(keySpace)
			v := modelValue(rng, i)
			if err := db.Set(modelKey(i), v); err != nil {
				t.Fatalf("step %d: set: %v", step, err)
			}
			m[string(modelKey(i))] = string(v)
		case r < 60:
			i := rng.IntN(keySpace)
			if err := db.Delete(modelKey(i)); err != nil {
				t.Fatalf("step %d: delete: %v", step, err)
			}
			delete(m, string(modelKey(i)))
		case r < 75:
			b := db.NewBatch()
			for n := rng.IntN(20); n >= 0; n-- {
				i := rng.IntN(keySpace)
				if rng.IntN(3) == 0 {
					b.Delete(modelKey(i))
					delete(m, string(modelKey(i)))
				} else {
					v := modelValue(rng, i)
					b.Set(modelKey(i), v)
					m[string(modelKey(i))] = string(v)
				}
			}
			if err := db.Apply(b, nil); err != nil {
				t.Fatalf("step %d: apply: %v", step, err)
			}
		case r < 85:
			i := rng.IntN(keySpace)
			v, err := db.Get(modelKey(i))
			want, ok := m[string(modelKey(i))]
			if ok != (err == nil) || (ok && string(v) != want) {
				t.Fatalf("step %d: get %q = %q, %v; want %q (present %v)", step, modelKey(i), v, err, want, ok)
			}
		case r < 88:
			if len(snaps) < 3 {
				snaps = append(snaps, snap{db.NewSnapshot(), m.clone()})
			}
		case r < 90:
			if len(snaps) > 0 {
				s := snaps[0]
				checkDB(t, rng, s.s.Get, s.s.NewIter, s.m, keySpace)
				s.s.Close()
				snaps = snaps[1:]
			}
		case r < 93:
			if err := db.Flush(); err != nil {
				t.Fatalf("step %d: flush: %v", step, err)
			}
		case r < 95:
			if err := db.Compact(); err != nil {
				t.Fatalf("step %d: compact: %v", step, err)
			}
		case r < 97:
			checkDB(t, rng, db.Get, db.NewIter, m, keySpace)
		default:
			for _, s := range snaps {
				s.s.Close()
			}
			snaps = nil
			if err := db.Close(); err != nil {
				t.Fatalf("step %d: close: %v", step, err)
			}
			if db, err = Open("db", opts); err != nil {
				t.Fatalf("step %d: reopen: %v", step, err)
			}
			checkDB(t, rng, db.Get, db.NewIter, m, keySpace)
		}
	}
	for _, s := range snaps {
		checkDB(t, rng, s.s.Get, s.s.NewIter, s.m, keySpace)
		s.s.Close()
	}
	checkDB(t, rng, db.Get, db.NewIter, m, keySpace)
	if err := db.Compact(); err != nil {
		t.Fatal(err)
	}
	checkDB(t, rng, db.Get, db.NewIter, m, keySpace)
}

func TestLimits(t *testing.T) {
	db, err := Open("db", &Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Set(make([]byte, MaxKeySize+1), nil); !errors.Is(err, ErrKeyTooLarge) {
		t.Fatalf("oversized key: got %v", err)
	}
	if err := db.Set([]byte("k"), make([]byte, MaxValueSize+1)); !errors.Is(err, ErrValueTooLarge) {
		t.Fatalf("oversized value: got %v", err)
	}
	if err := db.Set(nil, []byte("v")); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("empty key: got %v", err)
	}
	// A refused batch writes nothing, not even its valid operations.
	b := db.NewBatch()
	b.Set([]byte("ok"), []byte("v"))
	b.Set(make([]byte, MaxKeySize+1), nil)
	if err := db.Apply(b, nil); !errors.Is(err, ErrKeyTooLarge) {
		t.Fatalf("batch with oversized key: got %v", err)
	}
	if _, err := db.Get([]byte("ok")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused batch left a write behind: %v", err)
	}
	// The largest allowed key and a large value work and survive a reopen.
	big := bytes.Repeat([]byte("k"), MaxKeySize)
	val := bytes.Repeat([]byte("v"), 9<<20) // larger than the memtable
	if err := db.Set(big, val); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Get(big); err != nil || !bytes.Equal(got, val) {
		t.Fatalf("large value: %d bytes, %v", len(got), err)
	}
}

// Stage fixes a batch's place in the commit order when it returns: a batch
// staged after it commits after it whichever commit function runs first,
// and a batch with an error reports it from commit.
func TestStageOrder(t *testing.T) {
	db, err := Open("db", &Options{FS: vfs.NewMem(), Sync: SyncBatch})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for round := range 50 {
		first, second := db.NewBatch(), db.NewBatch()
		first.Set([]byte("k"), []byte(fmt.Sprintf("first-%d", round)))
		second.Set([]byte("k"), []byte(fmt.Sprintf("second-%d", round)))
		c1 := db.Stage(first, nil)
		c2 := db.Stage(second, nil)
		errs := make(chan error, 2)
		go func() { errs <- c2() }() // the later stage may be waited for first
		go func() { errs <- c1() }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if v, err := db.Get([]byte("k")); err != nil || string(v) != fmt.Sprintf("second-%d", round) {
			t.Fatalf("round %d: k = %q, %v; want the later stage's value", round, v, err)
		}
	}
	bad := db.NewBatch()
	bad.Set(make([]byte, MaxKeySize+1), nil)
	if err := db.Stage(bad, nil)(); !errors.Is(err, ErrKeyTooLarge) {
		t.Fatalf("staging an invalid batch: commit returned %v", err)
	}
}
