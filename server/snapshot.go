package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/storage"
)

// Backups (docs/backup.md). A snapshot is a directory on the node's own
// host holding a storage checkpoint of the node's engine (tables hard-linked
// from DataDir/engine where the filesystem allows, else copied; a manifest
// naming exactly them; CURRENT), opened as it is by storage.Open, plus two
// files the engine ignores:
//
//	ringkv-snapshot.json   what was taken: node, incarnation, time, tables
//	ring.json              the node's ring state at that moment, if it had one
//
// Restore (offline) turns a snapshot into a data directory laid out as Start
// expects it: DataDir/engine holds the engine files, DataDir/ring.json the
// ring state when asked for. It then gives the data a new incarnation
// (replica.Reincarnate): the node the snapshot came from went on stamping
// writes with the snapshot's incarnation after the snapshot was taken, so a
// restored node stamping from the snapshot's counters would mint dots its
// peers have already seen, and they would drop its writes as known.

// SnapshotMetaFile is the name of the description a snapshot carries.
const SnapshotMetaFile = "ringkv-snapshot.json"

// ringStateFile is where membership persists the ring (membership's
// stateFile), in the data directory and in a snapshot.
const ringStateFile = "ring.json"

// engineDir is the engine's directory inside a data directory.
const engineDir = "engine"

// SnapshotInfo describes a snapshot: the JSON answer of POST /v1/snapshot
// and the content of its ringkv-snapshot.json.
type SnapshotInfo struct {
	Format      int     `json:"format"`
	DataFormat  int     `json:"data_format"` // the data directory's format (FORMAT) it was taken from
	NodeID      string  `json:"node_id"`
	Incarnation uint64  `json:"incarnation"`
	Dir         string  `json:"dir"`
	TakenAt     string  `json:"taken_at"` // RFC 3339, UTC: when the snapshot began
	Tables      int     `json:"tables"`
	Bytes       uint64  `json:"bytes"`
	Linked      int     `json:"linked"`
	Copied      int     `json:"copied"`
	Seq         uint64  `json:"seq"`
	RingState   bool    `json:"ring_state"` // ring.json was saved with it
	Seconds     float64 `json:"seconds"`
}

const snapshotFormat = 1

// Snapshot writes a consistent point-in-time copy of the node's engine into
// dir (an absolute path on this host that does not exist or is empty) while
// the node serves. Every write this node acknowledged before the call is in
// it. See docs/backup.md.
func (s *Server) Snapshot(dir string) (SnapshotInfo, error) {
	start := time.Now()
	if !filepath.IsAbs(dir) {
		return SnapshotInfo{}, fmt.Errorf("snapshot directory %q: %w", dir, errRelativeDir)
	}
	dir = filepath.Clean(dir)
	data := filepath.Clean(s.cfg.DataDir)
	if abs, err := filepath.Abs(data); err == nil {
		data = abs
	}
	if dir == data || strings.HasPrefix(dir, filepath.Join(data, engineDir)+string(filepath.Separator)) || dir == filepath.Join(data, engineDir) {
		return SnapshotInfo{}, fmt.Errorf("snapshot directory %s: %w", dir, errInsideDataDir)
	}
	cp, err := s.db.Checkpoint(dir)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("snapshot of node %s: %w", s.cfg.NodeID, err)
	}
	info := SnapshotInfo{
		Format: snapshotFormat, DataFormat: dataFormat, NodeID: s.cfg.NodeID, Incarnation: s.store.Incarnation(), Dir: dir,
		TakenAt: start.UTC().Format(time.RFC3339Nano), Tables: cp.Tables, Bytes: cp.Bytes,
		Linked: cp.Linked, Copied: cp.Copied, Seq: cp.Seq,
	}
	// The ring state as it is now (membership replaces ring.json by a
	// rename, so a read sees one whole version). For a whole-cluster
	// restore: the restored nodes can start with the ring they had.
	ring, err := os.ReadFile(filepath.Join(s.cfg.DataDir, ringStateFile))
	switch {
	case err == nil:
		if err := writeFileSync(filepath.Join(dir, ringStateFile), ring); err != nil {
			return info, fmt.Errorf("snapshot of node %s: save the ring state: %w", s.cfg.NodeID, err)
		}
		info.RingState = true
	case !errors.Is(err, fs.ErrNotExist):
		return info, fmt.Errorf("snapshot of node %s: read the ring state: %w", s.cfg.NodeID, err)
	}
	info.Seconds = time.Since(start).Seconds()
	meta, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return info, fmt.Errorf("snapshot of node %s: %w", s.cfg.NodeID, err)
	}
	if err := writeFileSync(filepath.Join(dir, SnapshotMetaFile), append(meta, '\n')); err != nil {
		return info, fmt.Errorf("snapshot of node %s: %w", s.cfg.NodeID, err)
	}
	if err := syncDir(dir); err != nil {
		return info, fmt.Errorf("snapshot of node %s: %w", s.cfg.NodeID, err)
	}
	info.Seconds = time.Since(start).Seconds()
	s.cfg.Logf("node %s: snapshot of %d tables (%d bytes) into %s in %.3fs", s.cfg.NodeID, info.Tables, info.Bytes, dir, info.Seconds)
	return info, nil
}

