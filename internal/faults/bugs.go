package faults

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/rebalance"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/storage"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// Peer message kinds of package coordinator (unexported there; pinned here
// by the canaries: if a planted bug stops biting because a kind changed,
// its canary fails).
const (
	kindReplicate      uint8 = 2
	kindCoordinate     uint8 = 3
	kindReplicateBatch uint8 = 4
	// kindReplicateCovering carries checked blind writes: as
	// kindReplicateBatch, stored only where the version covers the
	// replica's state; the reply says per entry whether it was stored.
	kindReplicateCovering uint8 = 11
)

// coveringReply is a kindReplicateCovering reply claiming that every entry
// of payload p (uvarint count | ...) was stored.
func coveringReply(p []byte) []byte {
	n, w := binary.Uvarint(p)
	if w <= 0 || n > uint64(len(p)) {
		return nil
	}
	b := binary.AppendUvarint(nil, n)
	for range n {
		b = append(b, 1)
	}
	return b
}

// BugAckWithoutStoring is a planted bug: the given nodes (all if none are
// named) acknowledge replication and read-repair messages without storing
// them (checked blind writes: they answer "stored"). Acknowledged writes
// then live on fewer replicas than W says.
func BugAckWithoutStoring(nodes ...string) func(string, transport.Handler) transport.Handler {
	return func(id string, h transport.Handler) transport.Handler {
		if len(nodes) > 0 && !slices.Contains(nodes, id) {
			return h
		}
		return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
			switch kind {
			case kindReplicate, kindReplicateBatch:
				return nil, nil
			case kindReplicateCovering:
				return coveringReply(p), nil
			}
			return h.Handle(ctx, from, kind, p)
		})
	}
}

// BugCoverWithoutCheck is a planted bug: every node stores the versions
// of checked blind writes (kindReplicateCovering) without checking that
// they cover what it holds, merging them as ordinary replication, and
// answers that each one was stored. A blind write coordinated by a replica
// that missed an acknowledged write is then acknowledged without
// superseding it: the older value survives beside it as a sibling.
func BugCoverWithoutCheck() func(string, transport.Handler) transport.Handler {
	return func(id string, h transport.Handler) transport.Handler {
		return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
			if kind == kindReplicateCovering {
				if _, err := h.Handle(ctx, from, kindReplicateBatch, p); err != nil {
					return nil, err
				}
				return coveringReply(p), nil
			}
			return h.Handle(ctx, from, kind, p)
		})
	}
}

// BugDropSiblingOnMerge is a planted bug: the given nodes (all if none are
// named), before merging an incoming version that has several siblings,
// keep only the one last-write-wins picks, but keep the whole context: the
// other siblings' dots are covered and so they are dropped, as if
// overwritten, here and wherever this replica's state is merged.
func BugDropSiblingOnMerge(nodes ...string) func(string, transport.Handler) transport.Handler {
	return func(id string, h transport.Handler) transport.Handler {
		if len(nodes) > 0 && !slices.Contains(nodes, id) {
			return h
		}
		return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
			if kind == kindReplicate {
				if q, ok := dropSiblings(p); ok {
					p = q
				}
			}
			return h.Handle(ctx, from, kind, p)
		})
	}
}

// BugCoordinateTwice is a planted bug: every node coordinates each
// forwarded write twice, as a forwarder that retries a write on another
// replica after the first got it would. With a context, the write becomes
// two siblings with one value.
func BugCoordinateTwice() func(string, transport.Handler) transport.Handler {
	return func(id string, h transport.Handler) transport.Handler {
		return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
			if kind == kindCoordinate {
				h.Handle(ctx, from, kind, slices.Clone(p))
			}
			return h.Handle(ctx, from, kind, p)
		})
	}
}

// BugForgetForwardedContext is a planted bug: every node, when it
// coordinates a write forwarded to it (by a node that is not a replica of
// the key) that carries a causal context, replaces that context with an
// empty one before coordinating. The write then covers nothing it saw:
// what the client read survives beside it as a sibling, and a delete
// deletes nothing.
func BugForgetForwardedContext() func(string, transport.Handler) transport.Handler {
	return func(id string, h transport.Handler) transport.Handler {
		return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
			if kind == kindCoordinate {
				if q, ok := emptyWriteContext(p); ok {
					p = q
				}
			}
			return h.Handle(ctx, from, kind, p)
		})
	}
}

