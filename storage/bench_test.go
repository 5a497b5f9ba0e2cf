package storage

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func benchValue() []byte {
	v := make([]byte, 100)
	for i := range v {
		v[i] = byte('a' + i%26)
	}
	return v
}

// BenchmarkFillRandom writes b.N random 16-byte keys with 100-byte values,
// one Set per key, without fsync (db_bench's fillrandom).
func BenchmarkFillRandom(b *testing.B) {
	db, err := Open(b.TempDir(), &Options{Sync: SyncNone})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	v := benchValue()
	perm := rand.Perm(b.N)
	b.SetBytes(116)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := db.Set(fmt.Appendf(nil, "%016d", perm[i]), v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadRandom reads random existing keys from a reopened engine
// holding 1M keys.
func BenchmarkReadRandom(b *testing.B) {
	const n = 1000000
	dir := b.TempDir()
	db, err := Open(dir, &Options{Sync: SyncNone})
	if err != nil {
		b.Fatal(err)
	}
	v := benchValue()
	for _, i := range rand.Perm(n) {
		if err := db.Set(fmt.Appendf(nil, "%016d", i), v); err != nil {
			b.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	if db, err = Open(dir, &Options{Sync: SyncNone}); err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := db.Get(fmt.Appendf(nil, "%016d", rand.IntN(n))); err != nil {
			b.Fatal(err)
		}
	}
}
