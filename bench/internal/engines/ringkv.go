//go:build !noringkv

package engines

import (
	"errors"
	"fmt"

	"github.com/ringkv/ringkv/storage"
)

func init() {
	register(Engine{Name: "ringkv", Open: openRingKV, Settings: ringkvSettings})
}

func ringkvSettings(cfg Config) string {
	mode := "Sync=SyncNone, plain db.Set"
	if cfg.Sync {
		mode = "Sync=SyncBatch, plain db.Set"
	}
	return fmt.Sprintf("BlockCacheSize=%d, MemTableSize=%d, BlockSize=%d, BloomBitsPerKey=%d, "+
		"Compression=SnappyCompression, %s; other options default",
		cfg.CacheSize, cfg.MemTableSize, cfg.BlockSize, cfg.BloomBitsPerKey, mode)
}

type ringkvDB struct{ db *storage.DB }

func openRingKV(dir string, cfg Config) (DB, error) {
	opts := &storage.Options{
		Sync:            storage.SyncNone,
		MemTableSize:    cfg.MemTableSize,
		BlockSize:       cfg.BlockSize,
		BloomBitsPerKey: cfg.BloomBitsPerKey,
		Compression:     storage.SnappyCompression,
		BlockCacheSize:  cfg.CacheSize,
	}
	if cfg.Sync {
		opts.Sync = storage.SyncBatch
	}
	db, err := storage.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	return &ringkvDB{db: db}, nil
}

func (r *ringkvDB) Set(key, value []byte) error { return r.db.Set(key, value) }

func (r *ringkvDB) Get(key []byte) (int, bool, error) {
	v, err := r.db.Get(key)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return len(v), true, nil
}

func (r *ringkvDB) NewIter() (Iter, error) {
	return r.db.NewIter(&storage.IterOptions{}), nil
}

// EngineWriteAmp returns ringkv's own Metrics().WriteAmplification(), which
// uses the engine's definition of logical bytes rather than logicalBytes.
func (r *ringkvDB) EngineWriteAmp(int64) (float64, bool) {
	m := r.db.Metrics()
	return m.WriteAmplification(), true
}

func (r *ringkvDB) Close() error { return r.db.Close() }
