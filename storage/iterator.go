package storage

import (
	"bytes"
	"container/heap"
	"sort"

	"github.com/ringkv/ringkv/storage/base"
)

// errIter is an iterator that only reports an error.
type errIter struct{ err error }

func (e errIter) SeekGE([]byte) bool { return false }
func (e errIter) First() bool        { return false }
func (e errIter) Next() bool         { return false }
func (e errIter) Valid() bool        { return false }
func (e errIter) Key() []byte        { return nil }
func (e errIter) Value() []byte      { return nil }
func (e errIter) Error() error       { return e.err }
func (e errIter) Close() error       { return e.err }

// newTableIter opens f's reader (if needed) and returns an iterator over it.
func newTableIter(f *tableFile) base.InternalIterator {
	r, err := f.open()
	if err != nil {
		return errIter{err}
	}
	return r.NewIter()
}

// newCompactionTableIter is newTableIter for a compaction's inputs: a
// one-pass scan that reads ahead and leaves the block cache to the reads.
func newCompactionTableIter(f *tableFile) base.InternalIterator {
	r, err := f.open()
	if err != nil {
		return errIter{err}
	}
	return r.NewCompactionIter()
}

// levelIter walks the sorted, non-overlapping tables of one level as one
// sequence, opening each table's iterator only when it is reached.
type levelIter struct {
	files []*tableFile
	idx   int
	cur   base.InternalIterator
	err   error
	// open opens a table's iterator: newTableIter, or
	// newCompactionTableIter for a compaction.
	open func(*tableFile) base.InternalIterator
}

func newLevelIter(files []*tableFile) *levelIter {
	return &levelIter{files: files, idx: -1, open: newTableIter}
}

func (l *levelIter) setTable(i int) {
	if l.cur != nil {
		if err := l.cur.Close(); err != nil && l.err == nil {
			l.err = err
		}
		l.cur = nil
	}
	l.idx = i
	if i >= 0 && i < len(l.files) {
		l.cur = l.open(l.files[i])
	}
}

// skipEmpty moves forward over exhausted tables.
func (l *levelIter) skipEmpty(ok bool) bool {
	for !ok {
		if l.cur != nil {
			if err := l.cur.Error(); err != nil {
				l.err = err
				return false
			}
		}
		if l.idx+1 >= len(l.files) {
			l.setTable(len(l.files))
			return false
		}
		l.setTable(l.idx + 1)
		ok = l.cur.First()
	}
	return true
}

func (l *levelIter) SeekGE(ikey []byte) bool {
	i := findFile(l.files, base.UserKey(ikey))
	if i >= len(l.files) {
		l.setTable(len(l.files))
		return false
	}
	l.setTable(i)
	return l.skipEmpty(l.cur.SeekGE(ikey))
}

func (l *levelIter) First() bool {
	if len(l.files) == 0 {
		return false
	}
	l.setTable(0)
	return l.skipEmpty(l.cur.First())
}

func (l *levelIter) Next() bool {
	if l.cur == nil {
		return false
	}
	return l.skipEmpty(l.cur.Next())
}

func (l *levelIter) Valid() bool   { return l.err == nil && l.cur != nil && l.cur.Valid() }
func (l *levelIter) Key() []byte   { return l.cur.Key() }
func (l *levelIter) Value() []byte { return l.cur.Value() }

func (l *levelIter) Error() error {
	if l.err != nil {
		return l.err
	}
	if l.cur != nil {
		return l.cur.Error()
	}
	return nil
}

func (l *levelIter) Close() error {
	l.setTable(len(l.files))
	return l.err
}

// mergingIter merges child iterators into one sequence in base.Compare
// order, with a min-heap of the children that are positioned.
type mergingIter struct {
	children []base.InternalIterator
	h        iterHeap
	err      error
}

type iterHeap []base.InternalIterator

