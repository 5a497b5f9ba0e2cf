// Package coordinator runs a key's quorum reads and writes. Any node can
// take a request: a write is forwarded to a primary replica of the key (so
// only primaries stamp versions and clock entries stay bounded by the
// replica count), which stamps it, stores it and sends it to the key's
// other targets, answering after W acknowledgements; a read asks R
// targets, answers with the merge of their answers, and repairs the
// primaries that answered with an older state (read repair).
//
// Targets follow sloppy quorum (ring.Targets): the key's primaries, and in
// place of each primary the failure detector reports down, the first
// healthy fallback of the key's extended preference list. A fallback keeps
// what it receives as a hint for the primary it stands in for (durably,
// before it acknowledges) and as an ordinary object that reads can find;
// once its hint is delivered it removes that object again, unless
// something newer arrived or it has become a replica of the key (see
// standin.go). Per request, PR and PW (Levels) demand answers from
// primaries.
//
// A blind write (no client context) is stamped with what a read quorum
// holds, so that it supersedes every write acknowledged before it: read
// first (writeContext), or, at W = 2 where that read would ask one other
// replica, checked inside the write itself (checked.go).
package coordinator

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// Cluster is what the coordinator needs to know about the cluster: the
// current ring, where each node listens for peer RPCs, and which nodes the
// failure detector thinks are alive.
type Cluster interface {
	Ring() *ring.Ring
	Addr(nodeID string) (string, bool)
	Alive(nodeID string) bool
}

// Options configure a coordinator. Zero fields take their defaults.
type Options struct {
	// R and W are the default read and write quorums. Default: a majority
	// of the key's replicas (QUORUM).
	R, W int
	// Timeout bounds one request, including waiting for replicas.
	// Default: 2s.
	Timeout time.Duration
	// RepairTimeout bounds the background wait for the replicas that did
	// not answer before the read returned. Default: Timeout.
	RepairTimeout time.Duration
	// ReadRepairChance is the fraction of reads that ask every replica
	// (and so repair every stale one); the others ask only R replicas, the
	// local one first, and more only if some fail. Default: 0.1. A negative
	// value means never; 1 means always.
	ReadRepairChance float64
	// SpeculativeDelay is how long a read waits for the replicas it asked
	// before also asking the next one. Default: 20ms.
	SpeculativeDelay time.Duration
	// Now is the clock stamped into siblings. Default: time.Now.
	Now func() time.Time
	// Logf receives notable events. Default: discard.
	Logf func(format string, args ...any)
	// Hints, if set, is given every version a replica of its key did not
	// acknowledge when this node sent it (an error, or no answer within
	// Timeout), for later delivery (hinted handoff: package handoff). Hints
	// are kept even when the write failed its quorum: it may still have
	// been applied, and a hint is merged, so delivering it is idempotent.
	// nil: no hints. When it is also a HintKeeper (as package handoff's
	// Service is), this node can stand in for down primaries as a
	// fallback; otherwise it refuses to.
	Hints Hints
	// Observer, if set, is told of every client request (see Observer).
	Observer Observer
	// ReadBeforeBlindWrite makes every blind write read its context from
	// the replicas first (writeContext), never checking it inside the
	// write instead (see checked.go). For comparisons and tests.
	ReadBeforeBlindWrite bool
	// IgnoreWriteIDs drops the write IDs of client writes (WithWriteID,
	// and those that forwarded writes carry), so that no version this node
	// stamps carries one: for a rolling upgrade from a release before write
	// IDs, whose nodes refuse such versions. Retried writes are then no
	// longer recognized.
	IgnoreWriteIDs bool
}

// Hints keeps the versions that target missed (see Options.Hints). Add is
// called off the request path, after the write's acknowledgements are
// counted; it must not block for long and owns none of its arguments past
// its return (keys are not modified afterwards; objects never are).
type Hints interface {
	Add(target string, keys [][]byte, objs []*version.Object)
}

// HintKeeper is Hints that can also keep versions durably for a primary
// this node stands in for as a fallback (sloppy quorum). Keep stores all of
// them before returning, or keeps none and says why (a bound refused one,
// or the engine failed); the fallback acknowledges only after it returned
// nil.
type HintKeeper interface {
	Hints
	Keep(target string, keys [][]byte, objs []*version.Object) error
}

