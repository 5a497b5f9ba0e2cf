package faults

import (
	"flag"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringkv/ringkv/coordinator"
)

var (
	seedFlag  = flag.Int64("seed", 0, "run each schedule with this seed only (0: -seeds random seeds, printed)")
	seedsFlag = flag.Int("seeds", 3, "how many seeds each schedule runs when -seed is not given")
	durFlag   = flag.Duration("duration", 0, "workload time per run (0: each test's default)")
)

// seeds returns the seeds a schedule runs: -seed, or -seeds random ones.
func seeds(t *testing.T) []int64 {
	if *seedFlag != 0 {
		return []int64{*seedFlag}
	}
	out := make([]int64, *seedsFlag)
	for i := range out {
		out[i] = rand.Int64N(1<<31) + 1
	}
	return out
}

// forSeeds runs fn as a subtest "seed=N" per seed; a failing subtest's
// name carries its seed.
func forSeeds(t *testing.T, fn func(t *testing.T, seed int64)) {
	for _, s := range seeds(t) {
		t.Run("seed="+itoa(s), func(t *testing.T) {
			t.Logf("seed %d (replay: -run '^%s$' -seed=%d)", s, t.Name()[:len(t.Name())-len("/seed="+itoa(s))], s)
			fn(t, s)
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func withDuration(c Config) Config {
	if *durFlag > 0 {
		c.Duration = *durFlag
	}
	return c
}

var allFaults = Faults{Kill: true, MarkDown: true, Partition: true, Cut: true, Skew: true}

var staleFaults = Faults{Kill: true, MarkDown: true, Partition: true, Cut: true, Skew: true, Isolate: true, Deafen: true}

// --- checker a: no acknowledged write lost (sets) ---

func runSets(t *testing.T, c Config) {
	forSeeds(t, func(t *testing.T, seed int64) {
		c.Seed, c.Workload = seed, Sets
		res := Run(t, withDuration(c))
		vs := CheckSetAdds(res.History.Ops(), res.Final)
		vs = append(vs, CheckConverged(res.Replicas)...)
		Report(t, res, vs)
		t.Logf("%s", res.History.Summary())
	})
}

func TestSetsQuorum(t *testing.T) {
	runSets(t, Config{R: coordinator.Quorum, W: coordinator.Quorum, Faults: allFaults})
}

// retriedSets is the set workload with clients that retry an add of
// unknown outcome through other nodes, on two keys, under the faults that
// leave outcomes unknown most often (isolated and deafened nodes, cuts,
// partitions, kills): some seeds retry hundreds of adds.
func retriedSets(withoutID bool) Config {
	return Config{R: coordinator.Quorum, W: coordinator.Quorum, Faults: staleFaults, Keys: 2, Duration: 2 * time.Second,
		RetryUnknown: true, RetryWithoutID: withoutID}
}

// Clients retry an add of unknown outcome under one write ID, as the Go
// client does: no acknowledged add is lost, and no read, during the run or
// at its end, sees one stored twice (checker a's duplicate check).
func TestSetsWithRetries(t *testing.T) {
	var retried atomic.Int64
	run := func(t *testing.T, seed int64) {
		c := retriedSets(false)
		c.Seed, c.Workload = seed, Sets
		res := Run(t, withDuration(c))
		vs := CheckSetAdds(res.History.Ops(), res.Final)
		vs = append(vs, CheckConverged(res.Replicas)...)
		Report(t, res, vs)
		retried.Add(res.Stats.Retries.Load())
		t.Logf("%s; %s", res.History.Summary(), res.Stats)
	}
	forSeeds(t, run)
	// Seed 2's schedule leaves hundreds of outcomes unknown: the run
	// cannot pass without retrying.
	t.Run("seed=2", func(t *testing.T) { run(t, 2) })
	if retried.Load() == 0 {
		t.Fatal("no write was retried: the schedule tested nothing")
	}
}

// No acknowledged write is lost at strict quorum either (the other sets
// schedules run the default, sloppy quorum).
func TestSetsQuorumStrict(t *testing.T) {
	runSets(t, Config{R: coordinator.Quorum, W: coordinator.Quorum, Strict: true, Faults: allFaults})
}

func TestSetsOne(t *testing.T) {
	runSets(t, Config{R: coordinator.One, W: coordinator.One, Faults: allFaults})
}

func TestSetsAllOne(t *testing.T) {
	runSets(t, Config{R: coordinator.One, W: coordinator.All, Nodes: 3, Faults: allFaults})
}

// TestSetsWipedNode restarts one node on an empty directory during the
// run. With W=QUORUM every acknowledged add keeps a copy elsewhere; reads
// at ONE let the wiped node coordinate writes whose context does not cover
// its previous life's dots, which must not make those writes vanish.
func TestSetsWipedNode(t *testing.T) {
	runSets(t, Config{R: coordinator.One, W: coordinator.Quorum, Nodes: 3,
		Faults: Faults{Kill: true, Partition: true, Skew: true, WipeNode: "n1"}})
}

// --- checker b: R+W>N reads (registers) ---

func runRegisters(t *testing.T, c Config) {
	forSeeds(t, func(t *testing.T, seed int64) {
		c.Seed, c.Workload = seed, Registers
		res := Run(t, withDuration(c))
		vs := CheckRegisterReads(res.History.Ops(), res.Cfg.Replicas)
		vs = append(vs, CheckConverged(res.Replicas)...)
		Report(t, res, vs)
		t.Logf("%s", res.History.Summary())
	})
}

// Strict quorum (pr = R, pw = W): R+W>N holds only there (sloppy quorum
// lets fallbacks count).
func TestRegistersQuorum(t *testing.T) {
	runRegisters(t, Config{R: coordinator.Quorum, W: coordinator.Quorum, Strict: true, Faults: allFaults})
}

// Three nodes at QUORUM: every blind write is a checked write (checked.go
// in package coordinator), whose stale coordinators are what staleFaults
// make. With N = 3 on three nodes there are no fallbacks, so R+W>N holds.
func TestRegistersQuorumThreeNodes(t *testing.T) {
	forSeeds(t, func(t *testing.T, seed int64) {
		res := Run(t, withDuration(Config{Seed: seed, Workload: Registers, R: coordinator.Quorum, W: coordinator.Quorum, Nodes: 3, Faults: staleFaults}))
		vs := CheckRegisterReads(res.History.Ops(), res.Cfg.Replicas)
		vs = append(vs, CheckConverged(res.Replicas)...)
		Report(t, res, vs)
		var checked [3]uint64 // stored, read first, unknown (of each node's last incarnation)
		for _, id := range res.Cluster.IDs() {
			if n := res.Cluster.Node(id); n.Coord != nil {
				st := n.Coord.Stats()
				checked[0], checked[1], checked[2] = checked[0]+st.CheckedStored, checked[1]+st.CheckedReadFirst, checked[2]+st.CheckedUnknown
			}
		}
		if checked[0] == 0 {
			t.Fatalf("no blind write was confirmed as a checked write (stored, read first, unknown: %v)", checked)
		}
		t.Logf("%s; checked writes (stored, read first, unknown): %v", res.History.Summary(), checked)
	})
}

func TestRegistersAllOne(t *testing.T) {
	runRegisters(t, Config{R: coordinator.One, W: coordinator.All, Nodes: 3, Faults: allFaults})
}

// --- checker c: concurrent writes kept as siblings ---

func TestSiblingPairs(t *testing.T) {
	forSeeds(t, func(t *testing.T, seed int64) {
		// Strict quorum: a read counting a fallback may miss a write that
		// only primaries hold (sloppy quorum), and checker c's rule for
		// reads is an R+W>N rule. The final read holds in both modes.
		res := Run(t, withDuration(Config{Seed: seed, Workload: SiblingPairs, Strict: true, Faults: allFaults}))
		vs := CheckSiblings(res.History.Ops(), res.Final, res.Cfg.Replicas)
		vs = append(vs, CheckConverged(res.Replicas)...)
		Report(t, res, vs)
		t.Logf("%s", res.History.Summary())
	})
}

// --- checker e: context writes replace what they saw (and b) ---

// runContextRegisters runs the context-register workload: blind writes,
// context writes through any node (stale replicas included) after reads
// at R or ONE, PutBatch calls writing a key twice, with values up to
// 32 KiB. It logs how many context writes a stale replica coordinated and
// how many batches a replica of their repeated key did, and fails if, over
// several seeds, none did (the schedules no longer reach those cases).
func runContextRegisters(t *testing.T, c Config) {
	var stale, staleCounter, local int64
	n := len(seeds(t))
	forSeeds(t, func(t *testing.T, seed int64) {
		c.Seed, c.Workload, c.BigValues = seed, ContextRegisters, true
		res := Run(t, withDuration(c))
		ops := res.History.Ops()
		vs := CheckContextWrites(ops, res.Cfg.Replicas)
		vs = append(vs, CheckRegisterReads(ops, res.Cfg.Replicas)...)
		vs = append(vs, CheckConverged(res.Replicas)...)
		Report(t, res, vs)
		t.Logf("%s", res.History.Summary())
		t.Logf("%s", res.Stats)
		stale += res.Stats.StaleCoordinator.Load()
		staleCounter += res.Stats.StaleCounter.Load()
		local += res.Stats.BatchesLocal.Load()
	})
	t.Logf("all seeds: %d context writes coordinated by a stale replica (%d behind on a counter), %d batches coordinated by a replica of their repeated key", stale, staleCounter, local)
	if n > 1 && (staleCounter == 0 || local == 0) {
		t.Errorf("the schedules never reached the case they exist for: %d context writes coordinated by a replica behind on a counter, %d batches coordinated by a replica of the repeated key", staleCounter, local)
	}
}

// Every fault, plus isolated nodes and deafened ones (every link into the
// node cut: it misses the other replicas' writes but still coordinates its
// own), which leave replicas behind that then coordinate context writes.
func TestContextRegistersQuorum(t *testing.T) {
	runContextRegisters(t, Config{R: coordinator.Quorum, W: coordinator.Quorum, Strict: true, Faults: staleFaults})
}

// R=ONE, W=ALL on three nodes: only writes of unknown outcome leave a
// replica behind, and reads at ONE do not repair it.
func TestContextRegistersAllOne(t *testing.T) {
	runContextRegisters(t, Config{R: coordinator.One, W: coordinator.All, Nodes: 3, Faults: staleFaults})
}

// --- deletes: no deleted key resurrected, deleted keys gone from every
// replica, hints delivered and removed (and b, e, d) ---

// runDeletes runs the delete workload with hinted handoff under faults. It
// logs how many keys ended deleted (the keys CheckDeletedGone checks) and
// how many hints were seen, and fails if, over several seeds, no key ended
// deleted or no hint was kept (the schedules no longer reach the cases
// they exist for).
func runDeletes(t *testing.T, c Config) {
	var deleted, hinted int
	n := len(seeds(t))
	forSeeds(t, func(t *testing.T, seed int64) {
		c.Seed, c.Workload = seed, Deletes
		res := Run(t, withDuration(c))
		ops := res.History.Ops()
		nr := res.Cfg.Replicas
		vs := CheckNoResurrection(ops, res.Final, res.Replicas, nr)
		vs = append(vs, CheckDeletedGone(ops, res.Replicas, nr)...)
		vs = append(vs, CheckHintsDelivered(res.Hints)...)
		vs = append(vs, CheckRegisterReads(ops, nr)...)
		vs = append(vs, CheckContextWrites(ops, nr)...)
		vs = append(vs, CheckConverged(res.Replicas)...)
		Report(t, res, vs)
		dk := DeletedKeys(ops, nr)
		deleted += len(dk)
		hinted += len(res.Hints.Hinted)
		t.Logf("%s", res.History.Summary())
		t.Logf("keys deleted at the end: %v; %d hint records seen, drained %v after the heal",
			dk, len(res.Hints.Hinted), res.Hints.Wait.Round(time.Millisecond))
	})
	t.Logf("all seeds: %d keys deleted at the end, %d hint records seen", deleted, hinted)
	if n > 1 && (deleted == 0 || hinted == 0) {
		t.Errorf("the schedules never reached the case they exist for: %d keys deleted at the end, %d hint records", deleted, hinted)
	}
}

// Every fault, hinted handoff on, eight keys, strict quorum (Coverage's
// rule for blind writes needs it).
func TestDeletesQuorum(t *testing.T) {
	runDeletes(t, Config{R: coordinator.Quorum, W: coordinator.Quorum, Strict: true, Keys: 8, Faults: allFaults,
		Handoff: FastHandoff(300 * time.Millisecond)})
}

// --- a returning node catches up, with no client read ---

// runReturningNode runs the returning-node scenario and its checkers: the
// replicas hold equal states with no client operation after the restart,
// hints are delivered and removed, deleted keys read as not found on every
// replica's local store and no deleted value is held anywhere (and b, e on
// the reads made before the writes with a context).
func runReturningNode(t *testing.T, c Config) { runReturningNodeWith(t, c, true) }

// runReturningNodeWith is runReturningNode; wantHints says whether the
// scenario must have produced hints (not when hinted handoff is off).
func runReturningNodeWith(t *testing.T, c Config, wantHints bool) {
	var deleted, hinted int
	forSeeds(t, func(t *testing.T, seed int64) {
		c.Seed = seed
		res := RunReturningNode(t, withDuration(c))
		ops := res.History.Ops()
		nr := res.Cfg.Replicas
		vs := CheckCaughtUp(res)
		vs = append(vs, CheckHintsDelivered(res.Hints)...)
		vs = append(vs, CheckDeletedGone(ops, res.Replicas, nr)...)
		vs = append(vs, CheckNoResurrection(ops, nil, res.Replicas, nr)...)
		vs = append(vs, CheckRegisterReads(ops, nr)...)
		vs = append(vs, CheckContextWrites(ops, nr)...)
		Report(t, res, vs)
		dk := DeletedKeys(ops, nr)
		deleted += len(dk)
		hints := 0
		if res.Hints != nil {
			hints = len(res.Hints.Hinted)
		}
		hinted += hints
		t.Logf("%s", res.History.Summary())
		t.Logf("%s returned; every replica equal %v after its restart; %d hint records seen; %d of %d keys deleted at the end",
			res.Returned, res.CaughtUp.Round(time.Millisecond), hints, len(dk), len(res.Keys))
	})
	if deleted == 0 || (wantHints && hinted == 0) {
		t.Errorf("the scenario did not reach the case it exists for: %d keys deleted at the end, %d hint records", deleted, hinted)
	}
}

// N=3 on three nodes: the returning node replicates every key.
func TestReturningNodeCatchesUp(t *testing.T) {
	runReturningNode(t, Config{Nodes: 3, ReadRepairChance: -1, Handoff: FastHandoff(300 * time.Millisecond)})
}

// N=3 on five nodes: writes through nodes that are not replicas of their
// key are forwarded; the returning node replicates about three fifths of
// the keys. Strict quorum: under sloppy quorum a blind delete may learn
// from a fallback instead of a primary and rightly not cover a write,
// which the deleted-key checkers would take for a resurrection.
func TestReturningNodeCatchesUpFiveNodes(t *testing.T) {
	runReturningNode(t, Config{Nodes: 5, Strict: true, ReadRepairChance: -1, Handoff: FastHandoff(300 * time.Millisecond)})
}

// Anti-entropy alone (no hinted handoff) brings the returning node
// everything it missed, with no client read.
func TestReturningNodeCatchesUpByAntiEntropy(t *testing.T) {
	runReturningNodeWith(t, Config{Nodes: 3, ReadRepairChance: -1, AntiEntropy: FastAntiEntropy(100*time.Millisecond, -1)}, false)
}

// A node restarted on a wiped disk gets back, through anti-entropy, what
// it held before as well as what it missed (hints alone cannot: they hold
// only the writes made while it was away). No purge here: the hints
// checker wants every hinted version on its target (TestDeletesWithTombstonePurge
// purges under faults).
func TestWipedReturningNodeRebuiltByAntiEntropy(t *testing.T) {
	// As its canary TestCanaryAntiEntropyDisabledWipedNodeStale: most keys
	// are not written while the node is away.
	runReturningNodeWith(t, Config{Nodes: 3, Keys: 200, Duration: 100 * time.Millisecond, ReadRepairChance: -1, WipeReturning: true,
		Handoff: FastHandoff(300 * time.Millisecond), AntiEntropy: FastAntiEntropy(100*time.Millisecond, -1)}, true)
}

// Deletes under kills with anti-entropy purging tombstones by its rule,
// hints off (the canary TestCanaryTombstonesPurged purges by age alone in
// the same schedule and is caught): no deleted value comes back.
func TestDeletesWithTombstonePurge(t *testing.T) {
	forSeeds(t, func(t *testing.T, seed int64) {
		res := Run(t, withDuration(Config{Seed: seed, Workload: Deletes, Nodes: 3, Keys: 4, Strict: true,
			Faults:      Faults{Kill: true, MarkDown: true, Interval: 100 * time.Millisecond},
			AntiEntropy: FastAntiEntropy(50*time.Millisecond, 100*time.Millisecond)}))
		ops := res.History.Ops()
		vs := CheckNoResurrection(ops, res.Final, nil, res.Cfg.Replicas)
		Report(t, res, vs)
		purged := uint64(0)
		for _, id := range res.Cluster.IDs() {
			if n := res.Cluster.Node(id); n.AE != nil {
				purged += n.AE.Status().TombstonesPurged
			}
		}
		t.Logf("%s; %d tombstones purged", res.History.Summary(), purged)
	})
}

// --- canaries: each runs a schedule with a planted bug; the checker must
// report it. They pass only if it does. ---

// canary runs c (with a fixed seed list, so that a canary is stable) until
// check reports a violation, failing if no seed makes it.
func canary(t *testing.T, c Config, check func(*Result) []Violation) {
	t.Helper()
	canaryOf(t, Run, c, check)
}

// canaryOf is canary for a scenario other than Run.
func canaryOf(t *testing.T, run func(testing.TB, Config) *Result, c Config, check func(*Result) []Violation) {
	t.Helper()
	canarySeeds(t, []int64{1, 2, 3}, run, c, check)
}

// canarySeeds is canaryOf with the seeds to try, in order, until one
// catches the bug.
func canarySeeds(t *testing.T, seeds []int64, run func(testing.TB, Config) *Result, c Config, check func(*Result) []Violation) {
	t.Helper()
	for _, seed := range seeds {
		c.Seed = seed
		res := run(t, c)
		if vs := check(res); len(vs) > 0 {
			t.Logf("seed %d: the planted bug was caught: %d violations, first: %s", seed, len(vs), vs[0])
			return
		}
		t.Logf("seed %d: not caught (%s)", seed, res.History.Summary())
	}
	t.Fatalf("the checker missed the planted bug with every seed")
}

// Replicas acknowledge replication without storing it; one node is wiped
// (with a fresh actor, so counter reuse is not what is caught). Checker a
// must find adds that lived only on the wiped node.
func TestCanaryAckWithoutStoringLosesAdds(t *testing.T) {
	canary(t, Config{Workload: Sets, Nodes: 3, R: coordinator.Quorum, W: coordinator.Quorum,
		Faults:      Faults{WipeNode: "n1", Interval: 400 * time.Millisecond},
		WrapHandler: BugAckWithoutStoring(), OpenStore: FreshActorOpener},
		func(r *Result) []Violation { return CheckSetAdds(r.History.Ops(), r.Final) })
}

// One replica acknowledges replication without storing it, so a write
// acknowledged by it and its coordinator lives on one replica: a quorum
// read through the other two must miss it, and checker b must say so.
func TestCanaryAckWithoutStoringStaleReads(t *testing.T) {
	canary(t, Config{Workload: Registers, Nodes: 3, WrapHandler: BugAckWithoutStoring("n2")},
		func(r *Result) []Violation { return CheckRegisterReads(r.History.Ops(), r.Cfg.Replicas) })
}

// A replica that swallows replication (and so read repair) never
// converges: checker d must say so.
func TestCanaryAckWithoutStoringDiverges(t *testing.T) {
	canary(t, Config{Workload: Sets, Nodes: 3, Duration: 400 * time.Millisecond,
		WrapHandler: BugAckWithoutStoring("n2")},
		func(r *Result) []Violation { return CheckConverged(r.Replicas) })
}

// A node restarted on a wiped directory with its old actor reuses dot
// counters: checker a must find the adds that vanish.
func TestCanaryCounterReuse(t *testing.T) {
	canary(t, Config{Workload: Sets, Nodes: 3, R: coordinator.One, W: coordinator.Quorum,
		Faults:    Faults{WipeNode: "n1", Interval: 300 * time.Millisecond},
		OpenStore: ReuseActorOpener},
		func(r *Result) []Violation { return CheckSetAdds(r.History.Ops(), r.Final) })
}

// Clients that pick one sibling by wall clock (on skewed clocks) and write
// blind lose concurrent adds: checker a must catch it.
func TestCanaryLWWClient(t *testing.T) {
	canary(t, Config{Workload: Sets, Keys: 2, LWWClient: true, Faults: Faults{Skew: true}},
		func(r *Result) []Violation { return CheckSetAdds(r.History.Ops(), r.Final) })
}

// Replicas that store a checked blind write without checking that it
// covers their state let a stale coordinator's write be acknowledged
// beside the acknowledged value it should have superseded: checker b must
// find a read that still returns that value.
//
// Whether a seed catches it depends on timing (a CI run on a loaded
// machine once missed with seeds 1-3), so it has six seeds to try.
func TestCanaryCoverWithoutCheck(t *testing.T) {
	canarySeeds(t, []int64{1, 2, 3, 4, 5, 6}, Run,
		Config{Workload: Registers, Nodes: 3, Keys: 2, Duration: 2 * time.Second, Faults: staleFaults, WrapHandler: BugCoverWithoutCheck()},
		func(r *Result) []Violation { return CheckRegisterReads(r.History.Ops(), r.Cfg.Replicas) })
}

// Replicas that keep only the last-write-wins sibling of what they merge
// lose concurrent writes: checker c must catch it.
func TestCanaryDropSiblingOnMerge(t *testing.T) {
	canary(t, Config{Workload: SiblingPairs, Keys: 2, WrapHandler: BugDropSiblingOnMerge(), Faults: Faults{Skew: true}},
		func(r *Result) []Violation { return CheckSiblings(r.History.Ops(), r.Final, r.Cfg.Replicas) })
}

// A write forwarded to a replica and applied twice (a retried forward)
// shows up as two siblings with one value: checker c must catch it.
func TestCanaryWriteAppliedTwice(t *testing.T) {
	canary(t, Config{Workload: SiblingPairs, Keys: 2, Duration: 500 * time.Millisecond, WrapHandler: BugCoordinateTwice()},
		func(r *Result) []Violation { return CheckSiblings(r.History.Ops(), r.Final, r.Cfg.Replicas) })
}

// Clients retry adds of unknown outcome without a write ID, as clients
// before write IDs would: checker a must find an add stored twice.
func TestCanaryRetriesWithoutIDs(t *testing.T) {
	c := retriedSets(true)
	c.Workload = Sets
	canarySeeds(t, []int64{1, 2, 6, 10}, Run, c, func(r *Result) []Violation { return CheckSetAdds(r.History.Ops(), r.Final) })
}

// Replicas that coordinate a forwarded context write with an empty context
// instead of the client's: the write replaces nothing it saw, and checker e
// must find a later read returning a value the write's context covered.
func TestCanaryContextForgotten(t *testing.T) {
	canary(t, Config{Workload: ContextRegisters, Keys: 2, Duration: 500 * time.Millisecond, WrapHandler: BugForgetForwardedContext()},
		func(r *Result) []Violation { return CheckContextWrites(r.History.Ops(), r.Cfg.Replicas) })
}

// Without hinted handoff, nothing brings the returning node the writes and
// deletes it missed unless a client reads those keys: the catch-up checker
// must find its replicas differing at the deadline.
func TestCanaryHintsDisabledReturningNodeStale(t *testing.T) {
	canaryOf(t, RunReturningNode, Config{Nodes: 3, Keys: 16, Duration: 500 * time.Millisecond, ReadRepairChance: -1,
		CatchUpDeadline: time.Second},
		CheckCaughtUp)
}

// A node restarted on a wiped disk, with hinted handoff but no
// anti-entropy: nothing gives it back what it held before it went away,
// and the catch-up checker must find its replicas differing.
func TestCanaryAntiEntropyDisabledWipedNodeStale(t *testing.T) {
	// Many keys and a short absence: most keys are not written while the
	// node is away, so no hint carries them (a hint carries a key's whole
	// object, which would restore it).
	canaryOf(t, RunReturningNode, Config{Nodes: 3, Keys: 200, Duration: 100 * time.Millisecond, ReadRepairChance: -1,
		CatchUpDeadline: time.Second, WipeReturning: true, Handoff: FastHandoff(300 * time.Millisecond)},
		CheckCaughtUp)
}

// Hints kept but never delivered (the delivery pass never runs): the hints
// checker must find them still pending for a live target.
func TestCanaryHintsNeverDelivered(t *testing.T) {
	canaryOf(t, RunReturningNode, Config{Nodes: 3, Keys: 16, Duration: 500 * time.Millisecond, ReadRepairChance: -1,
		CatchUpDeadline: time.Second, Handoff: NeverDeliverHints(300 * time.Millisecond)},
		func(r *Result) []Violation { return CheckHintsDelivered(r.Hints) })
}

// Every node acknowledges delivered hints (batches) without storing them:
// the holders delete the hints, and the hints checker must find hinted
// versions missing from their target.
func TestCanaryHintsAckedNotStored(t *testing.T) {
	canaryOf(t, RunReturningNode, Config{Nodes: 3, Keys: 16, Duration: 500 * time.Millisecond, ReadRepairChance: -1,
		CatchUpDeadline: time.Second, Handoff: FastHandoff(300 * time.Millisecond), WrapHandler: BugAckBatchesWithoutStoring()},
		func(r *Result) []Violation { return CheckHintsDelivered(r.Hints) })
}

// Tombstones purged at once (by age, with no grace and no proof that every
// replica has them), no hinted handoff: a node that was down during a
// delete brings the value back, and the resurrection checker must find it
// in a read at ALL after the heal.
//
// Whether a run exercises the bug depends on timing (a node must miss a
// delete while down and still hold the older value when the others have
// purged the tombstone): on a loaded machine one second of each of three seeds sometimes did not
// (a CI run missed with all three; under load here seed 1 missed about
// one run in three, before this session's changes and after), so it runs
// two seconds and up to six seeds.
func TestCanaryTombstonesPurged(t *testing.T) {
	canarySeeds(t, []int64{1, 2, 3, 4, 5, 6}, Run, Config{Workload: Deletes, Nodes: 3, Keys: 4, Duration: 2 * time.Second,
		Faults: Faults{Kill: true, MarkDown: true, Interval: 100 * time.Millisecond}, Background: BugPurgeTombstones},
		func(r *Result) []Violation {
			return CheckNoResurrection(r.History.Ops(), r.Final, nil, r.Cfg.Replicas)
		})
}

// Two replicas acknowledge deletes (replicated tombstones) without storing
// them: after the returning node caught up by hints, with no client read,
// the deleted-key checker must find live values on their local stores.
func TestCanaryDeleteNotReplicated(t *testing.T) {
	canaryOf(t, RunReturningNode, Config{Nodes: 3, Keys: 16, Duration: 500 * time.Millisecond, ReadRepairChance: -1,
		CatchUpDeadline: time.Second, Handoff: FastHandoff(300 * time.Millisecond), WrapHandler: BugDropDeleteReplication("n1", "n2")},
		func(r *Result) []Violation { return CheckDeletedGone(r.History.Ops(), r.Replicas, r.Cfg.Replicas) })
}
