package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// stateFile is the name of the persisted table inside DataDir.
const stateFile = "ring.json"

// diskState is the content of ring.json.
type diskState struct {
	Format int    `json:"format"`
	NodeID string `json:"node_id"`
	// Ring is the ring configuration in readable form; Start refuses to
	// run with a different one.
	Ring    string       `json:"ring"`
	Records []wireRecord `json:"records"`
	// Repl is the cluster's replication once set-replicas changed it.
	Repl *wireRepl `json:"repl,omitempty"`
}

// loadState reads DataDir/ring.json. A missing file is not an error: it
// returns nil records.
func loadState(dir, nodeID, ringCfg string) ([]Record, *wireRepl, error) {
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("membership: %w", err)
	}
	var ds diskState
	if err := json.Unmarshal(b, &ds); err != nil {
		return nil, nil, fmt.Errorf("membership: %s is corrupt: %w", path, err)
	}
	switch {
	case ds.Format != stateFormat:
		return nil, nil, fmt.Errorf("membership: %s has format %d, want %d", path, ds.Format, stateFormat)
	case ds.NodeID != nodeID:
		return nil, nil, fmt.Errorf("membership: %s belongs to node %q, not %q", path, ds.NodeID, nodeID)
	case ds.Ring != ringCfg:
		return nil, nil, fmt.Errorf("membership: %s was written with ring config %q, now %q; the ring config is fixed when the cluster is created", path, ds.Ring, ringCfg)
	}
	recs := make([]Record, 0, len(ds.Records))
	for _, w := range ds.Records {
		r, err := fromWire(w)
		if err != nil {
			return nil, nil, fmt.Errorf("membership: %s: %w", path, err)
		}
		recs = append(recs, r)
	}
	return recs, ds.Repl, nil
}

// saveState writes ring.json atomically and durably: a temp file in the same
// directory, fsync, rename over the old file, fsync of the directory.
func saveState(dir string, ds diskState) error {
	b, err := json.MarshalIndent(ds, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, stateFile+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateFile)); err != nil {
		return err
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
