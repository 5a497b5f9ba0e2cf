// Package faults is ringkv's fault-test harness: one model of client
// histories, checkers of the cluster's guarantees over those histories, and
// seeded schedules that run workloads against an in-process cluster
// (internal/testcluster) while a nemesis kills and restarts nodes, wipes a
// node's directory, partitions the network, cuts links one way and skews
// clocks. The real-process tier in internal/e2e records the same histories
// against `ringkv server` processes and runs the same checkers.
//
// # Histories
//
// Every client operation is an Op in a History: invoked, then completed as
// OK, Fail (the error proves nothing was applied: the node was down and the
// request never sent, or the level was refused before anything was stored)
// or Info (indeterminate: a timeout, a quorum error, anything after the
// request left; such a write may have been applied and may show up later).
// Times come from the monotonic clock, as offsets from the run's start.
// Every write carries a unique value, and clients never retry on their own
// (except with Config.RetryUnknown: a retry is an attempt of the same op).
//
// # Checkers
//
//   - CheckSetAdds (a): no acknowledged write lost. Each key is a set that
//     clients grow by read-modify-write with the causal context; after the
//     faults stop and the cluster heals, a read at R=ALL must hold every
//     element whose add was acknowledged (in the union of the siblings).
//     No read (an add's own, or the final one) may return one add's value
//     as two siblings: that add was stored twice. With
//     Config.RetryUnknown, clients send an add of unknown outcome again
//     through other nodes under one write ID, as the Go client does; the
//     canary retries without the ID.
//   - CheckRegisterReads (b): with R+W>N, a read that began after blind
//     write y was acknowledged returns neither a value that y overwrote
//     (one whose write completed before y began) nor not-found; deletes
//     count as writes of a tombstone. A write with a context overwrites
//     only what it saw, so it is never such a y (checker e covers it).
//   - CheckSiblings (c): two writes with the same context at the same time
//     are both kept as siblings, until a write that saw them replaces them.
//   - CheckConverged (d): after healing and a read of every key at R=ALL
//     (read repair), every replica stores the same object.
//   - CheckContextWrites (e): with R+W>N, a read that began after a write
//     y with a context (a put or a delete) was acknowledged returns none
//     of the values y's read saw (Op.Saw): y's context covers their dots,
//     so y replaced them. Values written concurrently with y, which its
//     read did not return, may survive beside it; a write of unknown
//     outcome landing later adds its own value but cannot bring back one
//     whose dot y's context covers. Likewise, after a PutBatch that wrote
//     one key twice, a read that began after the later write was
//     acknowledged does not return the earlier one (if it was
//     acknowledged too): the batch applies as Puts in order.
//   - CheckNoResurrection: no deleted key resurrected. Coverage computes,
//     per write, a lower bound of the values its stamped context covers (a
//     context write covers what its read saw; a blind write covers the
//     writes acknowledged before it began with W + min(W, R) > N, since it
//     learns from a read quorum first; and, transitively, what those
//     covered). After the heal and the replicas' convergence, neither the
//     read at R=ALL nor any replica's local state may hold a value that an
//     acknowledged delete covers.
//   - CheckDeletedGone: every key whose writes that may have applied are
//     all covered by acknowledged writes, one of them a delete (the last
//     acknowledged operation is a delete and no write is concurrent with
//     it or later: DeletedKeys), reads as not found on every replica, read
//     from each replica's local store, not through a quorum read.
//   - CheckHintsDelivered: with hinted handoff, after the heal and a
//     bounded wait, no node reports pending hints for a live target
//     (handoff.Service.Stats) nor stores hint records for one, and every
//     hint record sampled during the run is present on its target (the
//     target's local state descends the hinted version), before any
//     final read could repair it.
//   - CheckCaughtUp: the returning-node scenario (RunReturningNode). One
//     node is killed after every key was written; writes, overwrites and
//     deletes, blind and with contexts, and PutBatch calls run while it is
//     down; it restarts on its disk, and with no client operation at all
//     (so no read repair), within a deadline every replica's local store
//     holds the same state for every key (whole objects compared, not
//     hashes). Hinted handoff is what does it today; anti-entropy will be
//     a second mechanism.
//
// The delete workload (Deletes) mixes reads, blind writes and deletes and
// writes and deletes with a read's context (half of them deletes), and
// ends, with a node down (killed if none is), by deleting every other key
// once more; its runs use hinted handoff (Config.Handoff, FastHandoff)
// and are checked by the three delete and hint checkers above, b, e and d.
//
// The context-register workload (ContextRegisters) is checked by b and e:
// blind writes and deletes, reads, context writes and deletes (after a read
// at R or at ONE, through a random node, often a replica of the key), and
// PutBatch calls that write one key twice (blind), with values of up to
// 32 KiB now and then. Its schedules isolate nodes and deafen them (cut
// every link into one node: it misses the others' writes but still
// coordinates its own), so that a stale replica coordinates context
// writes whose context is ahead of what it stores. The run counts those
// writes (Stats; the test logs the count and fails if no seed made one).
//
// Each checker has a canary test: the same kind of schedule with a planted
// bug (bugs.go: replicas that acknowledge without storing, a sibling
// dropped on merge — last-write-wins on merge —, an actor reused after a
// wipe, a last-write-wins client on skewed clocks, a forwarded context
// write coordinated with an empty context, tombstones purged at once, two
// replicas that drop replicated tombstones, hints that are never
// delivered, hint deliveries acknowledged without storing, and hinted
// handoff disabled for the returning node), which passes only if the
// checker reports a violation.
// A short preference list (fewer placed replicas than N, with quorums
// counted against the placed ones) has no canary: it cannot be planted from
// outside the coordinator.
//
// # Sloppy and strict quorum
//
// Clients ask for the default, sloppy quorum (fallback nodes stand in for
// primaries marked down, and their acknowledgements and answers count),
// or with Config.Strict for strict quorum (pr = R, pw = W). The checkers
// that rest on R+W>N (b, c's rule for reads, e, and Coverage's rule for
// blind writes, hence the delete checkers) run at strict quorum; no
// acknowledged write lost (a) and convergence run in both.
//
// # Schedules and replay
//
// A run (Config, Run) is fixed by its seed: the fault schedule and every
// client's choices come from it. The goroutine interleaving does not, so a
// replay reproduces the schedule, not necessarily the exact history. Tests
// run -seeds random seeds per schedule (default 3) and name each subtest
// after its seed; a failure prints the seed, the command that replays it
// (go test ./internal/faults -run '^TestX$' -seed=N) and the compact
// history of the keys involved.
//
// # Time
//
// Runs use real time with short timeouts (coordinator Timeout 300ms,
// workloads of about a second, hint delivery passes every 50ms), not
// testing/synctest: the storage engine's
// commit queue, flush and compaction goroutines and the key locks block on
// mutexes, which synctest does not treat as durably blocked, so a bubble
// would advance its clock unpredictably or report deadlocks while an engine
// is busy. Engines run on strict in-memory filesystems (no disk I/O), with
// the server's sync mode, so that a kill loses exactly what was not synced.
package faults