var (
	errRelativeDir   = errors.New("must be an absolute path on the node's host")
	errInsideDataDir = errors.New("must not be the node's data directory or inside its engine directory")
)

// serveSnapshot is POST /v1/snapshot?dir=ABSOLUTE-DIR (or a JSON body
// {"dir": "..."}): a snapshot into that directory on the node's host.
func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed: POST /v1/snapshot?dir=ABSOLUTE-DIR", http.StatusMethodNotAllowed)
		return
	}
	dir := r.URL.Query().Get("dir")
	if dir == "" && r.Body != nil {
		var body struct {
			Dir string `json:"dir"`
		}
		raw, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if len(strings.TrimSpace(string(raw))) > 0 {
			if err := json.Unmarshal(raw, &body); err != nil {
				http.Error(w, `body: want JSON {"dir": "/absolute/path"}: `+err.Error(), http.StatusBadRequest)
				return
			}
			dir = body.Dir
		}
	}
	if dir == "" {
		http.Error(w, `name the snapshot directory: POST /v1/snapshot?dir=/absolute/path (or a body {"dir": "/absolute/path"})`, http.StatusBadRequest)
		return
	}
	if err := s.snapshotAllowed(dir); err != nil {
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	info, err := s.Snapshot(dir)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, storage.ErrCheckpointDirNotEmpty) || errors.Is(err, errRelativeDir) || errors.Is(err, errInsideDataDir) {
			code = http.StatusBadRequest
		}
		http.Error(w, err.Error(), code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(info)
}

// RestoreOptions change what Restore does.
type RestoreOptions struct {
	// Ring also restores the ring state saved with the snapshot
	// (ring.json), for a whole cluster restored from one backup. Without
	// it the node learns the ring from the cluster it joins.
	Ring bool
	// Copy copies the tables even where hard links would work (a link
	// shares the snapshot's files, which are never modified, but a backup
	// that must not share disk blocks with a live node wants copies).
	Copy bool
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	// Snapshot is the snapshot's description (zero for a bare storage
	// checkpoint without ringkv-snapshot.json).
	Snapshot SnapshotInfo
	// DataDir is the restored data directory; the engine is in
	// DataDir/engine.
	DataDir string
	// Tables, Bytes, Linked, Copied: the tables brought in.
	Tables         int
	Bytes          int64
	Linked, Copied int
	// RingState: ring.json was restored.
	RingState bool
	// OldIncarnation is the snapshot's incarnation, Incarnation the new
	// one the restored node will stamp its writes with.
	OldIncarnation, Incarnation uint64
}

