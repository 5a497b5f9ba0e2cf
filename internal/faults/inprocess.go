package faults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/internal/testcluster"
	"github.com/ringkv/ringkv/rebalance"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// Workload is what the clients of a run do.
type Workload int

const (
	// Sets: each key is a set; clients add unique elements by
	// read-modify-write with the causal context (checker a).
	Sets Workload = iota + 1
	// Registers: blind writes of unique values, blind deletes and reads
	// (checker b).
	Registers
	// SiblingPairs: writes with the context of a read, half of them as
	// two writes with the same context at the same time, and reads
	// (checker c).
	SiblingPairs
	// ContextRegisters: blind writes and deletes, writes and deletes with
	// the context of a read (read at R or at ONE, written through any node,
	// stale replicas included), PutBatch calls that write one key twice,
	// and reads (checkers b and e).
	ContextRegisters
	// Deletes: reads, blind writes and deletes, writes and deletes with
	// the context of a read (half of them deletes); at the end, while the
	// last faults still hold and with a node down (one is killed if none
	// is, when the schedule kills), one more delete of every other key
	// (the resurrection and deleted-key checkers, with b and e).
	Deletes
)

func (w Workload) String() string {
	switch w {
	case Sets:
		return "sets"
	case Registers:
		return "registers"
	case SiblingPairs:
		return "sibling-pairs"
	case ContextRegisters:
		return "context-registers"
	case Deletes:
		return "deletes"
	}
	return "?"
}

// Faults says which faults the nemesis injects.
type Faults struct {
	// Kill nodes (a crash: unsynced data lost) and restart them on their
	// disks. MarkDown also tells the failure detector, most of the time.
	Kill, MarkDown bool
	// Partition the nodes in two, and Cut single links one way.
	Partition, Cut bool
	// Isolate one node from all the others (both ways) until the network
	// heals: it misses the writes meanwhile, a stale replica afterwards.
	// Deafen one node: cut every link into it, one way, so that it misses
	// the other replicas' writes but can still coordinate writes of its own
	// (a stale replica that takes writes, until the network heals and read
	// repair or a write it coordinates brings it up to date).
	Isolate, Deafen bool
	// Skew node clocks by up to ±2 s.
	Skew bool
	// WipeNode, if set, is restarted on an empty directory now and then.
	// Only that node is ever wiped, so with W ≥ 2 no acknowledged write
	// loses every copy.
	WipeNode string
	// Interval is the mean time between fault events. Default 60ms.
	Interval time.Duration
}

// Config is one run: a cluster, a workload, faults, and a seed that fixes
// the fault schedule and every client's choices (not the goroutine
// interleaving, which the Go scheduler decides).
type Config struct {
	Seed                        int64
	Nodes, Replicas, Partitions int // defaults 5, 3, 16
	Keys, Clients               int // defaults 4, 4
	// Duration of the workload under faults. Default 1.2s.
	Duration time.Duration
	// R and W are the levels clients ask for (coordinator.One, Quorum, All
	// or a number). Default Quorum.
	R, W int
	// Strict makes clients demand primaries (strict quorum: pr = R,
	// pw = W) instead of the default sloppy quorum, under which fallback
	// nodes stand in for primaries marked down. The R+W>N guarantees
	// (checkers b and e, and Coverage's rule for blind writes) hold only
	// at strict quorum.
	Strict   bool
	Workload Workload
	Faults   Faults
	// Timeout is the coordinators' request timeout. Default 300ms.
	Timeout time.Duration

	// Harness variants, for planting bugs in canaries.
	WrapHandler func(nodeID string, h transport.Handler) transport.Handler
	OpenStore   testcluster.StoreOpener
	// LWWClient makes set clients resolve siblings by last-write-wins and
	// write blind (a client bug checker a must catch).
	LWWClient bool
	// RetryUnknown makes clients send a write whose outcome is unknown
	// (Info) again, through up to two other nodes, as the Go client does:
	// the same value and context, under one write ID
	// (coordinator.WithWriteID). The write's op is OK once an attempt is,
	// else Info if any attempt was. RetryWithoutID retries without the ID
	// (a client before write IDs: the bug the set checker's duplicate
	// check must catch).
	RetryUnknown, RetryWithoutID bool

	// BigValues: in the context-register workload, about one write in
	// five carries a value of 1-32 KiB instead of a few bytes.
	BigValues bool

	// Handoff, if set, runs every node with hinted handoff (FastHandoff is
	// the usual choice). The run then samples the nodes' hint records, and
	// after the heal waits up to HintDeadline (default 3s) for every hint
	// to be delivered before any final read (Result.Hints, for
	// CheckHintsDelivered).
	Handoff      *handoff.Options
	HintDeadline time.Duration
	// Background, if set, runs from the start of the workload until just
	// before the heal (a planted bug acting on the nodes' stores).
	Background func(ctx context.Context, cl *testcluster.Cluster)
	// ReadRepairChance is the coordinators' (0: their default; -1: no
	// read asks every replica).
	ReadRepairChance float64
	// CatchUpDeadline bounds the returning-node scenario's wait for the
	// returned node to hold every other replica's state. Default 5s.
	CatchUpDeadline time.Duration
	// AntiEntropy, if set, runs every node with anti-entropy (package
	// antientropy) with these options (FastAntiEntropy is the usual choice).
	AntiEntropy *antientropy.Options
	// WipeReturning makes the returning-node scenario restart the node on
	// an empty disk (a replaced disk) instead of on its own data.
	WipeReturning bool
	// Moves, if set, joins and decommissions nodes during the workload
	// (see Moves); the cluster then has Moves.Join spare nodes beyond
	// Nodes, and runs the rebalance service with Rebalance (default
	// FastRebalance) and anti-entropy (default FastAntiEntropy(100ms, -1)).
	Moves     *Moves
	Rebalance *rebalance.Options
	// WrapSyncer plants a bug in the moves (testcluster.Options.WrapSyncer).
	WrapSyncer func(c *testcluster.Cluster, nodeID string, st *replica.Store, s rebalance.Syncer) rebalance.Syncer
}

