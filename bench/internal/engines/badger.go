package engines

import (
	"errors"
	"fmt"
	"math"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

func init() {
	register(Engine{Name: "badger", Open: openBadger, Settings: badgerSettings})
}

// bloomFalsePositive converts bits per key into the false-positive rate of an
// optimally sized bloom filter: p = exp(-b·ln²2), about 0.0082 for 10 bits.
func bloomFalsePositive(bitsPerKey int) float64 {
	return math.Exp(-float64(bitsPerKey) * math.Ln2 * math.Ln2)
}

func badgerSettings(cfg Config) string {
	return fmt.Sprintf("BlockCacheSize=%d, MemTableSize=%d, BlockSize=%d, BloomFalsePositive=%.4f "+
		"(= %d bits/key), Compression=Snappy, SyncWrites=%t, Logger=nil; one db.Update per Set, "+
		"one db.View per Get; other options default (IndexCacheSize=0 keeps table indexes in memory, "+
		"ValueThreshold=1 MiB keeps values in the LSM tree)",
		cfg.CacheSize, cfg.MemTableSize, cfg.BlockSize, bloomFalsePositive(cfg.BloomBitsPerKey),
		cfg.BloomBitsPerKey, cfg.Sync)
}

type badgerDB struct{ db *badger.DB }

func openBadger(dir string, cfg Config) (DB, error) {
	opts := badger.DefaultOptions(dir).
		WithBlockCacheSize(cfg.CacheSize).
		WithMemTableSize(int64(cfg.MemTableSize)).
		WithBlockSize(cfg.BlockSize).
		WithBloomFalsePositive(bloomFalsePositive(cfg.BloomBitsPerKey)).
		WithCompression(options.Snappy).
		WithSyncWrites(cfg.Sync).
		WithLogger(nil)
	// Badger refuses a ValueThreshold above its maximum batch size (15% of
	// the memtable); lower it for small memtables. Values of a few hundred
	// bytes still stay in the LSM tree.
	if maxBatch := opts.MemTableSize * 15 / 100; opts.ValueThreshold >= maxBatch {
		opts = opts.WithValueThreshold(maxBatch - 1)
	}
	db, err := badger.Open(opts)
	if err != nil {
		return nil, err
	}
	return &badgerDB{db: db}, nil
}

func (b *badgerDB) Set(key, value []byte) error {
	return b.db.Update(func(txn *badger.Txn) error { return txn.Set(key, value) })
}

func (b *badgerDB) Get(key []byte) (n int, found bool, err error) {
	err = b.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		found = true
		return item.Value(func(v []byte) error { n = len(v); return nil })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	return n, found, err
}

func (b *badgerDB) NewIter() (Iter, error) {
	txn := b.db.NewTransaction(false)
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false // values live in the LSM tree; nothing to prefetch
	return &badgerIter{txn: txn, it: txn.NewIterator(opts)}, nil
}

// EngineWriteAmp: Badger exposes no per-DB bytes-written counter.
func (b *badgerDB) EngineWriteAmp(int64) (float64, bool) { return 0, false }

func (b *badgerDB) Close() error { return b.db.Close() }

type badgerIter struct {
	txn *badger.Txn
	it  *badger.Iterator
	val []byte
	err error
}

func (i *badgerIter) First() bool          { i.it.Rewind(); return i.it.Valid() }
func (i *badgerIter) SeekGE(k []byte) bool { i.it.Seek(k); return i.it.Valid() }
func (i *badgerIter) Next() bool           { i.it.Next(); return i.it.Valid() }
func (i *badgerIter) Key() []byte          { return i.it.Item().Key() }

// Value copies the value into a buffer reused across calls: Badger hands
// values out only inside a callback or as a copy.
func (i *badgerIter) Value() []byte {
	v, err := i.it.Item().ValueCopy(i.val[:0])
	if err != nil && i.err == nil {
		i.err = err
	}
	i.val = v
	return v
}

func (i *badgerIter) Error() error { return i.err }

func (i *badgerIter) Close() error {
	i.it.Close()
	i.txn.Discard()
	return i.err
}
