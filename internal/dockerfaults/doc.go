// Package dockerfaults is the separate-hosts tier of ringkv's fault tests:
// `ringkv server` nodes in Docker containers, each with its own network
// stack and address, built from the FROM-scratch image of
// deploy/docker/Dockerfile around the static binary.
//
// The tests (all in _test files) build the binary and the image once per
// run under a unique tag and remove it at the end. Each scenario creates
// two private networks of its own: an internal "peer" network with a
// fixed subnet, where the nodes reach each other (--peer-addr is the
// container's fixed IP there), and a "client" network without
// container-to-container traffic, through which each node's Redis and
// HTTP ports are published on 127.0.0.1 for the test's clients on the
// host. A node is crashed with `docker kill` and brought back with
// `docker start` (same container, same data); it is cut off by
// disconnecting it from the peer network (its clients still reach it, so
// it keeps coordinating writes it cannot replicate); a minority is cut
// from a majority by iptables rules that drop packets inside each
// container's network namespace (nsenter), or, where that is not
// possible, by disconnecting the minority's nodes. TestDatacenterCut
// starts two datacenters of two nodes (--dc, --replicas-per-dc dc1:2,dc2:2)
// and cuts them apart the same way while clients bound to each side write
// and read at LOCAL_QUORUM; it checks each side stays available, QUORUM
// fails, and writes made on both sides during the cut end as siblings on
// every replica.
//
// Every operation goes into a faults.History (invoked, then ok, fail or
// info; unique values; no client retries a write), and the checkers of
// package faults judge it: CheckRegisterReads (R+W>N reads at strict
// quorum, and through a final read of every key at R=ALL: no acknowledged
// write lost), CheckNoResurrection and CheckDeletedGone (no deleted value
// back, deleted keys gone from every replica), CheckSetAdds (no
// acknowledged add lost) and CheckConverged (each replica's stored object
// equals the other replicas'). Replica states are read offline, from a
// copy of each node's data directory taken after the nodes were stopped
// cleanly: no endpoint serves a node's local copy alone. The test also
// requires that nodes kept hints during the fault and that all were
// delivered within a bound after the heal (from /v1/cluster). A canary
// plants a loss the checkers must report: writes
// acknowledged at W=1 by a node cut off from its peers, whose disk is then
// replaced.
//
// Without a reachable Docker daemon the tests skip, saying why.
package dockerfaults