// HintLedger is a HintKeeper that can also say how many hints it keeps for
// a key, for any target (those of a delivery in progress included). A
// fallback with one re-hints a copy that the delivered hints do not cover
// when no other hint of its key remains (see standin.go).
type HintLedger interface {
	HintKeeper
	PendingFor(key []byte) int
}

// Consistency levels accepted wherever a quorum number is.
const (
	// Default (0) means the coordinator's configured default.
	Default = 0
	// One needs a single replica.
	One = -1
	// Quorum needs a majority of the replicas.
	Quorum = -2
	// All needs every replica.
	All = -3

	// The datacenter levels (see dc.go) count per datacenter, against the
	// ring's ReplicasPerDC; on a ring without it, LocalOne is One and
	// LocalQuorum and EachQuorum are Quorum.

	// LocalOne needs one replica in the local datacenter: the DC of the
	// node the client talked to.
	LocalOne = -4
	// LocalQuorum needs a majority of the local datacenter's replicas.
	LocalQuorum = -5
	// EachQuorum needs a majority of the replicas of every datacenter that
	// holds replicas.
	EachQuorum = -6
)

// levelNames are the named levels, as ParseLevel reads and FormatLevel
// writes them.
var levelNames = map[int]string{
	One: "ONE", Quorum: "QUORUM", All: "ALL",
	LocalOne: "LOCAL_ONE", LocalQuorum: "LOCAL_QUORUM", EachQuorum: "EACH_QUORUM",
}