// Restore prepares dataDir (which must not exist or be empty) from the
// snapshot in from, offline: the engine files go to dataDir/engine (tables
// hard-linked when from is on the same filesystem and opts.Copy is off,
// else copied; everything fsynced), the engine is opened once to check it,
// and its data is given a new incarnation. Start a node on dataDir with
// the snapshot's node ID and anti-entropy on: it catches up with the
// writes made after the snapshot from the other replicas. On failure what
// Restore wrote is removed.
func Restore(from, dataDir string, opts RestoreOptions) (res RestoreResult, err error) {
	res.DataDir = dataDir
	fail := func(err error) (RestoreResult, error) {
		return res, fmt.Errorf("restore %s into %s: %w", from, dataDir, err)
	}
	names, err := os.ReadDir(from)
	if err != nil {
		return fail(fmt.Errorf("read the snapshot: %w", err))
	}
	has := map[string]bool{}
	for _, e := range names {
		has[e.Name()] = true
	}
	if !has["CURRENT"] {
		return fail(errors.New("not a snapshot: it has no CURRENT (a snapshot that did not finish has none)"))
	}
	if has[SnapshotMetaFile] {
		raw, err := os.ReadFile(filepath.Join(from, SnapshotMetaFile))
		if err != nil {
			return fail(err)
		}
		if err := json.Unmarshal(raw, &res.Snapshot); err != nil {
			return fail(fmt.Errorf("%s: %w", SnapshotMetaFile, err))
		}
		if res.Snapshot.Format != snapshotFormat {
			return fail(fmt.Errorf("%s: format %d, this release reads %d", SnapshotMetaFile, res.Snapshot.Format, snapshotFormat))
		}
		if res.Snapshot.DataFormat > dataFormat {
			return fail(fmt.Errorf("the snapshot was taken from a data directory of format %d, written by a newer ringkv; this binary reads format %d and older: restore it with the newer binary", res.Snapshot.DataFormat, dataFormat))
		}
	}
	if opts.Ring && !has[ringStateFile] {
		return fail(fmt.Errorf("the ring state was asked for, but the snapshot holds no %s", ringStateFile))
	}

	// The target: absent or empty; held under the data directory's lock
	// while restoring, so that no node starts on it halfway.
	existing, err := os.ReadDir(dataDir)
	switch {
	case err == nil && len(existing) > 0:
		return fail(fmt.Errorf("the data directory is not empty (it holds %s...); restore only into an empty or new directory", existing[0].Name()))
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fail(err)
	}
	createdDataDir := errors.Is(err, fs.ErrNotExist)
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return fail(err)
	}
	engine := filepath.Join(dataDir, engineDir)
	defer func() {
		if err != nil {
			os.RemoveAll(engine)
			if res.RingState {
				os.Remove(filepath.Join(dataDir, ringStateFile))
			}
			os.Remove(filepath.Join(dataDir, formatFileName))
		}
		lock.Close()
		if err != nil {
			os.Remove(filepath.Join(dataDir, "LOCK"))
			if createdDataDir {
				os.Remove(dataDir)
			}
		}
	}()
	if err := os.Mkdir(engine, 0o755); err != nil {
		return fail(err)
	}
	for _, e := range names {
		name := e.Name()
		if !isEngineFile(name) || !e.Type().IsRegular() {
			continue // the description, ring.json, LOCK, quarantine/, temporary files
		}
		src, dst := filepath.Join(from, name), filepath.Join(engine, name)
		// Tables (and logs, in a bare engine copy) are never modified
		// once written, and the engine replaces CURRENT and the manifest
		// by new files at its first open: a link shares nothing that
		// changes. The small CURRENT and manifest are copied all the same.
		linkable := strings.HasSuffix(name, ".sst") && !opts.Copy
		if linkable && os.Link(src, dst) == nil {
			res.Linked++
		} else {
			if err := copyFileSync(src, dst); err != nil {
				return fail(err)
			}
			if strings.HasSuffix(name, ".sst") {
				res.Copied++
			}
		}
		if strings.HasSuffix(name, ".sst") {
			fi, err := os.Stat(dst)
			if err != nil {
				return fail(err)
			}
			res.Tables++
			res.Bytes += fi.Size()
		}
	}
	if err := syncDir(engine); err != nil {
		return fail(err)
	}
	if opts.Ring {
		raw, err := os.ReadFile(filepath.Join(from, ringStateFile))
		if err != nil {
			return fail(err)
		}
		if err := writeFileSync(filepath.Join(dataDir, ringStateFile), raw); err != nil {
			return fail(err)
		}
		res.RingState = true
	}
	// The data directory's format (server/format.go), as Start would
	// record it for a new directory; fsyncs the directory too.
	if err := writeDataFormat(dataDir); err != nil {
		return fail(err)
	}
	if createdDataDir {
		if err := syncDir(filepath.Dir(filepath.Clean(dataDir))); err != nil {
			return fail(err)
		}
	}

	// Open it once: checks the manifest and every table's size and
	// footer, and records the new incarnation (a synced write).
	db, err := storage.Open(engine, &storage.Options{RefuseCorruptTablesAtOpen: true})
	if err != nil {
		return fail(fmt.Errorf("open the restored engine: %w", err))
	}
	res.OldIncarnation, res.Incarnation, err = replica.Reincarnate(db)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close the restored engine: %w", cerr)
	}
	if err != nil {
		return fail(err)
	}
	return res, nil
}

// isEngineFile: a name the engine keeps in its directory and a restore
// brings over.
func isEngineFile(name string) bool {
	return name == "CURRENT" || strings.HasPrefix(name, "MANIFEST-") ||
		strings.HasSuffix(name, ".sst") || strings.HasSuffix(name, ".log")
}

// copyFileSync copies src to dst (a new file) and fsyncs it.
func copyFileSync(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dst, err)
	}
	return nil
}

// writeFileSync writes a new file durably (temporary name, fsync, rename;
// the caller syncs the directory).
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s for sync: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// snapshotAllowed keeps snapshots under --snapshot-root: a client (any
// user: there are no roles) must not make the node write where it likes.
// Without users and without a root, any absolute directory is allowed.
func (s *Server) snapshotAllowed(dir string) error {
	root := s.cfg.SnapshotRoot
	if root == "" {
		if s.sec.users != nil {
			return errors.New("snapshots over the API need --snapshot-root on a node with users: they may only be written under it")
		}
		return nil
	}
	clean := filepath.Clean(dir)
	// The parent must resolve (through symbolic links) under the root.
	parent, err := filepath.EvalSymlinks(filepath.Dir(clean))
	if err != nil {
		return fmt.Errorf("snapshot directory %s: %w", dir, err)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("--snapshot-root %s: %w", root, err)
	}
	target := filepath.Join(parent, filepath.Base(clean))
	if rel, err := filepath.Rel(realRoot, target); err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return fmt.Errorf("snapshot directory %s is not under --snapshot-root %s", dir, root)
	}
	return nil
}
