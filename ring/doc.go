// Package ring decides which nodes store which keys.
//
// # Tokens and partitions
//
// A key's token is its 64-bit XXH64 hash (see Token). The token space is cut
// into Q equal partitions, Q a power of two fixed when the cluster is
// created: partition p holds the tokens whose top log2(Q) bits equal p, that
// is [p<<(64-log2 Q), (p+1)<<(64-log2 Q)). A partition is the unit of
// replication, hinting, anti-entropy and streaming, so a membership change
// moves whole partitions and never splits one.
//
// # Placing partitions on nodes
//
// Partitions are placed by consistent hashing over weighted virtual nodes.
// A member of weight w owns w*VNodesPerWeight tokens, Token(id + "/" + i)
// for i = 0, 1, ..., so every node derives the same ring from the same
// member set, in any order. Only members in state Normal or Leaving are
// placed: Joining members do not own data until they have received it, and
// Left members never do.
//
// A partition's preference list starts from a clockwise walk from the
// partition's first token over the vnode tokens, taking N distinct physical
// nodes. When members have racks, the walk first takes only nodes on racks
// not yet in the list, and reuses a rack only if there are fewer racks than
// N (a member without a rack counts as a rack of its own). When
// Config.ReplicasPerDC is set, the walk takes that many distinct nodes in
// each DC, rack-aware within the DC; the list is in walk order. If fewer
// eligible nodes exist than are asked for, the list is shorter.
//
// Plain consistent hashing leaves nodes tens of percent off their share at
// Q=1024 (few vnodes per node, and a few dozen partitions per small node),
// so placement adds two deterministic balancing steps:
//
//   - Replica slots. Each node has a fair share of the Q*N replica slots
//     (its weight's share, capped at Q since a node holds a partition at
//     most once). The walk passes over a node that is 5% above its share,
//     unless that would break the rack rules, and afterwards nodes more than
//     5% below their share take single slots from holders of partitions
//     just behind their own vnodes, and nodes more than 5% above it hand
//     slots to the nodes the walk would have reached next, never losing a
//     rack or leaving a DC. Every node ends within about 5% of its share.
//   - Primaries. The primary (list[0]) coordinates writes. Nodes outside 10%
//     of their share of primaries swap the primary role with another member
//     of one of their lists. This changes no replica set, only which member
//     is first, so the rest of each list stays in walk order but the
//     primary may be any member of it.
//
// Both steps choose, among the moves toward balance, the one nearest to
// what plain consistent hashing would do, so adding a node still moves
// about its share of the data. With 8 to 16 nodes of weights 1 to 4, a new
// node's arrival moves 1.1 times its fair share of replica slots at the
// median and at most about 1.7 times in the worst clusters measured (a few
// heavy nodes among many light ones); primaries change for 1.15 times its
// share of partitions at the median, the excess being role swaps that move
// no data.
//
// # Fallbacks
//
// Past its primaries, a partition's extended list (Extended) holds
// fallbacks: the walk continues clockwise past the primaries and takes, per
// pool (the cluster, or each DC under ReplicasPerDC), as many further
// distinct nodes as the pool holds primaries, on racks the list does not
// use yet first. Targets pairs each primary that is down with the first
// healthy fallback of its pool not yet taken (sloppy quorum: a fallback
// stands in for it and keeps what it receives as a hint for it).
//
// A Ring is immutable and safe for concurrent use; lookups are O(1) because
// every preference list is computed in New.
package ring
