package storage

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/ringkv/ringkv/storage/base"
	"github.com/ringkv/ringkv/storage/cache"
	"github.com/ringkv/ringkv/storage/manifest"
	"github.com/ringkv/ringkv/storage/sstable"
	"github.com/ringkv/ringkv/storage/vfs"
)

// tableFile is one live (or recently obsolete) table. It is shared by every
// version that lists it and deleted from disk once no version does.
type tableFile struct {
	meta manifest.FileMeta
	env  *tableEnv
	// refs counts the versions that list this table.
	refs atomic.Int32

	openOnce sync.Once
	reader   *sstable.Reader
	openErr  error

	// compacting is set (under db.mu) while a compaction reads this table.
	compacting bool
	// quarantined is set when the table left the version as damaged: its
	// file is moved aside, never deleted.
	quarantined atomic.Bool
}

// open returns the table's reader, opening it on first use.
func (f *tableFile) open() (*sstable.Reader, error) {
	f.openOnce.Do(func() {
		name := f.env.fs.PathJoin(f.env.dirname, tableName(f.meta.Num))
		file, err := f.env.fs.Open(name)
		if err != nil && f.quarantined.Load() {
			// A reader that still holds a version listing the table opens
			// it where quarantine moved it.
			name = f.env.fs.PathJoin(f.env.dirname, quarantineDir, tableName(f.meta.Num))
			file, err = f.env.fs.Open(name)
		}
		if err != nil {
			f.openErr = fmt.Errorf("open table %s: %w", name, err)
			return
		}
		r, err := sstable.Open(file, int64(f.meta.Size), sstable.ReaderOptions{Cache: f.env.cache, FileNum: f.meta.Num})
		if err != nil {
			file.Close()
			f.openErr = fmt.Errorf("open table %s: %w", name, err)
			return
		}
		f.reader = r
	})
	return f.reader, f.openErr
}

func (f *tableFile) get(key []byte, seq base.SeqNum) ([]byte, base.Kind, bool, error) {
	r, err := f.open()
	if err != nil {
		return nil, 0, false, err
	}
	v, k, ok, err := r.Get(key, seq)
	if err != nil {
		return nil, 0, false, fmt.Errorf("table %06d: %w", f.meta.Num, err)
	}
	return v, k, ok, nil
}

// close releases the reader of an obsolete table.
func (f *tableFile) close() {
	f.openOnce.Do(func() { f.openErr = errors.New("table is obsolete") })
	if f.reader != nil {
		f.reader.Close()
	}
}

func (f *tableFile) smallestUser() []byte { return base.UserKey(f.meta.Smallest) }
func (f *tableFile) largestUser() []byte  { return base.UserKey(f.meta.Largest) }

// version is an immutable list of the tables of each level. Readers hold a
// reference to the version they read so that its tables are not deleted
// under them.
type version struct {
	levels [NumLevels][]*tableFile
	// l0Depth is the most L0 tables any one user key lies in (see
	// l0DepthOf), computed when the version is built.
	l0Depth int
	refs    atomic.Int32
	env     *tableEnv
}

// tableEnv is what a table needs to open its reader and to remove itself
// once obsolete.
type tableEnv struct {
	fs      vfs.FS
	dirname string
	cache   *cache.Cache
	// obsolete is called with a table that no version lists any more.
	obsolete func(*tableFile)
}

func (v *version) ref() { v.refs.Add(1) }

func (v *version) unref() {
	if n := v.refs.Add(-1); n == 0 {
		for level := range v.levels {
			for _, f := range v.levels[level] {
				if f.refs.Add(-1) == 0 {
					v.env.obsolete(f)
				}
			}
		}
	} else if n < 0 {
		panic("storage: version reference count below zero")
	}
}

// find returns the table numbered num and its level, or nil.
func (v *version) find(num uint64) (*tableFile, int) {
	for level := range v.levels {
		for _, f := range v.levels[level] {
			if f.meta.Num == num {
				return f, level
			}
		}
	}
	return nil, -1
}

func (v *version) numFiles(level int) int { return len(v.levels[level]) }

// l0DepthOf returns the most tables of files (L0 tables, whose ranges may
// overlap) that any one user key lies in: how many L0 tables a read may
// have to search, which is what L0's triggers bound. A flush cuts its
// output into tables of TargetFileSize that do not overlap one another,
// so the depth grows by one per flush while the table count grows by
// several; counting tables would start an L0 compaction (which rewrites
// all of L1 that the tables overlap) after every flush.
func l0DepthOf(files []*tableFile) int {
	n := len(files)
	if n < 2 {
		return n
	}
	starts := make([][]byte, n)
	ends := make([][]byte, n)
	for i, f := range files {
		starts[i], ends[i] = f.smallestUser(), f.largestUser()
	}
	sort.Slice(starts, func(i, j int) bool { return bytes.Compare(starts[i], starts[j]) < 0 })
	sort.Slice(ends, func(i, j int) bool { return bytes.Compare(ends[i], ends[j]) < 0 })
	depth, deepest, e := 0, 0, 0
	for _, start := range starts {
		// Ranges are inclusive: a table that ends at start still covers it.
		for e < n && bytes.Compare(ends[e], start) < 0 {
			depth--
			e++
		}
		depth++
		deepest = max(deepest, depth)
	}
	return deepest
}

