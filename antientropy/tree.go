package antientropy

import (
	"fmt"
	"math/bits"
	"sync"

	"github.com/ringkv/ringkv/replica"
)

// LeafBits is log2 of the leaves of one partition's tree: a leaf is 1/256
// of the partition's token range, so a few keys per leaf at a million keys
// on the default 1024 partitions.
const LeafBits = 8

// Leaves is the number of leaves of one partition's tree.
const Leaves = 1 << LeafBits

// Trees holds one hash tree per partition of a ring: for each, Leaves leaf
// hashes, each the sum (mod 2^64) of the ObjectHash of every key stored in
// the leaf's token range, and a root, the sum of the leaves. A sum makes an
// update of one key a constant-time fold (subtract the old hash, add the
// new one) that commutes with every other, so the trees follow every write,
// in any order, without a rescan (Trees is the store's replica.Observer).
// (A sum rather than XOR: equal hashes do not cancel out.)
//
// A partition's tree is trusted once it was built from a scan (Rebuild)
// with no write in flight in the partition meanwhile, and stays trusted as
// long as every change reaches it; a commit whose outcome is unknown (it
// failed) makes it untrusted until the next Rebuild. An exchange compares
// trusted trees only.
type Trees struct {
	shift uint // token >> shift is the partition; 64 for a single partition
	parts []partTree
}

type partTree struct {
	mu      sync.Mutex
	leaves  []uint64 // nil until built
	root    uint64
	pending int    // changes announced (Changing) and not finished (Changed)
	gen     uint64 // bumped by Rebuild's start and by Distrust: a rebuild installs only if it is still its own
	trusted bool
	// While a Rebuild scans its snapshot: the sum of the changes finished
	// since, per leaf, to fold into the result.
	building bool
	deltas   map[int]uint64
}

// NewTrees returns untrusted, empty trees for a ring of partitions
// partitions (a power of two, see ring.Config).
func NewTrees(partitions int) (*Trees, error) {
	if partitions < 1 || partitions&(partitions-1) != 0 {
		return nil, fmt.Errorf("antientropy: %d partitions: want a power of two", partitions)
	}
	return &Trees{shift: uint(64 - bits.TrailingZeros(uint(partitions))), parts: make([]partTree, partitions)}, nil
}

// Partitions returns the number of partitions.
func (t *Trees) Partitions() int { return len(t.parts) }

// Partition returns the partition of a token.
func (t *Trees) Partition(token uint64) int {
	return int(token >> t.shift) // 0 when shift is 64 (Go shifts past the width to 0)
}

// Leaf returns the leaf of a token within its partition.
func (t *Trees) Leaf(token uint64) int {
	return int((token << (64 - t.shift)) >> (64 - LeafBits))
}

// LeafRange returns the first and last token of leaf l of partition p.
func (t *Trees) LeafRange(p, l int) (first, last uint64) {
	width := t.shift - LeafBits // bits of a token below its leaf index
	first = uint64(p)<<t.shift | uint64(l)<<width
	return first, first | (uint64(1)<<width - 1)
}

// PartitionRange returns the first and last token of partition p.
func (t *Trees) PartitionRange(p int) (first, last uint64) {
	first, _ = t.LeafRange(p, 0)
	_, last = t.LeafRange(p, Leaves-1)
	return first, last
}

// Changing implements replica.Observer: the changes may become visible.
func (t *Trees) Changing(changes []replica.Change) {
	for _, c := range changes {
		pt := &t.parts[t.Partition(c.Token)]
		pt.mu.Lock()
		pt.pending++
		pt.mu.Unlock()
	}
}

// Changed implements replica.Observer: the changes were committed (ok) or
// their outcome is unknown.
func (t *Trees) Changed(changes []replica.Change, ok bool) {
	for _, c := range changes {
		pt := &t.parts[t.Partition(c.Token)]
		pt.mu.Lock()
		pt.pending--
		d := c.New - c.Old
		switch {
		case !ok:
			pt.trusted = false
			pt.gen++ // a rebuild in progress cannot know what the engine holds
		default:
			if pt.leaves != nil {
				pt.leaves[t.Leaf(c.Token)] += d
				pt.root += d
			}
			if pt.building {
				pt.deltas[t.Leaf(c.Token)] += d
			}
		}
		pt.mu.Unlock()
	}
}

// Root returns partition p's root hash and whether the tree is trusted.
func (t *Trees) Root(p int) (root uint64, trusted bool) {
	pt := &t.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.root, pt.trusted
}

// LeafHashes returns a copy of partition p's leaves (nil if it was never
// built) and whether the tree is trusted.
func (t *Trees) LeafHashes(p int) (leaves []uint64, trusted bool) {
	pt := &t.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.leaves == nil {
		return nil, false
	}
	return append([]uint64(nil), pt.leaves...), pt.trusted
}

// Trusted reports whether partition p's tree is trusted.
func (t *Trees) Trusted(p int) bool {
	_, ok := t.Root(p)
	return ok
}

// Distrust marks partition p's tree untrusted, so that it is rebuilt
// before it is compared again.
func (t *Trees) Distrust(p int) {
	pt := &t.parts[p]
	pt.mu.Lock()
	pt.trusted = false
	pt.gen++ // a Rebuild scanning now may have read what is lost: it must not install
	pt.mu.Unlock()
}

// Rebuild recomputes partition p's tree from a snapshot of the store.
// open is called under the partition's lock, at a moment when no change to
// the partition is in flight, and must take the snapshot there (as
// replica.Store.SnapshotHashes does) and return the scan of it, which
// calls add with the ObjectHash of every key the partition held then. The
// changes that begin after that moment are folded into the result when it
// is installed, so a partition that is never idle for long still gets a
// trusted tree. Rebuild reports false, installing nothing, when a change
// was in flight at the start (try again later), or when during the scan a
// commit failed or the tree was distrusted (what the snapshot holds may be
// wrong).
func (t *Trees) Rebuild(p int, open func() (scan func(add func(token, hash uint64)) error)) (bool, error) {
	pt := &t.parts[p]
	pt.mu.Lock()
	if pt.pending != 0 || pt.building {
		pt.mu.Unlock()
		return false, nil
	}
	scan := open()
	pt.building, pt.deltas, pt.gen = true, make(map[int]uint64), pt.gen+1
	gen := pt.gen
	pt.mu.Unlock()

	leaves := make([]uint64, Leaves)
	err := scan(func(token, hash uint64) {
		leaves[t.Leaf(token)] += hash
	})
	pt.mu.Lock()
	defer pt.mu.Unlock()
	intact := pt.building && pt.gen == gen
	deltas := pt.deltas
	pt.building, pt.deltas = false, nil
	if err != nil || !intact {
		return false, err
	}
	var root uint64
	for l := range leaves {
		leaves[l] += deltas[l]
		root += leaves[l]
	}
	pt.leaves, pt.root, pt.trusted = leaves, root, true
	return true, nil
}