// emptyWriteContext rewrites a kindCoordinate payload (flags byte: 1
// deleted, 2 has context | uvarint w+3 | uvarint len(key) | key | uvarint
// len(ctx) | ctx | value) that has a context so that its context is the
// empty clock.
func emptyWriteContext(p []byte) ([]byte, bool) {
	if len(p) < 1 || p[0]&2 == 0 {
		return nil, false
	}
	b := p[1:]
	_, w := binary.Uvarint(b) // the level
	if w <= 0 {
		return nil, false
	}
	b = b[w:]
	n, w := binary.Uvarint(b) // the key
	if w <= 0 || uint64(len(b)-w) < n {
		return nil, false
	}
	b = b[w+int(n):]
	head := p[:len(p)-len(b)]
	n, w = binary.Uvarint(b) // the context
	if w <= 0 || uint64(len(b)-w) < n {
		return nil, false
	}
	value := b[w+int(n):]
	empty := version.EncodeClock(version.Clock{})
	q := slices.Clone(head)
	q = binary.AppendUvarint(q, uint64(len(empty)))
	q = append(q, empty...)
	return append(q, value...), true
}

// dropSiblings rewrites a kindReplicate payload (uvarint len(key) | key |
// encoded object).
func dropSiblings(p []byte) ([]byte, bool) {
	n, w := binary.Uvarint(p)
	if w <= 0 || uint64(len(p)-w) < n {
		return nil, false
	}
	head := p[:w+int(n)]
	obj, err := version.DecodeObject(p[w+int(n):])
	if err != nil || len(obj.Live()) < 2 {
		return nil, false
	}
	win, _ := version.LWW(obj)
	obj.Siblings = []version.Sibling{win}
	return obj.Encode(slices.Clone(head)), true
}

