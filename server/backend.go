package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/ringkv/ringkv/api/resp"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/version"
)

// respBackend adapts the coordinator to the Redis protocol. GET returns the
// live sibling with the newest timestamp (ties broken by dot); a SET carries
// no causal context, so it supersedes what the coordinating replica holds.
type respBackend struct {
	s *Server
}

func respErr(err error) error {
	if err == nil {
		return nil
	}
	// The refusals a client must act on come first: the coordinator may
	// report them inside a QuorumError (the replica's answer).
	var qe *coordinator.QuorumError
	switch {
	case errors.Is(err, version.ErrObjectTooLarge):
		return &resp.Error{Code: "ERR", Msg: fmt.Sprintf("%v (over Redis: RINGKV.SIBLINGS the key and RINGKV.PUT with its context, or SET, which replaces every sibling this replica holds)", err)}
	case errors.Is(err, version.ErrUnknownContext):
		return &resp.Error{Code: "ERR", Msg: fmt.Sprintf("%v (read the key again with RINGKV.SIBLINGS and write with RINGKV.PUT and the new context)", err)}
	case errors.As(err, &qe):
		return &resp.Error{Code: "QUORUM", Msg: qe.Error()}
	}
	return err
}

// checkKey refuses keys over the configured limit with the same rule as
// the HTTP API.
func (b respBackend) checkKey(key []byte) error {
	if len(key) > b.s.cfg.MaxKeySize {
		return &resp.Error{Code: "ERR", Msg: fmt.Sprintf("key too large: %d bytes, the limit is %d bytes", len(key), b.s.cfg.MaxKeySize)}
	}
	return nil
}

func (b respBackend) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	if err := b.checkKey(key); err != nil {
		return nil, false, err
	}
	value, found, err := b.s.coord.GetLive(ctx, key, coordinator.Default)
	if err != nil {
		return nil, false, respErr(err)
	}
	return value, found, nil
}

func (b respBackend) Set(ctx context.Context, key, value []byte) error {
	if err := b.checkKey(key); err != nil {
		return err
	}
	_, err := b.s.coord.Put(ctx, key, value, nil, coordinator.Default)
	return respErr(err)
}

// checkKeys applies checkKey to every key of a batch: errs holds the
// refusals, pos the indices of the keys accepted.
func (b respBackend) checkKeys(keys [][]byte) (pos []int, errs []error) {
	pos, errs = make([]int, 0, len(keys)), make([]error, len(keys))
	for i, k := range keys {
		if errs[i] = b.checkKey(k); errs[i] == nil {
			pos = append(pos, i)
		}
	}
	return pos, errs
}

// subset returns xs at the indices pos (xs itself when pos takes them all).
func subset(xs [][]byte, pos []int) [][]byte {
	if len(pos) == len(xs) {
		return xs
	}
	out := make([][]byte, len(pos))
	for j, i := range pos {
		out[j] = xs[i]
	}
	return out
}

// SetBatch is Set for a run of pipelined SETs (resp.SetBatcher): the keys
// this node is a replica of share one engine batch.
func (b respBackend) SetBatch(ctx context.Context, keys, values [][]byte) []error {
	pos, errs := b.checkKeys(keys)
	for j, err := range b.s.coord.PutBatch(ctx, subset(keys, pos), subset(values, pos), coordinator.Default) {
		errs[pos[j]] = respErr(err)
	}
	return errs
}

// GetBatch is Get for a run of pipelined GETs (resp.GetBatcher): each other
// replica is asked once for all the keys it holds.
func (b respBackend) GetBatch(ctx context.Context, keys [][]byte) ([][]byte, []bool, []error) {
	values, found := make([][]byte, len(keys)), make([]bool, len(keys))
	pos, errs := b.checkKeys(keys)
	if len(pos) == 0 {
		return values, found, errs
	}
	objs, oerrs := b.s.coord.GetBatch(ctx, subset(keys, pos), coordinator.Default)
	for j, i := range pos {
		if oerrs[j] != nil {
			errs[i] = respErr(oerrs[j])
			continue
		}
		values[i], found[i] = version.LiveValue(objs[j])
	}
	return values, found, errs
}

