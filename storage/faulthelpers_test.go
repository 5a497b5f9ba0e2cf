package storage

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/ringkv/ringkv/storage/vfs"
)

// Helpers shared by the crash, error-injection and corruption tests.

// ftOp is one operation of a write: a set, or a delete if del.
type ftOp struct {
	key, value string
	del        bool
}

// ftWrite is one call that writes: a Set, a Delete or an applied batch of
// several operations. It is the unit of atomicity and of acknowledgement.
type ftWrite []ftOp

// apply commits w to db with the call its shape calls for.
func (w ftWrite) apply(db *DB) error {
	if len(w) == 1 {
		if w[0].del {
			return db.Delete([]byte(w[0].key))
		}
		return db.Set([]byte(w[0].key), []byte(w[0].value))
	}
	b := db.NewBatch()
	for _, op := range w {
		if op.del {
			b.Delete([]byte(op.key))
		} else {
			b.Set([]byte(op.key), []byte(op.value))
		}
	}
	return db.Apply(b, nil)
}

func (w ftWrite) applyTo(m map[string]string) {
	for _, op := range w {
		if op.del {
			delete(m, op.key)
		} else {
			m[op.key] = op.value
		}
	}
}

// ftModelAt is the state after the first k writes of hist.
func ftModelAt(hist []ftWrite, k int) map[string]string {
	m := map[string]string{}
	for _, w := range hist[:k] {
		w.applyTo(m)
	}
	return m
}

// ftMatchPrefix returns the k in [lo, hi] such that state equals the model
// after the first k writes of hist, or -1.
func ftMatchPrefix(hist []ftWrite, lo, hi int, state map[string]string) int {
	hi = min(hi, len(hist))
	if lo > hi {
		return -1
	}
	m := ftModelAt(hist, lo)
	for k := lo; ; k++ {
		if maps.Equal(m, state) {
			return k
		}
		if k == hi {
			return -1
		}
		hist[k].applyTo(m)
	}
}

// ftDump reads the whole state of db with a full scan and, for every key in
// getKeys, checks that Get agrees with the scan.
func ftDump(db *DB, getKeys []string) (map[string]string, error) {
	m := map[string]string{}
	it := db.NewIter(nil)
	var prev string
	for ok := it.First(); ok; ok = it.Next() {
		k := string(it.Key())
		if len(m) > 0 && k <= prev {
			it.Close()
			return nil, fmt.Errorf("scan: key %q after %q", k, prev)
		}
		prev = k
		m[k] = string(it.Value())
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	for _, k := range getKeys {
		v, err := db.Get([]byte(k))
		want, ok := m[k]
		switch {
		case !ok && !errors.Is(err, ErrNotFound):
			return nil, fmt.Errorf("get %q: scan has no value, Get gives %.40q, %v", k, v, err)
		case ok && (err != nil || string(v) != want):
			return nil, fmt.Errorf("get %q: scan has %.40q, Get gives %.40q, %v", k, want, v, err)
		}
	}
	return m, nil
}

// ftDiff describes how got differs from want, for failure messages.
func ftDiff(got, want map[string]string) string {
	var b strings.Builder
	n := 0
	keys := slices.Sorted(maps.Keys(want))
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		if gok == wok && g == w {
			continue
		}
		if n++; n > 6 {
			b.WriteString("  ...\n")
			break
		}
		fmt.Fprintf(&b, "  %s: got %s, want %s\n", k, ftShow(g, gok), ftShow(w, wok))
	}
	fmt.Fprintf(&b, "  (%d keys, want %d)", len(got), len(want))
	return b.String()
}

func ftShow(v string, ok bool) string {
	if !ok {
		return "<none>"
	}
	return fmt.Sprintf("%.24q", v)
}

// ftReadFile returns the contents of a file.
func ftReadFile(fs vfs.FS, name string) ([]byte, error) {
	f, err := fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// ftWriteFile replaces name with data, durably (a fresh inode, synced, with
// its directory synced).
func ftWriteFile(fs vfs.FS, name string, data []byte) error {
	f, err := fs.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return ftSyncDir(fs, path.Dir(name))
}

func ftSyncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ftRemoveFile removes name durably.
func ftRemoveFile(fs vfs.FS, name string) error {
	if err := fs.Remove(name); err != nil {
		return err
	}
	return ftSyncDir(fs, path.Dir(name))
}

// ftFiles lists the engine files of dir of the given kind ("log", "table",
// "manifest"), in increasing file-number order.
func ftFiles(fs vfs.FS, dir, kind string) ([]string, error) {
	names, err := fs.List(dir)
	if err != nil {
		return nil, err
	}
	type numbered struct {
		name string
		num  uint64
	}
	var out []numbered
	for _, n := range names {
		if k, num, ok := parseFileName(n); ok && k == kind {
			out = append(out, numbered{n, num})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].num < out[j].num })
	res := make([]string, len(out))
	for i, o := range out {
		res[i] = o.name
	}
	return res, nil
}