// FastAntiEntropy is anti-entropy with rounds every interval, no rate
// bound, a call to a peer cut off by the nemesis given up after a second,
// and tombstones purged (by the real rule: every replica verified
// to hold them) once grace has passed; a negative grace never purges.
func FastAntiEntropy(interval, grace time.Duration) *antientropy.Options {
	return &antientropy.Options{Interval: interval, Rate: -1, TombstoneGrace: grace, Timeout: time.Second}
}

// levels are a client request's levels: r and w, and under Strict as many
// primaries (pr = r, pw = w).
func (c *Config) levels(r, w int) coordinator.Levels {
	lv := coordinator.Levels{R: r, W: w}
	if c.Strict {
		lv.PR, lv.PW = r, w
	}
	return lv
}

func (c *Config) defaults() {
	if c.Nodes == 0 {
		c.Nodes = 5
	}
	if c.Replicas == 0 {
		c.Replicas = 3
	}
	if c.Partitions == 0 {
		c.Partitions = 16
	}
	if c.Keys == 0 {
		c.Keys = 4
	}
	if c.Clients == 0 {
		c.Clients = 4
	}
	if c.Duration == 0 {
		c.Duration = 1200 * time.Millisecond
	}
	if c.R == 0 {
		c.R = coordinator.Quorum
	}
	if c.W == 0 {
		c.W = coordinator.Quorum
	}
	if c.Timeout == 0 {
		c.Timeout = 300 * time.Millisecond
	}
	if c.Faults.Interval == 0 {
		c.Faults.Interval = 60 * time.Millisecond
	}
	if c.HintDeadline == 0 {
		c.HintDeadline = 3 * time.Second
	}
	if c.CatchUpDeadline == 0 {
		c.CatchUpDeadline = 5 * time.Second
	}
	if c.Moves != nil {
		if c.Rebalance == nil {
			c.Rebalance = FastRebalance()
		}
		if c.AntiEntropy == nil {
			c.AntiEntropy = FastAntiEntropy(100*time.Millisecond, -1)
		}
	}
}

// LevelName renders a coordinator level.
func LevelName(l int) string {
	switch l {
	case coordinator.One:
		return "ONE"
	case coordinator.Quorum:
		return "QUORUM"
	case coordinator.All:
		return "ALL"
	case coordinator.Default:
		return "DEFAULT"
	}
	return fmt.Sprint(l)
}

// QuorumOf is the replica count a level stands for with n replicas.
func QuorumOf(l, n int) int {
	switch l {
	case coordinator.One:
		return 1
	case coordinator.Quorum, coordinator.Default:
		return n/2 + 1
	case coordinator.All:
		return n
	}
	return l
}

// Result is a finished run: its history, the final reads at R=ALL after
// healing, and each key's replicas' stored objects after that.
type Result struct {
	Cfg      Config
	History  *History
	Keys     []string
	Final    map[string]ReadResult
	Replicas map[string][]ReplicaState
	Cluster  *testcluster.Cluster
	Stats    *Stats
	sampler  *hintSampler
	// Hints is what the run learned of its hints (Config.Handoff only).
	Hints *HintReport
	// Returning-node scenario only (RunReturningNode): the node that was
	// down, every node's full local contents once it caught up (or at the
	// deadline), and how long after its restart that took (-1: never).
	Returned string
	Contents map[string]map[string]*version.Object
	CaughtUp time.Duration
	// Moves is what an elastic run saw after the heal (Config.Moves only).
	Moves *MovesReport
}