func (v *version) levelBytes(level int) uint64 {
	var n uint64
	for _, f := range v.levels[level] {
		n += f.meta.Size
	}
	return n
}

// overlaps returns the tables of level whose user-key range intersects
// [smallest, largest] (user keys; nil largest means unbounded).
func (v *version) overlaps(level int, smallest, largest []byte) []*tableFile {
	var out []*tableFile
	for _, f := range v.levels[level] {
		if largest != nil && bytes.Compare(f.smallestUser(), largest) > 0 {
			continue
		}
		if smallest != nil && bytes.Compare(f.largestUser(), smallest) < 0 {
			continue
		}
		out = append(out, f)
	}
	return out
}

// applyEdit returns a new version: v with the edit's deletions and additions.
// Tables of levels >= 1 are kept sorted by smallest key; L0 tables by
// largest sequence number, newest first, which is the order reads search
// them in.
//
// The new version holds one reference (its creator's) and a reference on
// each of its tables.
func (v *version) applyEdit(edit *manifest.VersionEdit) (*version, error) {
	nv := &version{env: v.env}
	existing := make(map[uint64]*tableFile)
	for level := range v.levels {
		for _, f := range v.levels[level] {
			existing[f.meta.Num] = f
		}
	}
	deleted := make(map[[2]uint64]bool, len(edit.Deleted))
	for _, d := range edit.Deleted {
		deleted[[2]uint64{uint64(d.Level), d.Num}] = true
	}
	for level := range v.levels {
		for _, f := range v.levels[level] {
			if deleted[[2]uint64{uint64(level), f.meta.Num}] {
				continue
			}
			nv.levels[level] = append(nv.levels[level], f)
		}
	}
	for _, a := range edit.Added {
		if a.Level < 0 || a.Level >= NumLevels {
			return nil, base.CorruptionErrorf("manifest adds table %d at level %d", a.Meta.Num, a.Level)
		}
		f := existing[a.Meta.Num]
		if f == nil {
			f = &tableFile{meta: a.Meta, env: v.env}
		}
		nv.levels[a.Level] = append(nv.levels[a.Level], f)
	}
	sort.SliceStable(nv.levels[0], func(i, j int) bool {
		a, b := nv.levels[0][i].meta, nv.levels[0][j].meta
		if a.LargestSeq != b.LargestSeq {
			return a.LargestSeq > b.LargestSeq
		}
		return a.Num > b.Num
	})
	for level := 1; level < NumLevels; level++ {
		files := nv.levels[level]
		sort.Slice(files, func(i, j int) bool {
			return base.Compare(files[i].meta.Smallest, files[j].meta.Smallest) < 0
		})
		for i := 1; i < len(files); i++ {
			if bytes.Compare(files[i-1].largestUser(), files[i].smallestUser()) >= 0 {
				return nil, base.CorruptionErrorf("level %d tables %d and %d overlap", level,
					files[i-1].meta.Num, files[i].meta.Num)
			}
		}
	}
	nv.l0Depth = l0DepthOf(nv.levels[0])
	nv.refs.Store(1)
	for level := range nv.levels {
		for _, f := range nv.levels[level] {
			f.refs.Add(1)
		}
	}
	return nv, nil
}

// snapshotEdit describes the whole version as one edit, the first record of
// a new manifest.
func (v *version) snapshotEdit() *manifest.VersionEdit {
	e := &manifest.VersionEdit{}
	for level := range v.levels {
		for _, f := range v.levels[level] {
			e.Added = append(e.Added, manifest.NewFile{Level: level, Meta: f.meta})
		}
	}
	return e
}

// findFile returns the index of the first table in a sorted level whose
// largest user key is >= key.
func findFile(files []*tableFile, key []byte) int {
	return sort.Search(len(files), func(i int) bool {
		return bytes.Compare(files[i].largestUser(), key) >= 0
	})
}

// File names inside an engine directory.
func tableName(num uint64) string    { return fmt.Sprintf("%06d.sst", num) }
func logName(num uint64) string      { return fmt.Sprintf("%06d.log", num) }
func manifestName(num uint64) string { return fmt.Sprintf("MANIFEST-%06d", num) }

const (
	currentName = "CURRENT"
	lockName    = "LOCK"
	tmpSuffix   = ".tmp"
	// quarantineDir is the subdirectory damaged tables are moved into.
	quarantineDir = "quarantine"
)

// parseFileName recognises engine files: kind is "table", "log" or
// "manifest".
func parseFileName(name string) (kind string, num uint64, ok bool) {
	var n uint64
	switch {
	case len(name) == len("000000.sst") || (len(name) > 4 && name[len(name)-4:] == ".sst"):
		if _, err := fmt.Sscanf(name, "%d.sst", &n); err == nil && tableName(n) == name {
			return "table", n, true
		}
	}
	if len(name) > 4 && name[len(name)-4:] == ".log" {
		if _, err := fmt.Sscanf(name, "%d.log", &n); err == nil && logName(n) == name {
			return "log", n, true
		}
	}
	if len(name) > 9 && name[:9] == "MANIFEST-" {
		if _, err := fmt.Sscanf(name, "MANIFEST-%d", &n); err == nil && manifestName(n) == name {
			return "manifest", n, true
		}
	}
	return "", 0, false
}