// BugPurgeTombstones is a planted bug, run as Config.Background: every
// few milliseconds it physically removes, from every running node's store,
// each key whose siblings are all tombstones, as a tombstone purge by age
// with no grace period (and no proof that every replica holds the
// tombstone) would. A replica that missed the delete then brings the
// deleted value back.
func BugPurgeTombstones(ctx context.Context, cl *testcluster.Cluster) {
	purge := func() {
		for _, id := range cl.IDs() {
			st, err := cl.StoreOf(id)
			if err != nil {
				continue
			}
			var dead [][]byte
			st.Scan(0, ^uint64(0), func(e replica.Entry) bool {
				if !e.Object.Empty() && e.Object.IsDeleted() {
					dead = append(dead, replica.EncodeKey(nil, e.Key))
				}
				return true
			})
			for _, k := range dead {
				st.DB().Delete(k)
			}
		}
	}
	for {
		purge()
		select {
		case <-ctx.Done():
			purge() // the last deletes' tombstones go too
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// BugDropDeleteReplication is a planted bug: the given nodes acknowledge,
// without storing it, every replicated version (kindReplicate: replication
// and read repair) that carries a tombstone, so that they keep values the
// others deleted although they were never down.
func BugDropDeleteReplication(nodes ...string) func(string, transport.Handler) transport.Handler {
	return func(id string, h transport.Handler) transport.Handler {
		if !slices.Contains(nodes, id) {
			return h
		}
		return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
			if kind == kindReplicate && hasTombstone(p) {
				return nil, nil
			}
			return h.Handle(ctx, from, kind, p)
		})
	}
}

// hasTombstone reports whether a kindReplicate payload (uvarint len(key) |
// key | encoded object) carries a tombstone sibling.
func hasTombstone(p []byte) bool {
	n, w := binary.Uvarint(p)
	if w <= 0 || uint64(len(p)-w) < n {
		return false
	}
	obj, err := version.DecodeObject(p[w+int(n):])
	if err != nil {
		return false
	}
	return slices.ContainsFunc(obj.Siblings, func(s version.Sibling) bool { return s.Deleted })
}

// BugAckBatchesWithoutStoring is a planted bug: the given nodes (all if
// none are named) acknowledge batches of replicated versions
// (kindReplicateBatch: PutBatch replication and hint delivery; checked
// blind writes, answered "stored") without storing them, so that the hints delivered to them are deleted by their
// holders although they never stored them.
func BugAckBatchesWithoutStoring(nodes ...string) func(string, transport.Handler) transport.Handler {
	return func(id string, h transport.Handler) transport.Handler {
		if len(nodes) > 0 && !slices.Contains(nodes, id) {
			return h
		}
		return transport.HandlerFunc(func(ctx context.Context, from string, kind uint8, p []byte) ([]byte, error) {
			switch kind {
			case kindReplicateBatch:
				return nil, nil
			case kindReplicateCovering:
				return coveringReply(p), nil
			}
			return h.Handle(ctx, from, kind, p)
		})
	}
}

// NeverDeliverHints is a planted bug in the handoff configuration: hints
// are kept, but the delivery pass never runs (its interval is an hour),
// as with a handoff that waits for an event that does not come.
func NeverDeliverHints(timeout time.Duration) *handoff.Options {
	o := FastHandoff(timeout)
	o.Interval = time.Hour
	return o
}

// ReuseActorOpener opens every store with the same actor (incarnation 1),
// also after a crash or a wipe: a node on an empty directory mints dots its
// previous life used (the counter-reuse bug), as the server did before
// stores had incarnations.
func ReuseActorOpener(nodeID string, db *storage.DB, wiped bool, incarnation int) (*replica.Store, error) {
	return replica.New(db, version.Actor(nodeID, 1)), nil
}

// FreshActorOpener gives every start of a node a new actor (incarnation
// 1, 2, ...), so that counters are never reused, without replica.Open's
// bookkeeping. Canaries that wipe use it to isolate their planted bug from
// the store's own handling of incarnations.
func FreshActorOpener(nodeID string, db *storage.DB, wiped bool, incarnation int) (*replica.Store, error) {
	return replica.New(db, version.Actor(nodeID, uint64(incarnation))), nil
}

// check the openers' signatures.
var _, _ testcluster.StoreOpener = ReuseActorOpener, FreshActorOpener

// Report fails tb with the violations, the run's seed and how to replay it,
// and the history of the keys involved (compact, one op per line).
func Report(tb testing.TB, res *Result, vs []Violation) {
	tb.Helper()
	if len(vs) == 0 {
		return
	}
	tb.Errorf("%s", Describe(tb, res, vs))
}

// Describe renders violations for a failure message.
func Describe(tb testing.TB, res *Result, vs []Violation) string {
	var b strings.Builder
	top, _, _ := strings.Cut(tb.Name(), "/")
	fmt.Fprintf(&b, "%d violations with seed %d (replay: go test ./internal/faults -run '^%s$' -seed=%d)\n",
		len(vs), res.Cfg.Seed, top, res.Cfg.Seed)
	// Up to 10 violations, taken in turn from each checker's (so that one
	// kind of violation does not hide the others), and the count of each.
	var names []string
	by := map[string][]Violation{}
	for _, v := range vs {
		if by[v.Checker] == nil {
			names = append(names, v.Checker)
		}
		by[v.Checker] = append(by[v.Checker], v)
	}
	var counts []string
	for _, name := range names {
		counts = append(counts, fmt.Sprintf("%s: %d", name, len(by[name])))
	}
	fmt.Fprintf(&b, "  by checker: %s\n", strings.Join(counts, ", "))
	var keys []string
	shown := 0
	for i := 0; shown < 10 && shown < len(vs); i++ {
		for _, name := range names {
			if i < len(by[name]) && shown < 10 {
				v := by[name][i]
				fmt.Fprintf(&b, "  %s\n", v)
				shown++
				if !slices.Contains(keys, v.Key) {
					keys = append(keys, v.Key)
				}
			}
		}
	}
	if len(vs) > shown {
		fmt.Fprintf(&b, "  ... and %d more\n", len(vs)-shown)
	}
	if len(keys) > 2 {
		keys = keys[:2]
	}
	fmt.Fprintf(&b, "summary: %s\n", res.History.Summary())
	fmt.Fprintf(&b, "history of %s:\n%s", strings.Join(keys, ", "), res.History.Format(keys...))
	return b.String()
}

// BugMovesWithoutMerkleCheck is a rebalance that trusts instead of
// checking: a partition a node gains counts as streamed without any
// exchange, and a node drops what it no longer replicates without handing
// it to the owners first. New owners start empty and old ones discard
// their copies, so keys lose replicas with every move.
func BugMovesWithoutMerkleCheck(c *testcluster.Cluster, nodeID string, st *replica.Store, s rebalance.Syncer) rebalance.Syncer {
	return trustingSyncer{Syncer: s, c: c, st: st}
}

type trustingSyncer struct {
	rebalance.Syncer
	c  *testcluster.Cluster
	st *replica.Store
}

func (t trustingSyncer) SyncPartitions(peer string, parts []int) ([]int, error) { return parts, nil }

func (t trustingSyncer) DropPartition(p int, owners []string, dropped func() bool) (int, error) {
	first, last := t.c.View.Ring().PartitionRange(p)
	var keys [][]byte
	if err := t.st.Scan(first, last, func(e replica.Entry) bool {
		keys = append(keys, e.Key)
		return true
	}); err != nil {
		return 0, err
	}
	removed := 0
	for _, k := range keys {
		if ok, err := t.st.RemoveIf(k, func(*version.Object) bool { return true }); err != nil {
			return removed, err
		} else if ok {
			removed++
		}
	}
	return removed, nil
}