// Stats counts what the context-register workload exercised, so that a
// test can show its schedules reach the cases they exist for.
type Stats struct {
	// ContextWrites counts writes and deletes with a context. Of them,
	// StaleCoordinator counts those whose coordinating replica (the node
	// written through, or, for a node that is not a replica, the replica
	// it forwards to first) stored, just before the write, a context that
	// does not descend the write's context; StaleCounter those where that
	// replica knew every actor of the write's context but was behind on
	// some counter (the write names a later write of an actor it knows).
	ContextWrites, StaleCoordinator, StaleCounter atomic.Int64
	// Batches counts PutBatch calls, each with one key written twice;
	// BatchesLocal those sent to a replica of the repeated key (which
	// coordinates the batch's writes of it itself).
	Batches, BatchesLocal atomic.Int64
	// Retries counts writes sent again after an unknown outcome
	// (Config.RetryUnknown).
	Retries atomic.Int64
}

func (s *Stats) String() string {
	return fmt.Sprintf("context writes %d (coordinated by a stale replica: %d, of which behind on a counter: %d); batches %d (%d coordinated by a replica of the repeated key); writes retried %d",
		s.ContextWrites.Load(), s.StaleCoordinator.Load(), s.StaleCounter.Load(), s.Batches.Load(), s.BatchesLocal.Load(), s.Retries.Load())
}

// Run runs cfg against an in-process cluster (crashable engines on strict
// in-memory filesystems) and returns the result for the checkers.
func Run(tb testing.TB, cfg Config) *Result {
	tb.Helper()
	cfg.defaults()
	res := newRun(tb, cfg)
	cfg, cl, h := res.Cfg, res.Cluster, res.History
	h.Event("start: %s, seed %d, %d nodes, N=%d, R=%s W=%s", cfg.Workload, cfg.Seed, cfg.Nodes, cfg.Replicas, LevelName(cfg.R), LevelName(cfg.W))
	stopBackground := res.background()

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			c := &client{id: id, cfg: &cfg, cl: cl, h: h, keys: res.Keys, stats: res.Stats,
				rng: rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(id)+1))}
			c.loop(ctx)
		}(i)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		nemesis(ctx, &cfg, cl, h)
	}()
	if cfg.Moves != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			moveNemesis(ctx, &cfg, res)
		}()
	}
	wg.Wait()
	if cfg.Workload == Deletes {
		if cfg.Faults.Kill {
			res.killOneForTheEnd()
		}
		res.closingDeletes()
	}
	stopBackground()

	// Heal, let in-flight replication end, wait for the hints to be
	// delivered, then read everything at ALL.
	cl.Heal()
	h.Event("healed")
	time.Sleep(2 * cfg.Timeout)
	if res.sampler != nil {
		res.sampler.sample(cl)
		res.Hints = res.sampler.drain(cl, cfg.HintDeadline)
		h.Event("hints drained in %v (deadline %v)", res.Hints.Wait.Round(time.Millisecond), cfg.HintDeadline)
	}
	if cfg.Moves != nil {
		res.waitMoves()
	}
	res.finalReads()
	res.collectReplicas()
	return res
}

// newRun starts the cluster of a run.
func newRun(tb testing.TB, cfg Config) *Result {
	tb.Helper()
	cfg.defaults()
	nodes, spare := cfg.Nodes, 0
	if cfg.Moves != nil {
		spare = cfg.Moves.Join
		nodes += spare
	}
	cl := testcluster.New(tb, testcluster.Options{
		Nodes: nodes, Spare: spare, Rebalance: cfg.Rebalance, WrapSyncer: cfg.WrapSyncer, Replicas: cfg.Replicas, Partitions: cfg.Partitions, Seed: cfg.Seed,
		Coordinator: coordinator.Options{Timeout: cfg.Timeout, ReadRepairChance: cfg.ReadRepairChance},
		WrapHandler: cfg.WrapHandler,
		OpenStore:   cfg.OpenStore,
		Handoff:     cfg.Handoff,
		AntiEntropy: cfg.AntiEntropy,
		Crashable:   true,
	})
	cl.Net.SetDefaultTimeout(2 * cfg.Timeout)
	res := &Result{Cfg: cfg, History: NewHistory(), Cluster: cl, Final: map[string]ReadResult{}, Stats: &Stats{}}
	for i := 0; i < cfg.Keys; i++ {
		res.Keys = append(res.Keys, fmt.Sprintf("k%d", i))
	}
	if cfg.Handoff != nil {
		res.sampler = newHintSampler(res.History)
	}
	return res
}

