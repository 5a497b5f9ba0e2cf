package sstable

import (
	"github.com/ringkv/ringkv/storage/base"
)

// tableIter iterates over every entry of a table. It implements
// base.InternalIterator.
type tableIter struct {
	r     *Reader
	fill  bool // insert blocks read from the file into the cache
	block int  // index of the current data block
	data  BlockIter
	valid bool
	err   error
	// ra holds the file's bytes from raOff on, read ahead by a compaction
	// iterator (fill false); a fresh buffer each time, so blocks that
	// alias it stay valid.
	ra    []byte
	raOff uint64
}

// readAhead is how much a compaction iterator reads from the file at once:
// one read for many blocks instead of one per block.
const readAhead = 256 << 10

// NewIter returns an iterator over the whole table. Blocks are read through
// the block cache, and blocks read from the file are added to it. Key and
// Value are valid until the next positioning call (Value aliases the block).
func (r *Reader) NewIter() base.InternalIterator {
	return &tableIter{r: r, fill: true}
}

// NewCompactionIter is NewIter for a one-pass scan such as a compaction: it
// uses blocks already in the cache but does not add the blocks it reads, so
// the scan does not evict the working set, and it reads the file readAhead
// bytes at a time instead of a block at a time. Every block is verified as
// NewIter's are.
func (r *Reader) NewCompactionIter() base.InternalIterator {
	return &tableIter{r: r, fill: false}
}

func (it *tableIter) fail(err error) bool {
	if it.err == nil {
		it.err = err
	}
	it.valid = false
	return false
}

// loadBlock positions it.data over data block i (unpositioned).
func (it *tableIter) loadBlock(i int) bool {
	it.block = i
	h := it.r.index.handles[i]
	var b []byte
	var err error
	if it.fill {
		b, err = it.r.dataBlock(h, true)
	} else {
		b, err = it.readAheadBlock(h)
	}
	if err != nil {
		return it.fail(err)
	}
	if err := it.data.Init(b); err != nil {
		return it.fail(it.r.wrapf(err, "data %v", h))
	}
	return true
}

// readAheadBlock is dataBlock for a compaction iterator: from the cache if
// there, else from the read-ahead buffer, refilled from h on when h is not
// in it.
func (it *tableIter) readAheadBlock(h BlockHandle) ([]byte, error) {
	r := it.r
	if r.cache != nil {
		if b, ok := r.cache.Get(r.fileNum, h.Offset); ok {
			return b, nil
		}
	}
	n := h.Length + BlockTrailerLen
	if h.Offset < it.raOff || h.Offset+n > it.raOff+uint64(len(it.ra)) {
		size := n
		if h.Offset < r.dataEnd {
			size = max(n, min(readAhead, r.dataEnd-h.Offset))
		}
		buf := make([]byte, size)
		if err := r.readAt(buf, int64(h.Offset)); err != nil {
			it.ra = nil
			return nil, err
		}
		it.ra, it.raOff = buf, h.Offset
	}
	raw := it.ra[h.Offset-it.raOff : h.Offset-it.raOff+n]
	b, err := unwrapBlock(raw, nil)
	if err != nil {
		return nil, r.wrapf(err, "%s %v", "data block", h)
	}
	return b, nil
}

// settle makes the iterator valid at the current entry of it.data, or
// moves on to the first entry of the following blocks. ok is the result of
// the last positioning call on it.data.
func (it *tableIter) settle(ok bool) bool {
	for {
		if ok {
			k := it.data.Key()
			if !base.Valid(k) {
				return it.fail(it.r.corruptf("key %q in data %v is too short for an internal key", k, it.r.index.handles[it.block]))
			}
			if kind := base.KindOf(k); kind != base.KindSet && kind != base.KindDelete {
				return it.fail(it.r.corruptf("key %s in data %v has unknown kind", base.Format(k), it.r.index.handles[it.block]))
			}
			it.valid = true
			return true
		}
		if err := it.data.Error(); err != nil {
			return it.fail(it.r.wrapf(err, "data %v", it.r.index.handles[it.block]))
		}
		if it.block+1 >= it.r.index.Len() {
			it.valid = false
			return false
		}
		if !it.loadBlock(it.block + 1) {
			return false
		}
		ok = it.data.First()
	}
}

func (it *tableIter) SeekGE(ikey []byte) bool {
	if it.err != nil {
		return false
	}
	uk, tr := splitTarget(ikey)
	i := it.r.index.search(uk, tr)
	if i >= it.r.index.Len() {
		it.valid = false
		return false
	}
	if !it.loadBlock(i) {
		return false
	}
	return it.settle(it.data.seekGE(uk, tr))
}

func (it *tableIter) First() bool {
	if it.err != nil {
		return false
	}
	if it.r.index.Len() == 0 {
		it.valid = false
		return false
	}
	if !it.loadBlock(0) {
		return false
	}
	return it.settle(it.data.First())
}

func (it *tableIter) Next() bool {
	if it.err != nil || !it.valid {
		it.valid = false
		return false
	}
	return it.settle(it.data.Next())
}

func (it *tableIter) Valid() bool { return it.valid }

func (it *tableIter) Key() []byte {
	if !it.valid {
		return nil
	}
	return it.data.Key()
}

func (it *tableIter) Value() []byte {
	if !it.valid {
		return nil
	}
	return it.data.Value()
}

func (it *tableIter) Error() error { return it.err }

func (it *tableIter) Close() error {
	it.valid = false
	it.data = BlockIter{}
	return it.err
}
