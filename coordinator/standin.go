package coordinator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/version"
)

// A fallback's copies.
//
// A fallback that stands in for a down primary receives the version in a
// kindHandoff message naming that primary. Before it acknowledges, it keeps
// the version durably as a hint for the primary (HintKeeper.Keep) and then
// merges it into its own store as an ordinary object, so that a sloppy
// read can find it while the primary is down. Its hint is delivered like
// any other (package handoff, through DeliverBatch). Once the primary has
// acknowledged a delivered version, the fallback removes its own object of
// the key physically, but only when
//
//   - it is not a primary of the key in its current ring (a replica's copy
//     is never removed), and
//   - the versions of the key delivered in the batch, merged, cover
//     everything its object holds (version.Object.Descends), so nothing
//     newer that reached it since (another sloppy write) is lost from it.
//
// When they do not cover it and no hint of the key remains to be
// delivered (HintLedger.PendingFor), no later delivery would remove the
// copy: the fallback keeps the copy itself as a new hint for the primary,
// and its delivery removes the copy unless something newer arrived (which
// has its own hint).
//
// The check and the removal run under the key's stand-in stripe lock,
// which every write this node takes for a key it is not a primary of also
// holds (kindHandoff, and kindReplicate from a node with another ring), so
// no such write can land between them. A write is never lost by the
// removal: the primary holds what was removed, and a newer write kept here
// is kept with its own hint, removed only when that hint is delivered.

// standInStripes is the number of stand-in locks: enough that unrelated
// keys rarely share one, few enough that a batch locks them as a bitmask.
const standInStripes = 64

// lockStandIns locks the stand-in stripes of keys (of those this node is
// not a primary of in rg, unless all) in stripe order, and returns the
// unlock.
func (c *Coordinator) lockStandIns(rg *ring.Ring, keys [][]byte, all bool) (unlock func()) {
	var mask uint64
	for _, key := range keys {
		if all || !contains(rg.PreferenceForKey(key), c.self) {
			mask |= 1 << (ring.Token(key) % standInStripes)
		}
	}
	for m := mask; m != 0; m &= m - 1 {
		c.standIns[bits.TrailingZeros64(m)].Lock()
	}
	return func() {
		for m := mask; m != 0; m &= m - 1 {
			c.standIns[bits.TrailingZeros64(m)].Unlock()
		}
	}
}

// applyReplicated merges replicated versions into the local store (a
// kindReplicate or kindReplicateBatch message), under the stand-in locks
// of the keys this node does not replicate in its ring.
func (c *Coordinator) applyReplicated(keys [][]byte, objs []*version.Object) error {
	unlock := c.lockStandIns(c.cluster.Ring(), keys, false)
	defer unlock()
	return c.applyLocal(keys, objs)
}

// applyCovering serves a kindReplicateCovering message (see
// replica.Store.ApplyCovering), under the same stand-in locks as
// applyReplicated.
func (c *Coordinator) applyCovering(keys [][]byte, objs []*version.Object) ([]bool, []*version.Object, error) {
	unlock := c.lockStandIns(c.cluster.Ring(), keys, false)
	defer unlock()
	return c.store.ApplyCovering(keys, objs)
}

func (c *Coordinator) applyLocal(keys [][]byte, objs []*version.Object) error {
	if len(keys) == 1 {
		_, _, err := c.store.Apply(keys[0], objs[0])
		return err
	}
	return c.store.ApplyBatch(keys, objs)
}

// standIn serves a kindHandoff message: this node is a fallback for
// primary. It keeps the versions as hints for primary, durably, then
// merges them into its store; only then does the sender count it.
//
// The message is refused whole, before anything is kept or stored, unless
// primary is a valid node ID that is a primary of every key in this
// node's current ring: a hint for anything else could never be delivered
// where it belongs. The sender then keeps its own hint, as for any target
// that did not acknowledge. A message naming this node itself (the ring
// changed under the sender) is applied as a replica's write, which the
// same check allows only when this node is a primary of every key.
func (c *Coordinator) standIn(primary string, keys [][]byte, objs []*version.Object) error {
	if err := version.CheckNodeID(primary); err != nil {
		return fmt.Errorf("refuse to stand in: %w", err)
	}
	rg := c.cluster.Ring()
	for _, key := range keys {
		if !contains(rg.PreferenceForKey(key), primary) {
			return fmt.Errorf("refuse to stand in for %s: it is not a primary of %q in the ring of %s", primary, key, c.self)
		}
	}
	if primary == c.self {
		return c.applyReplicated(keys, objs) // a ring change made this node the primary
	}
	keeper, ok := c.o.Hints.(HintKeeper)
	if !ok {
		return fmt.Errorf("node %s keeps no hints, so it cannot stand in for %s", c.self, primary)
	}
	unlock := c.lockStandIns(c.cluster.Ring(), keys, true)
	defer unlock()
	if err := keeper.Keep(primary, keys, objs); err != nil {
		return fmt.Errorf("stand in for %s: keep %d hints: %w", primary, len(keys), err)
	}
	if err := c.applyLocal(keys, objs); err != nil {
		return fmt.Errorf("stand in for %s: %w", primary, err)
	}
	return nil
}