func (h iterHeap) Len() int           { return len(h) }
func (h iterHeap) Less(i, j int) bool { return base.Compare(h[i].Key(), h[j].Key()) < 0 }
func (h iterHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *iterHeap) Push(x any)        { *h = append(*h, x.(base.InternalIterator)) }
func (h *iterHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newMergingIter(children []base.InternalIterator) *mergingIter {
	return &mergingIter{children: children, h: make(iterHeap, 0, len(children))}
}

func (m *mergingIter) rebuild(position func(base.InternalIterator) bool) bool {
	m.h = m.h[:0]
	for _, c := range m.children {
		if position(c) {
			m.h = append(m.h, c)
		} else if err := c.Error(); err != nil {
			m.err = err
			m.h = m.h[:0]
			return false
		}
	}
	heap.Init(&m.h)
	return len(m.h) > 0
}

func (m *mergingIter) SeekGE(ikey []byte) bool {
	return m.rebuild(func(c base.InternalIterator) bool { return c.SeekGE(ikey) })
}

func (m *mergingIter) First() bool {
	return m.rebuild(func(c base.InternalIterator) bool { return c.First() })
}

func (m *mergingIter) Next() bool {
	if len(m.h) == 0 || m.err != nil {
		return false
	}
	top := m.h[0]
	if top.Next() {
		heap.Fix(&m.h, 0)
	} else {
		if err := top.Error(); err != nil {
			m.err = err
			m.h = m.h[:0]
			return false
		}
		heap.Pop(&m.h)
	}
	return len(m.h) > 0
}

func (m *mergingIter) Valid() bool   { return m.err == nil && len(m.h) > 0 }
func (m *mergingIter) Key() []byte   { return m.h[0].Key() }
func (m *mergingIter) Value() []byte { return m.h[0].Value() }
func (m *mergingIter) Error() error  { return m.err }

func (m *mergingIter) Close() error {
	for _, c := range m.children {
		if err := c.Close(); err != nil && m.err == nil {
			m.err = err
		}
	}
	m.h = nil
	return m.err
}

// IterOptions bound an iterator to [LowerBound, UpperBound).
type IterOptions struct {
	// LowerBound, if set, is the smallest key the iterator returns.
	LowerBound []byte
	// UpperBound, if set, is the first key past the end (exclusive).
	UpperBound []byte
}

// Iterator walks user keys in ascending order over a consistent snapshot:
// writes made after it was created are not seen. Key and Value are valid
// until the next positioning call. Close it to release the tables it pins.
type Iterator struct {
	db         *DB
	rs         *readState
	iter       base.InternalIterator
	seq        base.SeqNum
	lower      []byte
	upper      []byte
	key, value []byte
	valid      bool
	err        error
	seekBuf    []byte
	closed     bool
}

// NewIter returns an iterator over the latest state.
func (db *DB) NewIter(o *IterOptions) *Iterator {
	return db.newIterAt(o, base.SeqNum(db.visibleSeq.Load()))
}

func (db *DB) newIterAt(o *IterOptions, seq base.SeqNum) *Iterator {
	it := &Iterator{db: db, seq: seq}
	if o != nil {
		it.lower = bytes.Clone(o.LowerBound)
		it.upper = bytes.Clone(o.UpperBound)
	}
	rs, err := db.loadReadState()
	if err != nil {
		it.err = err
		return it
	}
	it.rs = rs
	var children []base.InternalIterator
	children = append(children, rs.mem.mt.NewIter())
	for _, m := range rs.imm {
		children = append(children, m.mt.NewIter())
	}
	for _, f := range rs.v.levels[0] {
		if it.overlapsBounds(f.smallestUser(), f.largestUser()) {
			children = append(children, newTableIter(f))
		}
	}
	for level := 1; level < NumLevels; level++ {
		files := rs.v.levels[level]
		// Keep only the tables inside the bounds.
		lo, hi := 0, len(files)
		if it.lower != nil {
			lo = findFile(files, it.lower)
		}
		if it.upper != nil {
			hi = sort.Search(len(files), func(i int) bool {
				return bytes.Compare(files[i].smallestUser(), it.upper) >= 0
			})
		}
		if lo < hi {
			children = append(children, newLevelIter(files[lo:hi]))
		}
	}
	it.iter = newMergingIter(children)
	return it
}

func (it *Iterator) overlapsBounds(smallest, largest []byte) bool {
	if it.lower != nil && bytes.Compare(largest, it.lower) < 0 {
		return false
	}
	if it.upper != nil && bytes.Compare(smallest, it.upper) >= 0 {
		return false
	}
	return true
}

// First moves to the first key (at or after LowerBound).
func (it *Iterator) First() bool {
	if it.iter == nil {
		return false
	}
	if it.lower != nil {
		return it.SeekGE(it.lower)
	}
	it.iter.First()
	return it.findNext(nil)
}

// SeekGE moves to the first key >= key.
func (it *Iterator) SeekGE(key []byte) bool {
	if it.iter == nil {
		return false
	}
	if it.lower != nil && bytes.Compare(key, it.lower) < 0 {
		key = it.lower
	}
	it.seekBuf = base.MakeSeekKey(it.seekBuf[:0], key, it.seq)
	it.iter.SeekGE(it.seekBuf)
	return it.findNext(nil)
}

// Next moves to the next key.
func (it *Iterator) Next() bool {
	if !it.valid {
		return false
	}
	it.iter.Next()
	return it.findNext(it.key)
}

// findNext settles on the newest visible version of the next user key
// greater than skip (all keys if skip is nil), skipping tombstones.
func (it *Iterator) findNext(skip []byte) bool {
	it.valid = false
	var deleted []byte
	for it.iter.Valid() {
		ikey := it.iter.Key()
		ukey := base.UserKey(ikey)
		switch {
		case base.Seq(ikey) > it.seq:
		case skip != nil && bytes.Equal(ukey, skip):
		case deleted != nil && bytes.Equal(ukey, deleted):
		default:
			if it.upper != nil && bytes.Compare(ukey, it.upper) >= 0 {
				return false
			}
			if base.KindOf(ikey) == base.KindDelete {
				deleted = append(deleted[:0], ukey...)
				break
			}
			it.key = append(it.key[:0], ukey...)
			it.value = append(it.value[:0], it.iter.Value()...)
			it.valid = true
			return true
		}
		it.iter.Next()
	}
	if err := it.iter.Error(); err != nil {
		it.err = err
		it.db.noteReadError(err)
	}
	return false
}

// Valid reports whether the iterator is at a key.
func (it *Iterator) Valid() bool { return it.valid }

// Key returns the current key.
func (it *Iterator) Key() []byte { return it.key }

// Value returns the current value.
func (it *Iterator) Value() []byte { return it.value }

// Error returns the error that stopped the iteration, if any.
func (it *Iterator) Error() error { return it.err }

// Close releases the iterator.
func (it *Iterator) Close() error {
	if it.closed {
		return it.err
	}
	it.closed = true
	if it.iter != nil {
		if err := it.iter.Close(); err != nil && it.err == nil {
			it.err = err
		}
	}
	// A closed iterator positions nowhere: its memtables' arenas may
	// already hold a later memtable's entries.
	it.iter = nil
	if it.rs != nil {
		it.rs.unref()
		it.rs = nil
	}
	it.valid = false
	return it.err
}

// Snapshot is a consistent, read-only view of the engine at the moment it
// was taken. Compaction keeps every version a live snapshot can see, so
// close snapshots when done.
type Snapshot struct {
	db  *DB
	seq base.SeqNum
}

// NewSnapshot takes a snapshot of the current state.
func (db *DB) NewSnapshot() *Snapshot {
	db.mu.Lock()
	defer db.mu.Unlock()
	s := &Snapshot{db: db, seq: base.SeqNum(db.visibleSeq.Load())}
	db.snapshots[s] = struct{}{}
	return s
}

// Get reads key as of the snapshot.
func (s *Snapshot) Get(key []byte) ([]byte, error) { return s.db.getCopyAt(key, s.seq) }

// NewIter iterates the snapshot's state.
func (s *Snapshot) NewIter(o *IterOptions) *Iterator { return s.db.newIterAt(o, s.seq) }

// Close releases the snapshot.
func (s *Snapshot) Close() error {
	s.db.mu.Lock()
	delete(s.db.snapshots, s)
	s.db.mu.Unlock()
	return nil
}
