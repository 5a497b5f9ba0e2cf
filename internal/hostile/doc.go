// Package hostile is ringkv's bad-input suite: real sockets against a real
// node (server.Start on loopback) or against the Redis-protocol and peer
// transport servers directly, with clients that misbehave on purpose:
// oversized bulk and array length prefixes, malformed frames on the peer
// port, a client sending one byte per second, a pipeline that never reads
// its replies, and a flood of 5,000 connections at once.
//
// Each attack passes when the node's memory stays under a stated bound
// (measured: the live heap after a GC, in-process, and the process's
// VmRSS for the flood), a well-behaved go-redis client keeps getting
// answers within a deadline while it runs ([Probe]), and every bad client
// gets a clear error or is closed.
//
// The flood runs in a helper binary (cmd/flood) that the test builds with
// a plain `go build`: CI runs the tests under the race detector, which
// stops at about 8,000 goroutines, and a node serving 5,000 connections
// from a client in the same process needs more.
package hostile