// dropStandIns is called with versions node acknowledged (hints
// delivered): it removes this node's own copies of those keys where it
// stood in as a fallback (see the comment at the top of this file). The
// versions of one key delivered together are checked together: two
// concurrent writes merged into the copy are covered only by both.
func (c *Coordinator) dropStandIns(node string, keys [][]byte, objs []*version.Object) {
	rg := c.cluster.Ring()
	type delivered struct {
		key    []byte
		merged *version.Object
		n      int
	}
	var order []*delivered
	byKey := map[string]*delivered{}
	for i, key := range keys {
		if contains(rg.PreferenceForKey(key), c.self) {
			continue // a replica's copy: the hint was a coordinator's
		}
		d := byKey[string(key)]
		if d == nil {
			d = &delivered{key: key}
			byKey[string(key)] = d
			order = append(order, d)
		}
		d.merged = mergeReply(d.merged, objs[i])
		d.n++
	}
	for _, d := range order {
		if err := c.dropStandIn(node, d.key, d.merged, d.n); err != nil {
			c.o.Logf("remove the stand-in copy of %q: %v", d.key, err)
		}
	}
}

// dropStandIn removes this node's copy of key when delivered (the merge of
// the n versions of key just delivered to node) covers it and this node is
// not a primary of the key. When delivered does not cover the copy and no
// other hint of the key remains to be delivered (so no later delivery
// would remove it), it keeps the copy as a new hint for node (or, when
// node is no longer a primary of the key, its first primary), whose
// delivery removes the copy if nothing newer arrived by then.
func (c *Coordinator) dropStandIn(node string, key []byte, delivered *version.Object, n int) error {
	rg := c.cluster.Ring()
	unlock := c.lockStandIns(rg, [][]byte{key}, true)
	defer unlock()
	if contains(rg.PreferenceForKey(key), c.self) {
		return nil
	}
	// replica.Store removes under its own key lock (so that its
	// observers, anti-entropy's trees, hear of it), and only when
	// delivered covers what it holds and this node is still not a primary
	// in the ring as it is now (one that just became a primary keeps its
	// copy).
	removed, err := c.store.RemoveIf(key, func(cur *version.Object) bool {
		return delivered.Descends(cur) && !contains(c.cluster.Ring().PreferenceForKey(key), c.self)
	})
	if err != nil || removed {
		return err
	}
	ledger, ok := c.o.Hints.(HintLedger)
	if !ok || ledger.PendingFor(key) > n {
		return nil // another hint of the key is still to be delivered
	}
	cur, err := c.store.Get(key)
	if err != nil || cur == nil || delivered.Descends(cur) {
		return err
	}
	pref := c.cluster.Ring().PreferenceForKey(key)
	if len(pref) == 0 || contains(pref, c.self) {
		return nil
	}
	target := node
	if !contains(pref, node) {
		target = pref[0]
	}
	if err := ledger.Keep(target, [][]byte{key}, []*version.Object{cur}); err != nil {
		return fmt.Errorf("keep the copy as a hint for %s: %w", target, err)
	}
	return nil
}

// encodeHandoff: uvarint len(primary) | primary | a kindReplicateBatch
// request (see encodeReplicateBatch).
func encodeHandoff(primary string, batch []byte) []byte {
	b := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen16+len(primary)+len(batch)), uint64(len(primary)))
	b = append(b, primary...)
	return append(b, batch...)
}

func decodeHandoff(b []byte) (primary string, keys [][]byte, objs []*version.Object, err error) {
	p, rest, err := readBytes(b)
	if err != nil {
		return "", nil, nil, err
	}
	if len(p) == 0 {
		return "", nil, nil, errors.Join(errMalformed, errors.New("handoff without a primary"))
	}
	keys, objs, err = decodeReplicateBatch(rest)
	return string(p), keys, objs, err
}
