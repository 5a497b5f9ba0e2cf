package coordinator

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/ringkv/ringkv/version"
)

// Op names a client operation for an Observer.
type Op uint8

// The client operations.
const (
	OpGet Op = iota
	OpPut
	OpDelete
	numOps
)

func (op Op) String() string {
	switch op {
	case OpGet:
		return "get"
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	}
	return "unknown"
}

// Observer is told of every client request this node coordinates: reads,
// writes and deletes entering through Get/GetLive/Put/Delete (and their
// *At and batch forms; a batch reports each key with the batch's
// duration). api is the client interface the context names (WithAPI),
// "other" when none; level is the request's R (reads) or W (writes)
// level as ParseLevel gives it, Default already replaced by the
// configured default. It is called on the request's goroutine: it must be
// quick and safe for concurrent use.
type Observer interface {
	ObserveRequest(api string, op Op, level int, d time.Duration, err error)
}

// BatchObserver is an Observer that can take a pipeline batch's requests
// in one call: n requests of the same interface, operation and level that
// each took d, failed of them failed. A batch then resolves its labels once,
// not once per key.
type BatchObserver interface {
	Observer
	ObserveRequests(api string, op Op, level int, d time.Duration, n, failed int)
}

type apiKey struct{}

// WithAPI returns ctx naming the client interface ("resp", "http") its
// requests come from, for the Observer.
func WithAPI(ctx context.Context, api string) context.Context {
	return context.WithValue(ctx, apiKey{}, api)
}

func apiOf(ctx context.Context) string {
	if api, ok := ctx.Value(apiKey{}).(string); ok {
		return api
	}
	return "other"
}

// siblingBuckets are the upper bounds of the live-sibling histogram of
// reads (Stats.ReadSiblings): 0, 1, 2, 3, 4, 8, 16, 32, more.
var siblingBuckets = [...]int{0, 1, 2, 3, 4, 8, 16, 32}

// SiblingBuckets returns the inclusive upper bounds of
// Stats.ReadSiblings' buckets but the last, which counts the reads above.
func SiblingBuckets() []int { return siblingBuckets[:] }

// Stats are the coordinator's counters since the node started.
type Stats struct {
	// Replication requests of writes this node coordinated (to primaries
	// and fallbacks): acknowledged, failed in time (an error or a refusal),
	// and not answered before their deadline.
	ReplicaAcks, ReplicaErrors, ReplicaTimeouts uint64
	// Writes this node forwarded to a replica of the key (it is not one),
	// and those whose forward failed.
	Forwarded, ForwardFailures uint64
	// ReadRepairs counts the repair writes read repair sent to a stale
	// primary (this node included); ReadRepairFailures those that failed.
	ReadRepairs, ReadRepairFailures uint64
	// ReadSiblings counts the reads that merged replicas' answers by their
	// number of live siblings, in the buckets of SiblingBuckets plus one
	// for more; ReadSiblingsSum is the sum of those numbers. Reads served
	// from the local copy alone at R=1 are not counted (they are not
	// decoded).
	ReadSiblings    [len(siblingBuckets) + 1]uint64
	ReadSiblingsSum uint64
	// Blind writes this node coordinated as checked writes (checked.go):
	// confirmed by another replica (CheckedStored), given back to the
	// read-first path because every other replica held more
	// (CheckedReadFirst), and stored here with their outcome unknown
	// because no other replica answered (CheckedUnknown).
	CheckedStored, CheckedReadFirst, CheckedUnknown uint64
	// RetriesRecognized counts the writes this node's replica did not
	// stamp because it already held them under their write ID
	// (replica.Store.RetriesRecognized).
	RetriesRecognized uint64
}

// counters are the atomics behind Stats.
type counters struct {
	replicaAcks, replicaErrors, replicaTimeouts atomic.Uint64
	forwarded, forwardFailures                  atomic.Uint64
	readRepairs, readRepairFailures             atomic.Uint64
	readSiblings                                [len(siblingBuckets) + 1]atomic.Uint64
	readSiblingsSum                             atomic.Uint64
	checkedStored, checkedReadFirst             atomic.Uint64
	checkedUnknown                              atomic.Uint64
}

// Stats returns the coordinator's counters.
func (c *Coordinator) Stats() Stats {
	m := &c.m
	st := Stats{
		ReplicaAcks: m.replicaAcks.Load(), ReplicaErrors: m.replicaErrors.Load(), ReplicaTimeouts: m.replicaTimeouts.Load(),
		Forwarded: m.forwarded.Load(), ForwardFailures: m.forwardFailures.Load(),
		ReadRepairs: m.readRepairs.Load(), ReadRepairFailures: m.readRepairFailures.Load(),
		ReadSiblingsSum: m.readSiblingsSum.Load(),
		CheckedStored:   m.checkedStored.Load(), CheckedReadFirst: m.checkedReadFirst.Load(), CheckedUnknown: m.checkedUnknown.Load(),
		RetriesRecognized: c.store.RetriesRecognized(),
	}
	for i := range m.readSiblings {
		st.ReadSiblings[i] = m.readSiblings[i].Load()
	}
	return st
}

// countAck counts one replication request's outcome.
func (c *Coordinator) countAck(err error) {
	switch {
	case err == nil:
		c.m.replicaAcks.Add(1)
	case errors.Is(err, context.DeadlineExceeded):
		c.m.replicaTimeouts.Add(1)
	default:
		c.m.replicaErrors.Add(1)
	}
}

// countSiblings counts a read's merged answer.
func (c *Coordinator) countSiblings(obj *version.Object) {
	n := 0
	if obj != nil {
		for _, s := range obj.Siblings {
			if !s.Deleted {
				n++
			}
		}
	}
	c.countLive(n)
}

// countLive records a read that found n live siblings.
func (c *Coordinator) countLive(n int) {
	i := 0
	for i < len(siblingBuckets) && n > siblingBuckets[i] {
		i++
	}
	c.m.readSiblings[i].Add(1)
	c.m.readSiblingsSum.Add(uint64(n))
}

// observe reports a finished client request to the Observer.
func (c *Coordinator) observe(ctx context.Context, op Op, level int, start time.Time, err error) {
	if c.o.Observer == nil {
		return
	}
	c.observeTook(ctx, op, level, time.Since(start), err)
}

// observeTook is observe with the request's duration already measured.
func (c *Coordinator) observeTook(ctx context.Context, op Op, level int, took time.Duration, err error) {
	if c.o.Observer == nil {
		return
	}
	c.o.Observer.ObserveRequest(apiOf(ctx), op, c.observedLevel(op, level), took, err)
}

// observeBatch reports a batch's requests, which all took took, one per
// entry of errs (nil: succeeded).
func (c *Coordinator) observeBatch(ctx context.Context, op Op, level int, took time.Duration, errs []error) {
	if c.o.Observer == nil || len(errs) == 0 {
		return
	}
	api, level := apiOf(ctx), c.observedLevel(op, level)
	bo, ok := c.o.Observer.(BatchObserver)
	if !ok {
		for _, err := range errs {
			c.o.Observer.ObserveRequest(api, op, level, took, err)
		}
		return
	}
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	bo.ObserveRequests(api, op, level, took, len(errs), failed)
}

// observedLevel is the level a request is reported at: Default becomes the
// level it stands for.
func (c *Coordinator) observedLevel(op Op, level int) int {
	if level != Default {
		return level
	}
	def := c.DefaultLevels()
	if op == OpGet {
		return def.R
	}
	return def.W
}
