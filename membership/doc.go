// Package membership tells a ringkv node who is in the cluster, who is
// alive, and which ring they form.
//
// Two different questions are answered here, and they are kept apart on
// purpose:
//
//   - Liveness: is a node answering right now? This comes from
//     hashicorp/memberlist's SWIM failure detector (probes, indirect probes,
//     suspicion). It changes often and on its own.
//   - Ring membership: which nodes own partitions? This is the table of
//     member Records (ID, weight, DC, rack, ring state, service addresses).
//     It changes when a node changes its own record (a join, the end of a
//     move) or an operator changes another node's (SetMemberState:
//     decommission, removal of a dead node, replacement).
//
// # Down is not removed
//
// A node that stops answering is marked down (Alive=false) but keeps its
// place in the ring. Dynamo and Cassandra do the same: most failures are
// short (a restart, a GC pause, a flaky switch), and moving partitions away
// on every blip would stream data back and forth and shift the preference
// lists under clients' feet. Writes for a down replica go to a fallback
// node as hints (sloppy quorum, see package handoff) and are replayed when
// it returns. Only an explicit state change to ring.StateLeft takes a node
// out of ring ownership; a Left record is still kept and gossiped so that
// every node, including ones that join later or were down at the time,
// learns of the departure.
//
// # What is gossiped
//
//   - Each node's own Record rides in its memberlist node metadata (JSON,
//     at most 512 bytes, checked at Start). Every alive message carries it,
//     so a change made with SetState reaches the cluster at gossip speed.
//   - The full record table is exchanged by memberlist's periodic push/pull
//     anti-entropy (Delegate.LocalState / MergeRemoteState) and on every
//     join. Metadata alone is not enough: memberlist forgets dead nodes
//     after a while and never tells a new node about them, but the ring must
//     still contain a member that is down. Push/pull lets a node that joins
//     while a member is down learn that member's record anyway.
//
// Merging is last-writer-wins per ID on Record.Version, with one more
// rule: leaving and left are never undone (a record in either state is not
// replaced by one in an earlier state, whatever its version), so a removed
// node restarted from an old data directory cannot take its partitions
// back. The owner of a record bumps its version, and so does an operator's
// SetMemberState on any node (the record is then gossiped as a memberlist
// broadcast; the node itself adopts the new state); versions start from the wall clock in
// nanoseconds (or the persisted version plus one, whichever is higher), so a
// restarted node outranks its old record even if its data directory was
// lost. If a node sees a version of its own record that is not older than
// its current one, it re-asserts its record with a higher version. A record
// that claims an ID already held by a live node at a different gossip
// address is logged and ignored, and so is a record claiming our own ID.
// Peers whose ring configuration (partitions, replicas, vnodes) differs are
// refused, because they would compute different rings.
//
// # What is persisted
//
// The whole record table and the ring configuration are written to
// DataDir/ring.json on every change (temp file, fsync, rename, fsync of the
// directory), so a node that restarts knows the ring, including members that
// are down, before it hears from anyone. A local SetState is durable before
// it returns; changes learned from peers are written by a background writer
// that always writes the newest table. Start refuses a data directory that
// belongs to another node ID or was written with a different ring
// configuration, because changing the partition count remaps every key.
//
// # Node lifecycle
//
// Joining (announced, owns nothing, receiving its partitions; with
// Config.StreamOnJoin a new node joining an established cluster) → Normal
// once package rebalance has streamed them, and Normal → Leaving → Left on
// decommission or removal. A node replacing a dead one (Config.Replace)
// joins with the dead node's tokens and marks it leaving; the two switch
// together. A restarted node keeps the state it persisted, and a node
// whose ID has left refuses to start (an ID is never reused). Leave
// announces a graceful departure from gossip (peers see the node down at
// once instead of after a failure-detection timeout); it does not change
// ring membership.
//
// # Replication
//
// The replication (N, or N per DC) starts as Config.Ring gives it; ringkv
// set-replicas changes it for the whole cluster through a versioned record
// of its own, gossiped and persisted with the members (see replication.go):
// first the target (the ring's Config.Next: extra replicas are pending
// owners), then, once they are streamed, the ring's own.
//
// # Joining
//
// Start joins any of Config.Join (gossip addresses). A join succeeds once a
// node has answered with its ring state (the full record table, merged
// before Join returns), and Start builds the ring from the merged table
// before it returns, so a joining node never serves a ring of itself alone
// (a write coordinated on such a ring would be acknowledged with one copy).
// If no node answers with a ring state for our ring configuration within
// JoinTimeout, a fresh node fails to start, so that a typo does not create a
// second cluster; a node with persisted peers starts anyway, with the ring
// it persisted (it may be the first one back after a full-cluster restart).
// A node with no join targets starts a cluster of its own. In the
// background, a node keeps trying to rejoin known members that are down,
// which also heals a network partition after memberlist on both sides has
// given up on the other.
package membership