// background starts Config.Background and, with hinted handoff, the
// sampling of hint records; the returned function stops both and waits.
func (res *Result) background() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if f := res.Cfg.Background; f != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx, res.Cluster)
		}()
	}
	if s := res.sampler; s != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				s.sample(res.Cluster)
				select {
				case <-ctx.Done():
					return
				case <-time.After(30 * time.Millisecond):
				}
			}
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// killOneForTheEnd kills a node (chosen by the seed, and the failure
// detector told) unless one is down already, so that the closing deletes
// always miss a replica that comes back at the heal with the values they
// deleted.
func (res *Result) killOneForTheEnd() {
	cl := res.Cluster
	ids := cl.IDs()
	for _, id := range ids {
		if cl.IsDown(id) {
			return
		}
	}
	rng := rand.New(rand.NewPCG(uint64(res.Cfg.Seed), 0xe4d))
	id := ids[rng.IntN(len(ids))]
	cl.Kill(id)
	cl.View.SetAlive(id, false)
	res.History.Event("kill %s before the closing deletes (detector told: true)", id)
}

// closingDeletes deletes every other key once more, blind or with the
// context of a read, while the last faults still hold: through random
// running nodes until one attempt's outcome is not Fail (a Fail applied
// nothing, so trying another node is no blind retry). The keys whose
// writes are then all covered by acknowledged deletes are the ones
// CheckDeletedGone checks.
func (res *Result) closingDeletes() {
	cfg := &res.Cfg
	c := &client{id: cfg.Clients, cfg: cfg, cl: res.Cluster, h: res.History, keys: res.Keys, stats: res.Stats,
		rng: rand.New(rand.NewPCG(uint64(cfg.Seed), 0xde1))}
	ids := res.Cluster.IDs()
	for i, key := range res.Keys {
		if i%2 != 0 {
			continue
		}
		for _, p := range c.rng.Perm(len(ids)) {
			node := ids[p]
			var op *Op
			if i%4 == 0 {
				op = c.h.Invoke(c.writeOp(node, key, Delete, "", false, nil))
				c.put(op, node, key, nil, nil, true)
			} else {
				rop, obj := c.read(node, key)
				if !rop.Acked() {
					continue
				}
				causal := version.Clock{}
				if obj != nil {
					causal = obj.Context.Clone()
				}
				o := c.writeOp(node, key, Delete, "", true, rop.Read.Values)
				o.SawTomb = rop.Read.Tombstones > 0
				op = c.h.Invoke(o)
				c.put(op, node, key, nil, causal, true)
			}
			if op.Outcome != Fail {
				break
			}
		}
	}
}

// finalReads reads every key at R=ALL, through each node in turn until one
// read succeeds.
func (res *Result) finalReads() {
	cl, h := res.Cluster, res.History
	ids := cl.IDs()
	for _, key := range res.Keys {
		for attempt := 0; attempt < 2*len(ids); attempt++ {
			node := ids[attempt%len(ids)]
			op := h.Invoke(Op{Client: -1, Node: node, Kind: Read, Key: key, Level: "ALL", Quorum: res.Cfg.Replicas})
			rr, err := getAt(cl, node, key, coordinator.All, 2*res.Cfg.Timeout)
			if err != nil {
				h.Complete(op, Info, err)
				time.Sleep(20 * time.Millisecond)
				continue
			}
			op.Read = rr
			h.Complete(op, OK, nil)
			res.Final[key] = rr
			break
		}
	}
}

