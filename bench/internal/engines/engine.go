// Package engines adapts the storage engines compared by enginebench to one
// small interface, so that every workload runs the same code against each of
// them.
//
// Every adapter is configured from the same Config: block-cache size,
// memtable (write-buffer) size, block size, bloom-filter bits per key and
// Snappy compression, mapped onto each engine's own options. Durability is
// chosen by Config.Sync: false means no fsync on the write path (the commit
// log is still written, by a write(2) or into an mmap'd file), true means
// every single-key write is fsynced before it returns.
package engines

import (
	"fmt"
	"slices"
	"sort"
)

// Config is the engine-independent configuration of one database.
type Config struct {
	// CacheSize is the block-cache capacity in bytes.
	CacheSize int64
	// MemTableSize is the memtable / write-buffer size in bytes.
	MemTableSize int
	// BlockSize is the target uncompressed data-block size in bytes.
	BlockSize int
	// BloomBitsPerKey sizes the bloom filters (Badger takes a false-positive
	// rate instead; see the Badger adapter).
	BloomBitsPerKey int
	// Sync makes every write fsync the commit log before returning.
	Sync bool
}

// DB is one open database.
type DB interface {
	// Set writes one key, durably if the DB was opened with Config.Sync.
	Set(key, value []byte) error
	// Get looks a key up and returns the length of its value.
	Get(key []byte) (valueLen int, found bool, err error)
	// NewIter returns an iterator over the whole key space.
	NewIter() (Iter, error)
	// EngineWriteAmp returns the write amplification the engine itself
	// reports, given the logical bytes (keys plus values) written since the
	// DB was opened; ok is false if the engine exposes no such metric.
	EngineWriteAmp(logicalBytes int64) (wa float64, ok bool)
	// Close closes the database.
	Close() error
}

// Iter is a forward iterator. Key and Value are valid until the next
// positioning call.
type Iter interface {
	First() bool
	SeekGE(key []byte) bool
	Next() bool
	Key() []byte
	Value() []byte
	Error() error
	Close() error
}

// Opener opens (creating if needed) the database in dir.
type Opener func(dir string, cfg Config) (DB, error)

// Engine describes a registered engine.
type Engine struct {
	Name string
	// Open opens a database.
	Open Opener
	// Settings describes, for the report, how Config maps onto the engine's
	// own options.
	Settings func(cfg Config) string
}

var registry = map[string]Engine{}

func register(e Engine) {
	if _, dup := registry[e.Name]; dup {
		panic("engines: duplicate engine " + e.Name)
	}
	registry[e.Name] = e
}

// Lookup returns the engine called name.
func Lookup(name string) (Engine, error) {
	e, ok := registry[name]
	if !ok {
		return Engine{}, fmt.Errorf("unknown engine %q (have %v)", name, Names())
	}
	return e, nil
}

// Names returns the registered engine names, ringkv first and the rest
// sorted.
func Names() []string {
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if (names[i] == "ringkv") != (names[j] == "ringkv") {
			return names[i] == "ringkv"
		}
		return names[i] < names[j]
	})
	return names
}

// Registered reports whether an engine called name is compiled in.
func Registered(name string) bool { return slices.Contains(Names(), name) }
