package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ringkv/ringkv/api/resp"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/version"
)

// respBackend adapts the coordinator to the Redis protocol. GET returns the
// live sibling with the newest timestamp (ties broken by dot); a SET carries
// no causal context, so it supersedes what the coordinating replica holds.
// Requests run at the levels the connection chose with RINGKV.CONFIG SET
// (r, w, pr, pw), else at the node's defaults.
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
	value, found, err := b.s.coord.GetLiveAt(ctx, key, levels(ctx))
	if err != nil {
		return nil, false, respErr(err)
	}
	return value, found, nil
}

func (b respBackend) Set(ctx context.Context, key, value []byte) error {
	if err := b.checkKey(key); err != nil {
		return err
	}
	_, err := b.s.coord.PutAt(ctx, key, value, nil, levels(ctx))
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
	for j, err := range b.s.coord.PutBatchAt(ctx, subset(keys, pos), subset(values, pos), levels(ctx)) {
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
	vals, founds, oerrs := b.s.coord.GetLiveBatchAt(ctx, subset(keys, pos), levels(ctx))
	for j, i := range pos {
		if oerrs[j] != nil {
			errs[i] = respErr(oerrs[j])
			continue
		}
		values[i], found[i] = vals[j], founds[j]
	}
	return values, found, errs
}

func (b respBackend) Delete(ctx context.Context, key []byte) (bool, error) {
	if err := b.checkKey(key); err != nil {
		return false, err
	}
	obj, err := b.s.coord.GetAt(ctx, key, levels(ctx))
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
	_, err = b.s.coord.DeleteAt(ctx, key, causal, levels(ctx))
	return err == nil, respErr(err)
}

func (b respBackend) Siblings(ctx context.Context, key []byte) (string, [][]byte, error) {
	if err := b.checkKey(key); err != nil {
		return "", nil, err
	}
	obj, err := b.s.coord.GetAt(ctx, key, levels(ctx))
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
	_, err = b.s.coord.PutAt(ctx, key, value, causal, levels(ctx))
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

// connLevels are the per-connection settings RINGKV.CONFIG accepts, and
// where each goes in coordinator.Levels.
var connLevels = map[string]func(*coordinator.Levels) *int{
	"r":  func(lv *coordinator.Levels) *int { return &lv.R },
	"w":  func(lv *coordinator.Levels) *int { return &lv.W },
	"pr": func(lv *coordinator.Levels) *int { return &lv.PR },
	"pw": func(lv *coordinator.Levels) *int { return &lv.PW },
}

// levels returns the levels the connection of ctx chose (Default for the
// others). The values were checked when they were set.
func levels(ctx context.Context) coordinator.Levels {
	var lv coordinator.Levels
	for name, value := range resp.ConnSettings(ctx) {
		if field, ok := connLevels[name]; ok {
			*field(&lv), _ = parseConnLevel(name, value)
		}
	}
	return lv
}

func parseConnLevel(name, value string) (int, error) {
	if name == "pr" || name == "pw" {
		return coordinator.ParsePrimaryLevel(value)
	}
	return coordinator.ParseLevel(value)
}

// CheckConnSetting implements resp.ConnConfigurer: a level (a number, ONE,
// QUORUM or ALL; for r and w also LOCAL_ONE, LOCAL_QUORUM and EACH_QUORUM,
// counted in this node's datacenter; 0 for pr and pw: no requirement), or
// DEFAULT to go back to the node's default.
func (b respBackend) CheckConnSetting(name, value string) (string, error) {
	if strings.EqualFold(value, "default") {
		return "", nil
	}
	lv, err := parseConnLevel(name, value)
	if err == nil && lv == coordinator.Default {
		return "", nil // pr or pw 0: the default
	}
	if err == nil && lv > 0 && lv > b.s.members.Ring().Replicas() {
		err = fmt.Errorf("%w: asked for %d replicas but keys have %d", coordinator.ErrBadLevel, lv, b.s.members.Ring().Replicas())
	}
	if err != nil {
		return "", &resp.Error{Code: "ERR", Msg: fmt.Sprintf("RINGKV.CONFIG SET %s: %v", name, err)}
	}
	return coordinator.FormatLevel(lv), nil
}

// ConnSettingDefault implements resp.ConnConfigurer: the node's default R
// and W, and 0 (no requirement) for pr and pw.
func (b respBackend) ConnSettingDefault(name string) (string, bool) {
	def := b.s.coord.DefaultLevels()
	switch name {
	case "r":
		return coordinator.FormatLevel(def.R), true
	case "w":
		return coordinator.FormatLevel(def.W), true
	case "pr", "pw":
		return "0", true
	}
	return "", false
}
