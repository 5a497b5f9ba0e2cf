package storage

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/ringkv/ringkv/storage/base"
)

// batchHeaderLen is the size of a batch's header: the sequence number of its
// first operation (8 bytes) and the number of operations (4 bytes).
const batchHeaderLen = 12

// Batch is a set of writes applied atomically: after a crash either all of a
// batch's writes are there or none. The encoded batch is also the payload of
// its commit-log record:
//
//	seq uint64 LE | count uint32 LE | op*
//	op = kind byte | uvarint len(key) | key | (for SET) uvarint len(value) | value
//
// A Batch is not safe for concurrent use.
type Batch struct {
	data  []byte
	count uint32
	err   error
}

// NewBatch returns an empty batch.
func (db *DB) NewBatch() *Batch { return newBatch() }

func newBatch() *Batch {
	b := &Batch{}
	b.Reset()
	return b
}

// Reset empties the batch so it can be reused.
func (b *Batch) Reset() {
	if cap(b.data) < batchHeaderLen {
		b.data = make([]byte, batchHeaderLen, 256)
	}
	b.data = b.data[:batchHeaderLen]
	clear(b.data)
	b.count = 0
	b.err = nil
}

// Grow makes room for n more bytes of records without another
// allocation; a Set of key and value takes at most SetSize(key, value).
func (b *Batch) Grow(n int) { b.data = slices.Grow(b.data, n) }

// SetSize is the most bytes of records a Set of key and value adds to a
// batch (see Grow).
func SetSize(key, value []byte) int {
	return len(key) + len(value) + 1 + 2*binary.MaxVarintLen32
}

// Set records that key holds value. The batch copies both.
func (b *Batch) Set(key, value []byte) {
	if b.err != nil {
		return
	}
	if err := checkKey(key); err != nil {
		b.err = err
		return
	}
	if len(value) > MaxValueSize {
		b.err = fmt.Errorf("%w: %d bytes (limit %d)", ErrValueTooLarge, len(value), MaxValueSize)
		return
	}
	b.data = append(b.data, byte(base.KindSet))
	b.data = binary.AppendUvarint(b.data, uint64(len(key)))
	b.data = append(b.data, key...)
	b.data = binary.AppendUvarint(b.data, uint64(len(value)))
	b.data = append(b.data, value...)
	b.count++
}

// Delete records that key has no value.
func (b *Batch) Delete(key []byte) {
	if b.err != nil {
		return
	}
	if err := checkKey(key); err != nil {
		b.err = err
		return
	}
	b.data = append(b.data, byte(base.KindDelete))
	b.data = binary.AppendUvarint(b.data, uint64(len(key)))
	b.data = append(b.data, key...)
	b.count++
}

// Count returns the number of operations in the batch.
func (b *Batch) Count() int { return int(b.count) }

// Len returns the encoded size of the batch in bytes.
func (b *Batch) Len() int { return len(b.data) }

// Err returns the first error met while building the batch (an oversized
// key or value); applying such a batch fails with it and writes nothing.
func (b *Batch) Err() error { return b.err }

func checkKey(key []byte) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	if len(key) > MaxKeySize {
		return fmt.Errorf("%w: %d bytes (limit %d)", ErrKeyTooLarge, len(key), MaxKeySize)
	}
	return nil
}

func (b *Batch) setSeq(seq base.SeqNum) {
	binary.LittleEndian.PutUint64(b.data[0:8], uint64(seq))
	binary.LittleEndian.PutUint32(b.data[8:12], b.count)
}

// batchOp is one decoded operation.
type batchOp struct {
	kind       base.Kind
	key, value []byte
}

// batchReader decodes an encoded batch (from memory or the commit log).
type batchReader struct {
	data  []byte
	seq   base.SeqNum
	count uint32
	read  uint32
}

func newBatchReader(data []byte) (batchReader, error) {
	if len(data) < batchHeaderLen {
		return batchReader{}, base.CorruptionErrorf("batch of %d bytes is shorter than its header", len(data))
	}
	return batchReader{
		data:  data[batchHeaderLen:],
		seq:   base.SeqNum(binary.LittleEndian.Uint64(data[0:8])),
		count: binary.LittleEndian.Uint32(data[8:12]),
	}, nil
}

// next decodes the next operation; ok is false after the last one.
func (r *batchReader) next() (op batchOp, ok bool, err error) {
	if r.read == r.count {
		if len(r.data) != 0 {
			return op, false, base.CorruptionErrorf("batch has %d trailing bytes after %d operations", len(r.data), r.count)
		}
		return op, false, nil
	}
	if len(r.data) < 1 {
		return op, false, base.CorruptionErrorf("batch ends after %d of %d operations", r.read, r.count)
	}
	op.kind = base.Kind(r.data[0])
	if op.kind != base.KindSet && op.kind != base.KindDelete {
		return op, false, base.CorruptionErrorf("batch operation %d has unknown kind %d", r.read, op.kind)
	}
	r.data = r.data[1:]
	if op.key, err = r.bytes(); err != nil {
		return op, false, err
	}
	if op.kind == base.KindSet {
		if op.value, err = r.bytes(); err != nil {
			return op, false, err
		}
	}
	r.read++
	return op, true, nil
}

func (r *batchReader) bytes() ([]byte, error) {
	n, w := binary.Uvarint(r.data)
	if w <= 0 || n > uint64(len(r.data)-w) {
		return nil, base.CorruptionErrorf("batch operation %d has a bad length", r.read)
	}
	b := r.data[w : w+int(n)]
	r.data = r.data[w+int(n):]
	return b, nil
}
