package replica

import (
	"fmt"

	"github.com/ringkv/ringkv/storage"
)

// hintPrefix marks hinted-handoff records: writes this node keeps for a
// replica that did not acknowledge them. Package handoff owns the layout of
// what follows the prefix; the store only keeps the records in the same
// engine, under the same sync mode, as the data, so that a hint is as
// durable as the write it stands for.
const hintPrefix = 'h'

// PutHints stores hint records (keys without the hint prefix) with one
// engine batch, durable as a data write is under the engine's sync mode.
func (s *Store) PutHints(keys, values [][]byte) error {
	b := s.db.NewBatch()
	for i, k := range keys {
		b.Set(hintKey(k), values[i])
	}
	if err := s.db.Apply(b, nil); err != nil {
		return fmt.Errorf("replica: store %d hints: %w", len(keys), err)
	}
	return nil
}

// DeleteHints removes hint records (keys without the hint prefix) with one
// engine batch.
func (s *Store) DeleteHints(keys [][]byte) error {
	b := s.db.NewBatch()
	for _, k := range keys {
		b.Delete(hintKey(k))
	}
	if err := s.db.Apply(b, nil); err != nil {
		return fmt.Errorf("replica: delete %d hints: %w", len(keys), err)
	}
	return nil
}

// ScanHints calls fn for every hint record whose key (without the hint
// prefix) starts with prefix and is at least from (from nil: the first
// such), in key order, until fn returns false. The slices passed to fn are
// valid only during the call.
func (s *Store) ScanHints(prefix, from []byte, fn func(key, value []byte) bool) error {
	lower := hintKey(prefix)
	if len(from) > 0 {
		lower = hintKey(from)
	}
	upper := prefixEnd(hintKey(prefix))
	it := s.db.NewIter(&storage.IterOptions{LowerBound: lower, UpperBound: upper})
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key()[1:], it.Value()) {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("replica: scan hints: %w", err)
	}
	return nil
}

func hintKey(k []byte) []byte {
	return append([]byte{hintPrefix}, k...)
}

// prefixEnd returns the smallest key greater than every key starting with
// p (p is never all 0xff here: it starts with the hint prefix).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