// ParseLevel parses a quorum: a positive number, or ONE, QUORUM, ALL,
// LOCAL_ONE, LOCAL_QUORUM or EACH_QUORUM (case-insensitive). The empty
// string is Default.
func ParseLevel(s string) (int, error) {
	name := strings.ToUpper(strings.TrimSpace(s))
	if name == "" {
		return Default, nil
	}
	for level, n := range levelNames {
		if n == name {
			return level, nil
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("bad consistency level %q: want a positive number, ONE, QUORUM, ALL, LOCAL_ONE, LOCAL_QUORUM or EACH_QUORUM", s)
	}
	return n, nil
}

// resolve turns a level into a replica count for a key meant to have n
// replicas (N, from the ring's configuration) of which placed are on
// distinct nodes now. Levels count against N, never against placed: an
// acknowledgement at ALL means N copies. A count above placed is refused
// with a QuorumError wrapping ErrTooFewReplicas, before anything is sent.
func resolve(op string, level, def, n, placed int) (int, error) {
	if level == Default {
		level = def
	}
	var count int
	switch level {
	case LocalOne:
		// Without a route (Defaults), a datacenter level counts as the
		// level it is on a ring without ReplicasPerDC.
		count = 1
	case Default, Quorum, LocalQuorum, EachQuorum:
		count = n/2 + 1
	case One:
		count = 1
	case All:
		count = n
	default:
		if level > n {
			return 0, fmt.Errorf("%w: asked for %d replicas but keys have %d", ErrBadLevel, level, n)
		}
		count = level
	}
	if count > placed {
		return 0, &QuorumError{Op: op, Needed: count, Replicas: placed, N: n, Last: ErrTooFewReplicas}
	}
	return count, nil
}

var (
	// ErrBadLevel: a quorum larger than the replica count.
	ErrBadLevel = errors.New("bad consistency level")
	// ErrNoReplicas: the ring has no node that can own the key.
	ErrNoReplicas = errors.New("no replicas: the ring has no eligible nodes")
	// ErrTooFewReplicas: the level asks for more replicas than the ring
	// places for the key now (fewer distinct nodes than N, or a datacenter
	// with no node yet). Nothing was written or read.
	ErrTooFewReplicas = errors.New("too few replicas placed")
	// ErrUnknownOutcome: a forwarded write reached a replica (or may have)
	// but no answer came back; it may or may not have been applied. It is
	// not retried on another replica, which would apply it a second time.
	ErrUnknownOutcome = errors.New("write outcome unknown")
)

// QuorumError says that too few replicas answered in time, or (Last
// wrapping ErrTooFewReplicas) that the ring places too few replicas for the
// level asked. With Primaries set it is about PR or PW: Needed and Answered
// count primaries, and Last wrapping ErrTooFewPrimaries means the request
// was refused before anything was sent because fewer primaries were up.
// A write that fails with a QuorumError after it was sent may still have
// been applied on the nodes that took it.
type QuorumError struct {
	Op        string // "read" or "write"
	Needed    int    // R or W (PR or PW with Primaries)
	Answered  int    // how many answered successfully
	Replicas  int    // replicas placed for this key
	N         int    // replicas the key is meant to have (0: not known)
	Last      error  // one of the errors met, for context
	Primaries bool   // Needed and Answered count primaries (PR, PW)
	// DC, when set, is the datacenter a datacenter level (LOCAL_ONE,
	// LOCAL_QUORUM, EACH_QUORUM) was not met in: Needed, Answered,
	// Replicas and N count that datacenter's replicas only.
	DC string
}

func (e *QuorumError) Error() string {
	if errors.Is(e.Last, ErrTooFewReplicas) {
		if e.DC != "" {
			return fmt.Sprintf("%s refused: %s: it needs %d replicas in datacenter %q but the ring places %d there for this key (%d per key in %q); add nodes there or use another level",
				e.Op, ErrTooFewReplicas, e.Needed, e.DC, e.Replicas, e.N, e.DC)
		}
		return fmt.Sprintf("%s refused: %s: it needs %d replicas but the ring places %d for this key (N=%d); add nodes or use a lower level",
			e.Op, ErrTooFewReplicas, e.Needed, e.Replicas, e.N)
	}
	if e.Primaries {
		return e.primariesError()
	}
	if e.DC != "" {
		s := fmt.Sprintf("%s quorum not reached in datacenter %q: %d of %d required replicas there answered (%d replicas there)",
			e.Op, e.DC, e.Answered, e.Needed, e.Replicas)
		if e.Op == "write" {
			s += "; the write may still have been applied on the nodes that took it"
		}
		if e.Last != nil {
			s += ": " + e.Last.Error()
		}
		return s
	}
	s := fmt.Sprintf("%s quorum not reached: %d of %d required replicas answered (%d replicas)",
		e.Op, e.Answered, e.Needed, e.Replicas)
	if e.Last != nil {
		s += ": " + e.Last.Error()
	}
	return s
}

func (e *QuorumError) primariesError() string {
	level := "pr"
	if e.Op == "write" {
		level = "pw"
	}
	if errors.Is(e.Last, ErrTooFewPrimaries) {
		return fmt.Sprintf("%s refused: %s: %s=%d needs %d primaries but %d of the key's %d are up; nothing was sent (retry later or lower %s)",
			e.Op, ErrTooFewPrimaries, level, e.Needed, e.Needed, e.Answered, e.Replicas, level)
	}
	s := fmt.Sprintf("%s quorum of primaries not reached: %d of %d required primaries answered (%s; %d primaries)",
		e.Op, e.Answered, e.Needed, level, e.Replicas)
	if e.DC != "" {
		s = fmt.Sprintf("%s quorum of primaries not reached in datacenter %q: %d of %d required primaries there answered",
			e.Op, e.DC, e.Answered, e.Needed)
	}
	if e.Op == "write" {
		s += "; the write may still have been applied on the nodes that took it"
	}
	if e.Last != nil {
		s += ": " + e.Last.Error()
	}
	return s
}

func (e *QuorumError) Unwrap() error { return e.Last }

// Coordinator serves reads and writes for the node self.
type Coordinator struct {
	self    string
	cluster Cluster
	store   *replica.Store
	tr      transport.Transport
	o       Options

	// standIns serialise, per stripe of keys, the writes this node takes
	// for keys it is not a primary of with the removal of such copies
	// once their hints are delivered (see standin.go).
	standIns [standInStripes]sync.Mutex

	// noCovering holds the peers that refused kindReplicateCovering as an
	// unknown kind (older nodes): blind writes they are a target of read
	// first.
	noCovering sync.Map

	// combiner combines concurrent checked writes (combine.go).
	combiner checkedCombiner
	// reads combines concurrent single reads (readcombine.go).
	reads readCombiner

	m counters // see Stats
}

// New returns a coordinator for node self.
func New(self string, cluster Cluster, store *replica.Store, tr transport.Transport, o Options) *Coordinator {
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.RepairTimeout <= 0 {
		o.RepairTimeout = o.Timeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SpeculativeDelay <= 0 {
		o.SpeculativeDelay = 20 * time.Millisecond
	}
	if o.ReadRepairChance == 0 {
		o.ReadRepairChance = 0.1
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return &Coordinator{self: self, cluster: cluster, store: store, tr: tr, o: o}
}

// Self returns this node's ID.
func (c *Coordinator) Self() string { return c.self }

// Defaults returns the default R and W for keys meant to have n replicas
// (N, not the replicas placed now: levels count against N).
// A datacenter level is counted for this node's datacenter (EACH_QUORUM:
// the sum of the datacenters' majorities); 0 when it cannot be met here.
func (c *Coordinator) Defaults(n int) (r, w int) {
	rg := c.cluster.Ring()
	count := func(level int) int {
		if level == Default {
			level = Quorum
		}
		if _, perDC := rg.ReplicasIn(""); perDC && isDCLevel(level) {
			nd, err := dcNeeds(level, rg, rg.DC(c.self))
			if err != nil {
				return 0
			}
			return nd.count
		}
		k, _ := resolve("", level, level, n, n)
		return k
	}
	return count(c.o.R), count(c.o.W)
}

func (c *Coordinator) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.o.Timeout)
}

// fullRead decides whether a read asks every replica.
func (c *Coordinator) fullRead() bool {
	return c.o.ReadRepairChance >= 1 || (c.o.ReadRepairChance > 0 && rand.Float64() < c.o.ReadRepairChance)
}

// route is where a request for one key goes: the key's primaries in
// preference order, the sloppy-quorum targets (one per primary: itself, or
// the fallback standing in for it), and N, the replicas the key is meant
// to have.
type route struct {
	pref    []string
	targets []ring.Target
	// pending are the key's pending owners (ring.Pending): nodes joining
	// its preference list, sent every write but not counted toward W.
	pending []string
	n       int
	rg      *ring.Ring // the ring the route was taken from
}

// route returns the key's route in the current ring, or ErrNoReplicas.
func (c *Coordinator) route(key []byte) (route, error) {
	return c.routeIn(c.cluster.Ring(), key)
}

// routeIn is route in a given ring (a batch uses one ring for all its
// keys).
func (c *Coordinator) routeIn(rg *ring.Ring, key []byte) (route, error) {
	p := rg.PartitionOfKey(key)
	pref := rg.Preference(p)
	if len(pref) == 0 {
		return route{}, ErrNoReplicas
	}
	return route{pref: pref, targets: rg.Targets(p, c.healthy), pending: rg.Pending(p), n: rg.Replicas(), rg: rg}, nil
}

// healthy is the failure detector's opinion, this node being up.
func (c *Coordinator) healthy(node string) bool {
	return node == c.self || c.cluster.Alive(node)
}

// primariesUp counts the primaries the failure detector says are up.
func (c *Coordinator) primariesUp(pref []string) int {
	up := 0
	for _, node := range pref {
		if c.healthy(node) {
			up++
		}
	}
	return up
}

// hint hands versions that target did not acknowledge to Options.Hints.
// missed reports whether a replication error means the replica may have
// missed the version, so that it gets a hint: any failure except the
// replica answering that it refuses the version itself (too large to merge
// with what it holds, or malformed). A refused version would be refused
// again on every delivery and hold up the target's other hints; it stays
// with the replicas that took it until a client resolves the key.
func missed(err error) bool {
	if err == nil {
		return false
	}
	var re *transport.RemoteError
	if errors.As(err, &re) {
		for _, refusal := range []error{version.ErrObjectTooLarge, version.ErrMalformed} {
			if strings.Contains(re.Message, refusal.Error()) {
				return false
			}
		}
	}
	return true
}

func (c *Coordinator) hint(target string, keys [][]byte, objs []*version.Object) {
	if c.o.Hints != nil && len(keys) > 0 {
		c.o.Hints.Add(target, keys, objs)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