// collectReplicas reads each key's replicas' stored objects until they agree
// (read repair runs in the background after a read, so a key that differs
// is read at ALL again) or 3 s pass.
func (res *Result) collectReplicas() {
	cl := res.Cluster
	deadline := time.Now().Add(3 * time.Second)
	for {
		res.Replicas = map[string][]ReplicaState{}
		var differ []string
		for _, key := range res.Keys {
			var states []ReplicaState
			for _, n := range cl.Replicas([]byte(key)) {
				st := ReplicaState{Node: n.ID}
				s, err := cl.StoreOf(n.ID)
				if err == nil {
					st.Obj, err = s.Get([]byte(key))
				}
				st.Err = err
				states = append(states, st)
			}
			res.Replicas[key] = states
			if len(CheckConverged(map[string][]ReplicaState{key: states})) > 0 {
				differ = append(differ, key)
			}
		}
		if len(differ) == 0 || time.Now().After(deadline) {
			return
		}
		for i, key := range differ {
			ids := cl.IDs()
			getAt(cl, ids[i%len(ids)], key, coordinator.All, 2*res.Cfg.Timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getAt(cl *testcluster.Cluster, node, key string, r int, timeout time.Duration) (ReadResult, error) {
	co, err := cl.Coord(node)
	if err != nil {
		return ReadResult{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	obj, err := co.Get(ctx, []byte(key), r)
	if err != nil {
		return ReadResult{}, err
	}
	return ResultOf(obj), nil
}

// ResultOf converts a read's object.
func ResultOf(obj *version.Object) ReadResult {
	rr := ReadResult{Exists: !obj.Empty()}
	for _, s := range obj.Live() {
		rr.Values = append(rr.Values, string(s.Value))
	}
	if obj != nil {
		for _, s := range obj.Siblings {
			if s.Deleted {
				rr.Tombstones++
			}
		}
	}
	sort.Strings(rr.Values)
	return rr
}

// classify turns a write's error into an outcome: only errors that prove
// nothing was stored are Fail. (A level refused because the ring places
// too few replicas is one too; it is left Info here, which is always safe
// for the checkers, and does not happen in these rings.)
func classify(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, testcluster.ErrNodeDown),
		errors.Is(err, coordinator.ErrTooFewPrimaries),
		errors.Is(err, coordinator.ErrBadLevel),
		errors.Is(err, coordinator.ErrNoReplicas):
		return Fail
	}
	return Info
}

type client struct {
	id    int
	cfg   *Config
	cl    *testcluster.Cluster
	h     *History
	keys  []string
	rng   *rand.Rand
	seq   int
	stats *Stats
}

func (c *client) loop(ctx context.Context) {
	ids := c.cl.IDs()
	for ctx.Err() == nil {
		key := c.keys[c.rng.IntN(len(c.keys))]
		node := ids[c.rng.IntN(len(ids))]
		switch c.cfg.Workload {
		case Sets:
			c.add(node, key)
		case Registers:
			c.register(node, key)
		case SiblingPairs:
			c.siblings(node, key)
		case ContextRegisters:
			c.contextRegister(node, key)
		case Deletes:
			c.deletes(node, key)
		}
		// A little think time, so faults and ops interleave.
		time.Sleep(time.Duration(c.rng.IntN(4)) * time.Millisecond)
	}
}

func (c *client) value(key string) string {
	c.seq++
	return fmt.Sprintf("%s.c%d.%d", key, c.id, c.seq)
}

func (c *client) opCtx() (context.Context, context.CancelFunc) {
	// Longer than the coordinator's timeout, so that a slow answer is the
	// coordinator's to report; a deadline here is an indeterminate outcome.
	return context.WithTimeout(context.Background(), 3*c.cfg.Timeout)
}

func (c *client) read(node, key string) (*Op, *version.Object) {
	return c.readAt(node, key, c.cfg.R)
}

func (c *client) readAt(node, key string, level int) (*Op, *version.Object) {
	op := c.h.Invoke(Op{Client: c.id, Node: node, Kind: Read, Key: key, Level: LevelName(level), Quorum: QuorumOf(level, c.cfg.Replicas)})
	co, err := c.cl.Coord(node)
	if err != nil {
		c.h.Complete(op, Fail, err)
		return op, nil
	}
	ctx, cancel := c.opCtx()
	defer cancel()
	obj, err := co.GetAt(ctx, []byte(key), c.cfg.levels(level, coordinator.Default))
	if err != nil {
		c.h.Complete(op, Info, err)
		return op, nil
	}
	op.Read = ResultOf(obj)
	c.h.Complete(op, OK, nil)
	return op, obj
}

// put writes through node; causal nil is a blind write. With
// Config.RetryUnknown, a write of unknown outcome is sent again through
// other nodes.
func (c *client) put(op *Op, node, key string, value []byte, causal version.Clock, del bool) {
	base := context.Background()
	if c.cfg.RetryUnknown && !c.cfg.RetryWithoutID {
		base = coordinator.WithWriteID(base, c.rng.Uint64()|1)
	}
	nodes := []string{node}
	if c.cfg.RetryUnknown {
		for _, i := range c.rng.Perm(len(c.cl.IDs())) {
			if id := c.cl.IDs()[i]; id != node && len(nodes) < 3 {
				nodes = append(nodes, id)
			}
		}
	}
	outcome, lastErr := Fail, error(nil)
	for _, via := range nodes {
		err := c.attemptPut(base, via, key, value, causal, del)
		switch classify(err) {
		case OK:
			outcome, lastErr = OK, nil
		case Info:
			outcome, lastErr = Info, err
		default:
			if outcome == Fail {
				lastErr = err
			}
		}
		if outcome == OK || !c.cfg.RetryUnknown || classify(err) != Info {
			break
		}
		c.stats.Retries.Add(1)
	}
	c.h.Complete(op, outcome, lastErr)
}

// attemptPut is one attempt of a put through node.
func (c *client) attemptPut(base context.Context, node, key string, value []byte, causal version.Clock, del bool) error {
	co, err := c.cl.Coord(node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(base, 3*c.cfg.Timeout)
	defer cancel()
	if del {
		_, err = co.DeleteAt(ctx, []byte(key), causal, c.cfg.levels(coordinator.Default, c.cfg.W))
	} else {
		_, err = co.PutAt(ctx, []byte(key), value, causal, c.cfg.levels(coordinator.Default, c.cfg.W))
	}
	return err
}

func (c *client) writeOp(node, key string, kind Kind, value string, hasCtx bool, saw []string) Op {
	return Op{Client: c.id, Node: node, Kind: kind, Key: key, Value: value, Context: hasCtx, Saw: saw,
		Level: LevelName(c.cfg.W), Quorum: QuorumOf(c.cfg.W, c.cfg.Replicas)}
}

// add is one read-modify-write of the set workload.
func (c *client) add(node, key string) {
	elem := c.value(key)
	op := c.h.Invoke(c.writeOp(node, key, Add, elem, !c.cfg.LWWClient, nil))
	co, err := c.cl.Coord(node)
	if err != nil {
		c.h.Complete(op, Fail, err)
		return
	}
	ctx, cancel := c.opCtx()
	obj, err := co.GetAt(ctx, []byte(key), c.cfg.levels(c.cfg.R, coordinator.Default))
	cancel()
	if err != nil {
		c.h.Complete(op, Fail, fmt.Errorf("read before the add: %w", err))
		return
	}
	var values []string
	var causal version.Clock
	if c.cfg.LWWClient {
		// The planted client bug: keep only the sibling with the newest
		// wall-clock timestamp and write blind.
		if w, ok := version.LWW(obj); ok && !w.Deleted {
			values = []string{string(w.Value)}
		}
	} else {
		values = ResultOf(obj).Values
		causal = version.Clock{}
		if obj != nil {
			causal = obj.Context
		}
	}
	set := DecodeSets(values)
	set[elem] = true
	op.Saw = values
	c.put(op, node, key, []byte(EncodeSet(set)), causal, false)
}

// register is one op of the register workload.
func (c *client) register(node, key string) {
	switch p := c.rng.Float64(); {
	case p < 0.45:
		c.read(node, key)
	case p < 0.55:
		op := c.h.Invoke(c.writeOp(node, key, Delete, "", false, nil))
		c.put(op, node, key, nil, nil, true)
	default:
		v := c.value(key)
		op := c.h.Invoke(c.writeOp(node, key, Put, v, false, nil))
		c.put(op, node, key, []byte(v), nil, false)
	}
}

// siblings is one op of the sibling workload: a read, then one write or two
// concurrent writes (from this client and a twin, client id+100) with its
// context.
func (c *client) siblings(node, key string) {
	rop, obj := c.read(node, key)
	if !rop.Acked() || c.rng.Float64() < 0.2 {
		return
	}
	causal := version.Clock{}
	if obj != nil {
		causal = obj.Context
	}
	saw := rop.Read.Values
	if c.rng.Float64() < 0.5 {
		v := c.value(key)
		op := c.h.Invoke(c.writeOp(node, key, Put, v, true, saw))
		c.put(op, node, key, []byte(v), causal, false)
		return
	}
	ids := c.cl.IDs()
	nodes := []string{node, ids[c.rng.IntN(len(ids))]}
	vals := []string{c.value(key), c.value(key)}
	var wg sync.WaitGroup
	for i := range 2 {
		o := c.writeOp(nodes[i], key, Put, vals[i], true, saw)
		o.Client = c.id + 100*i
		op := c.h.Invoke(o)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.put(op, nodes[i], key, []byte(vals[i]), causal.Clone(), false)
		}()
	}
	wg.Wait()
}

// bigValue makes v (a unique value) large now and then, when cfg asks:
// 1-32 KiB, with v at both ends so that an abbreviated value still names
// its write.
func (c *client) bigValue(v string) string {
	if !c.cfg.BigValues || c.rng.Float64() >= 0.2 {
		return v
	}
	n := 1<<10 + c.rng.IntN(31<<10)
	return v + "|" + strings.Repeat("x", n) + "|" + v
}

// contextRegister is one op of the context-register workload.
func (c *client) contextRegister(node, key string) {
	switch p := c.rng.Float64(); {
	case p < 0.3:
		c.read(node, key)
	case p < 0.45:
		v := c.bigValue(c.value(key))
		op := c.h.Invoke(c.writeOp(node, key, Put, v, false, nil))
		c.put(op, node, key, []byte(v), nil, false)
	case p < 0.5:
		op := c.h.Invoke(c.writeOp(node, key, Delete, "", false, nil))
		c.put(op, node, key, nil, nil, true)
	case p < 0.85:
		c.contextWrite(key, 0.3)
	default:
		c.batch(node, key)
	}
}

// deletes is one op of the delete workload: reads, blind writes and
// deletes, and writes and deletes with a read's context (half of them
// deletes).
func (c *client) deletes(node, key string) {
	switch p := c.rng.Float64(); {
	case p < 0.25:
		c.read(node, key)
	case p < 0.5:
		v := c.value(key)
		op := c.h.Invoke(c.writeOp(node, key, Put, v, false, nil))
		c.put(op, node, key, []byte(v), nil, false)
	case p < 0.65:
		op := c.h.Invoke(c.writeOp(node, key, Delete, "", false, nil))
		c.put(op, node, key, nil, nil, true)
	default:
		c.contextWrite(key, 0.5)
	}
}

// contextWrite reads key (at R, or at ONE half of the time, through a
// random node, a replica of the key half of the time) and writes a new
// value or (with probability delP) a delete with the read's context
// through another random node, a replica of the key most of the time: with
// replicas left behind by the faults, now and then a stale one.
func (c *client) contextWrite(key string, delP float64) {
	ids := c.cl.IDs()
	level := c.cfg.R
	if c.rng.Float64() < 0.5 {
		level = coordinator.One
	}
	pref := c.cl.Replicas([]byte(key))
	pick := func(pReplica float64) string {
		if c.rng.Float64() < pReplica {
			return pref[c.rng.IntN(len(pref))].ID
		}
		return ids[c.rng.IntN(len(ids))]
	}
	rop, obj := c.readAt(pick(0.5), key, level)
	if !rop.Acked() {
		return
	}
	causal := version.Clock{}
	if obj != nil {
		causal = obj.Context.Clone()
	}
	wnode := pick(0.7)
	del := c.rng.Float64() < delP
	kind, v := Put, ""
	if del {
		kind = Delete
	} else {
		v = c.bigValue(c.value(key))
	}
	o := c.writeOp(wnode, key, kind, v, true, rop.Read.Values)
	o.SawTomb = rop.Read.Tombstones > 0
	c.countStale(wnode, key, causal)
	op := c.h.Invoke(o)
	c.put(op, wnode, key, []byte(v), causal, del)
}

// countStale counts a context write in Stats, and whether the replica that
// will coordinate it (node, or the first alive replica node forwards to)
// stores a context that does not descend causal.
func (c *client) countStale(node, key string, causal version.Clock) {
	c.stats.ContextWrites.Add(1)
	pref := c.cl.Replicas([]byte(key))
	coord := pref[0].ID
	if slices.ContainsFunc(pref, func(n *testcluster.Node) bool { return n.ID == node }) {
		coord = node
	} else if i := slices.IndexFunc(pref, func(n *testcluster.Node) bool { return c.cl.View.Alive(n.ID) }); i >= 0 {
		coord = pref[i].ID
	}
	st, err := c.cl.StoreOf(coord)
	if err != nil {
		return
	}
	obj, err := st.Get([]byte(key))
	if err != nil {
		return
	}
	var have version.Clock
	if obj != nil {
		have = obj.Context
	}
	if have.Descends(causal) {
		return
	}
	c.stats.StaleCoordinator.Add(1)
	for a := range causal {
		if causal[a] > 0 && have[a] == 0 {
			return // an actor it does not know: refused, then learned
		}
	}
	c.stats.StaleCounter.Add(1)
}

var batchSeq atomic.Int64

// batch is one PutBatch call through node: key written twice (blind, two
// new values), and another key once half of the time.
func (c *client) batch(node, key string) {
	id := int(batchSeq.Add(1))
	keys := []string{key}
	if c.rng.Float64() < 0.5 {
		keys = append(keys, c.keys[c.rng.IntN(len(c.keys))])
	}
	keys = append(keys, key)
	c.rng.Shuffle(len(keys)-1, func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	c.stats.Batches.Add(1)
	for _, n := range c.cl.Replicas([]byte(key)) {
		if n.ID == node {
			c.stats.BatchesLocal.Add(1)
		}
	}
	ops := make([]*Op, len(keys))
	bkeys := make([][]byte, len(keys))
	values := make([][]byte, len(keys))
	earlier := map[string][]string{}
	for i, k := range keys {
		v := c.bigValue(c.value(k))
		o := c.writeOp(node, k, Put, v, false, slices.Clone(earlier[k]))
		o.Batch = id
		earlier[k] = append(earlier[k], v)
		ops[i] = c.h.Invoke(o)
		bkeys[i], values[i] = []byte(k), []byte(v)
	}
	co, err := c.cl.Coord(node)
	if err != nil {
		for _, op := range ops {
			c.h.Complete(op, Fail, err)
		}
		return
	}
	ctx, cancel := c.opCtx()
	defer cancel()
	errs := co.PutBatchAt(ctx, bkeys, values, c.cfg.levels(coordinator.Default, c.cfg.W))
	for i, op := range ops {
		c.h.Complete(op, classify(errs[i]), errs[i])
	}
}

// nemesis injects faults from cfg.Seed until ctx ends.
func nemesis(ctx context.Context, cfg *Config, cl *testcluster.Cluster, h *History) {
	f := cfg.Faults
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0xfa17))
	ids := cl.IDs()
	maxDown := (cfg.Nodes - 1) / 2
	type action struct {
		name string
		do   func()
	}
	var actions []action
	down := func() []string {
		var d []string
		for _, id := range ids {
			if cl.IsDown(id) {
				d = append(d, id)
			}
		}
		return d
	}
	if f.Kill {
		actions = append(actions, action{"kill", func() {
			if len(down()) >= maxDown {
				return
			}
			id := ids[rng.IntN(len(ids))]
			mark := f.MarkDown && rng.Float64() < 0.7
			cl.Kill(id)
			if mark {
				cl.View.SetAlive(id, false)
			}
			h.Event("kill %s (detector told: %v)", id, mark)
		}}, action{"restart", func() {
			d := down()
			if len(d) == 0 {
				return
			}
			id := d[rng.IntN(len(d))]
			cl.Restart(id)
			cl.View.SetAlive(id, true)
			h.Event("restart %s", id)
		}})
	}
	if f.Partition {
		actions = append(actions, action{"partition", func() {
			perm := rng.Perm(len(ids))
			k := 1 + rng.IntN(len(ids)-1)
			var a, b []string
			for i, p := range perm {
				if i < k {
					a = append(a, ids[p])
				} else {
					b = append(b, ids[p])
				}
			}
			slices.Sort(a)
			slices.Sort(b)
			cl.Net.Partition(a, b)
			h.Event("partition %s | %s", strings.Join(a, ","), strings.Join(b, ","))
		}})
	}
	if f.Cut {
		actions = append(actions, action{"cut", func() {
			from := ids[rng.IntN(len(ids))]
			to := ids[rng.IntN(len(ids))]
			if from == to {
				return
			}
			cl.Net.Cut(from, to)
			h.Event("cut %s -> %s", from, to)
		}})
	}
	if f.Isolate {
		actions = append(actions, action{"isolate", func() {
			id := ids[rng.IntN(len(ids))]
			cl.Net.Isolate(id)
			h.Event("isolate %s", id)
		}})
	}
	if f.Deafen {
		actions = append(actions, action{"deafen", func() {
			id := ids[rng.IntN(len(ids))]
			for _, from := range ids {
				if from != id {
					cl.Net.Cut(from, id)
				}
			}
			h.Event("deafen %s (every link into it cut)", id)
		}})
	}
	if f.Partition || f.Cut || f.Isolate || f.Deafen {
		actions = append(actions, action{"heal-net", func() {
			cl.Net.Heal()
			h.Event("heal network")
		}})
	}
	if f.Skew {
		actions = append(actions, action{"skew", func() {
			id := ids[rng.IntN(len(ids))]
			d := time.Duration(rng.Int64N(int64(4*time.Second))) - 2*time.Second
			cl.SetClockSkew(id, d)
			h.Event("skew %s by %v", id, d.Round(time.Millisecond))
		}})
	}
	if f.WipeNode != "" {
		wipe := action{"wipe", func() {
			cl.RestartWiped(f.WipeNode)
			cl.View.SetAlive(f.WipeNode, true)
			h.Event("restart %s on an empty directory", f.WipeNode)
		}}
		actions = append(actions, wipe)
		// One wipe a third of the way in, so the wiped node serves a
		// while in its new life.
		var bg sync.WaitGroup
		defer bg.Wait()
		bg.Add(1)
		go func() {
			defer bg.Done()
			select {
			case <-time.After(cfg.Duration / 3):
				wipe.do()
			case <-ctx.Done():
			}
		}()
	}
	if len(actions) == 0 {
		<-ctx.Done()
		return
	}
	for {
		d := time.Duration(float64(f.Interval) * (0.5 + rng.Float64()))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		actions[rng.IntN(len(actions))].do()
	}
}