func (b respBackend) Delete(ctx context.Context, key []byte) (bool, error) {
	if err := b.checkKey(key); err != nil {
		return false, err
	}
	obj, err := b.s.coord.Get(ctx, key, coordinator.Default)
	if err != nil {
		return false, respErr(err)
	}
	if obj == nil || len(obj.Live()) == 0 {
		return false, nil
	}
	causal := obj.Context
	if len(causal) > version.MaxContextEntries {
		// Too many entries to travel as a context (a key written by very
		// many incarnations): delete blind, which supersedes what a read
		// quorum holds, as this read did.
		causal = nil
	}
	_, err = b.s.coord.Delete(ctx, key, causal, coordinator.Default)
	return err == nil, respErr(err)
}

func (b respBackend) Siblings(ctx context.Context, key []byte) (string, [][]byte, error) {
	if err := b.checkKey(key); err != nil {
		return "", nil, err
	}
	obj, err := b.s.coord.Get(ctx, key, coordinator.Default)
	if err != nil {
		return "", nil, respErr(err)
	}
	if obj == nil {
		return "", nil, nil
	}
	var values [][]byte
	for _, s := range obj.Live() {
		values = append(values, s.Value)
	}
	return version.ClockToString(obj.Context), values, nil
}

func (b respBackend) PutWithContext(ctx context.Context, key []byte, token string, value []byte) error {
	if err := b.checkKey(key); err != nil {
		return err
	}
	causal, err := version.ParseClock(token)
	if err != nil {
		return &resp.Error{Code: "ERR", Msg: fmt.Sprintf("bad causal context: %v", err)}
	}
	if causal == nil {
		causal = version.Clock{}
	}
	_, err = b.s.coord.Put(ctx, key, value, causal, coordinator.Default)
	return respErr(err)
}

func (b respBackend) Info() []resp.InfoSection {
	s := b.s
	m := s.db.Metrics()
	members := s.members.Members()
	alive := 0
	for _, mm := range members {
		if mm.Alive {
			alive++
		}
	}
	r := s.members.Ring()
	rq, wq := s.coord.Defaults(r.Replicas())
	return []resp.InfoSection{
		{Name: "Server", Fields: [][2]string{
			{"ringkv_version", Version},
			{"redis_version", "7.2.0"},
			{"node_id", s.cfg.NodeID},
			{"resp_addr", s.cfg.RespAddr},
			{"http_addr", s.cfg.HTTPAddr},
			{"peer_addr", s.cfg.PeerAddr},
		}},
		{Name: "Cluster", Fields: [][2]string{
			{"members", strconv.Itoa(len(members))},
			{"members_alive", strconv.Itoa(alive)},
			{"partitions", strconv.Itoa(r.Partitions())},
			{"replicas", strconv.Itoa(r.Replicas())},
			{"replicas_placed", strconv.Itoa(r.Placed())},
			{"default_r", strconv.Itoa(rq)},
			{"default_w", strconv.Itoa(wq)},
		}},
		{Name: "Storage", Fields: [][2]string{
			{"writes", strconv.FormatUint(m.Writes, 10)},
			{"flushes", strconv.FormatUint(m.Flushes, 10)},
			{"compactions", strconv.FormatUint(m.Compactions, 10)},
			{"write_stalls", strconv.FormatUint(m.WriteStalls, 10)},
			{"block_cache_hit_rate", strconv.FormatFloat(m.BlockCache.HitRate(), 'f', 3, 64)},
			{"write_amplification", strconv.FormatFloat(m.WriteAmplification(), 'f', 2, 64)},
		}},
	}
}
