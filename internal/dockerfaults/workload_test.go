package dockerfaults

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ringkv/ringkv/internal/faults"
	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/storage"
)

// n is N, the replicas per key (the server's default, which the nodes use).
const n = 3

// The workload's keys: registers (blind SET, DEL and reads of every
// sibling, over Redis connections that demand a quorum of primaries, many
// operations per key; checked by CheckRegisterReads), sets (read-modify-
// write adds with the read's context, over HTTP at the default sloppy
// quorum; checked by CheckSetAdds) and write-once keys (each SET once with
// a unique value, some deleted later by the client that wrote it, over
// Redis at the default sloppy quorum; judged by the final reads at R=ALL).
// R+W>N reads are promised only at strict quorum; no acknowledged write
// lost, in both modes.
var (
	regKeys = []string{"r0", "r1", "r2", "r3", "r4", "r5"}
	setKeys = []string{"s0", "s1", "s2"}
)

// workload runs the clients until ctx ends, recording every operation in
// h. Clients pick a random node per operation; nodes that are down or cut
// off answer with errors, which are recorded, never retried.
type workload struct {
	c    *cluster
	h    *faults.History
	seed int64

	mu      sync.Mutex
	onceKey []string // write-once keys, in order of their first write
}

func newWorkload(c *cluster, h *faults.History, seed int64) *workload {
	return &workload{c: c, h: h, seed: seed}
}

// seedSets writes each set as empty at W=ALL before the faults, so that
// every add has a context to write with.
func (w *workload) seedSets(t *testing.T) {
	t.Helper()
	for _, k := range setKeys {
		_, h := w.c.nodes[0].addrs()
		waitFor(t, 15*time.Second, "write the empty set "+k, func() bool {
			return faults.HTTPPut(w.c.hc, h, k, nil, "", "ALL") == nil
		})
	}
}

// run starts the clients; wait returns when they have stopped.
func (w *workload) run(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(3)
		go w.loop(ctx, &wg, 10+i, w.register)
		go w.loop(ctx, &wg, 20+i, w.add)
		go w.loop(ctx, &wg, 30+i, w.writeOnce)
	}
	return wg.Wait
}

type client struct {
	id   int
	rng  *rand.Rand
	seq  int
	mine []string // write-once keys this client wrote and has not deleted
}

func (c *client) value(key string) string {
	c.seq++
	return fmt.Sprintf("%s.c%d.%d", key, c.id, c.seq)
}

func (w *workload) loop(ctx context.Context, wg *sync.WaitGroup, id int, step func(*client)) {
	defer wg.Done()
	c := &client{id: id, rng: rand.New(rand.NewPCG(uint64(w.seed), uint64(id)))}
	for ctx.Err() == nil {
		step(c)
		time.Sleep(time.Duration(c.rng.IntN(15)) * time.Millisecond)
	}
}

func (w *workload) pick(c *client) *node { return w.c.nodes[c.rng.IntN(len(w.c.nodes))] }

// register does a blind SET or a DEL, or reads every sibling, all at
// strict quorum.
func (w *workload) register(c *client) {
	nd := w.pick(c)
	key := regKeys[c.rng.IntN(len(regKeys))]
	switch p := c.rng.Float64(); {
	case p < 0.4:
		w.read(c.id, nd, key)
	case p < 0.55:
		w.del(c.id, nd, key, true)
	default:
		w.set(c.id, nd, key, c.value(key), true)
	}
}

// writeOnce writes a new key once with a unique value, or deletes one
// that this client wrote, at the default (sloppy) quorum. It reads
// nothing: sloppy reads may legitimately miss a write; the final reads at
// R=ALL judge these keys.
func (w *workload) writeOnce(c *client) {
	nd := w.pick(c)
	if c.rng.Float64() < 0.2 && len(c.mine) > 0 {
		i := c.rng.IntN(len(c.mine))
		key := c.mine[i]
		c.mine = slices.Delete(c.mine, i, i+1)
		w.del(c.id, nd, key, false)
		return
	}
	c.seq++
	key := fmt.Sprintf("u.c%d.%d", c.id, c.seq)
	w.mu.Lock()
	w.onceKey = append(w.onceKey, key)
	w.mu.Unlock()
	c.mine = append(c.mine, key)
	w.set(c.id, nd, key, key+".v", false)
}

func level(strict bool) string {
	if strict {
		return "QUORUM,p"
	}
	return "QUORUM"
}

func (w *workload) set(id int, nd *node, key, v string, strict bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	op := w.h.Invoke(faults.Op{Client: id, Node: nd.id, Kind: faults.Put, Key: key, Value: v, Level: level(strict), Quorum: 2})
	err := nd.redis(strict).Set(ctx, key, v, 0).Err()
	w.h.Complete(op, faults.NetOutcome(err), err)
}

func (w *workload) del(id int, nd *node, key string, strict bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	op := w.h.Invoke(faults.Op{Client: id, Node: nd.id, Kind: faults.Delete, Key: key, Level: level(strict), Quorum: 2})
	// DEL reads the key and writes a tombstone with that read's context
	// only if it found a live value: answering 0, it wrote nothing.
	cnt, err := nd.redis(strict).Del(ctx, key).Result()
	if err == nil && cnt == 0 {
		w.h.Complete(op, faults.Fail, errors.New("DEL answered 0: nothing written"))
		return
	}
	w.h.Complete(op, faults.NetOutcome(err), err)
}

// read reads every sibling of key with RINGKV.SIBLINGS (the context token
// and the live values) at strict quorum.
func (w *workload) read(id int, nd *node, key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	op := w.h.Invoke(faults.Op{Client: id, Node: nd.id, Kind: faults.Read, Key: key, Level: level(true), Quorum: 2})
	rr, err := siblings(ctx, nd.redis(true), key)
	if err != nil {
		w.h.Complete(op, faults.Info, err)
		return
	}
	op.Read = rr
	w.h.Complete(op, faults.OK, nil)
}

// siblings decodes RINGKV.SIBLINGS: [context token, [values...]]; an empty
// token means no replica knows the key.
func siblings(ctx context.Context, rc *redis.Client, key string) (faults.ReadResult, error) {
	res, err := rc.Do(ctx, "RINGKV.SIBLINGS", key).Slice()
	if err != nil {
		return faults.ReadResult{}, err
	}
	if len(res) != 2 {
		return faults.ReadResult{}, fmt.Errorf("RINGKV.SIBLINGS %s: %d elements, want 2", key, len(res))
	}
	tok, ok1 := res[0].(string)
	vals, ok2 := res[1].([]any)
	if !ok1 || !ok2 {
		return faults.ReadResult{}, fmt.Errorf("RINGKV.SIBLINGS %s: unexpected reply %#v", key, res)
	}
	rr := faults.ReadResult{Exists: tok != "", Tombstones: -1}
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			return faults.ReadResult{}, fmt.Errorf("RINGKV.SIBLINGS %s: value %#v", key, v)
		}
		rr.Values = append(rr.Values, s)
	}
	sort.Strings(rr.Values)
	return rr, nil
}

// add reads a set at R=QUORUM and writes it back with one more element and
// the read's context at W=QUORUM.
func (w *workload) add(c *client) {
	nd := w.pick(c)
	key := setKeys[c.rng.IntN(len(setKeys))]
	elem := c.value(key)
	_, h := nd.addrs()
	op := w.h.Invoke(faults.Op{Client: c.id, Node: nd.id, Kind: faults.Add, Key: key, Value: elem, Level: "QUORUM", Quorum: 2, Context: true})
	rr, tok, err := faults.HTTPGet(w.c.hc, h, key, "QUORUM")
	if err != nil || tok == "" {
		if err == nil {
			err = errors.New("read returned no context")
		}
		w.h.Complete(op, faults.Fail, fmt.Errorf("read before the add: %w", err))
		return
	}
	set := faults.DecodeSets(rr.Values)
	set[elem] = true
	op.Saw = rr.Values
	err = faults.HTTPPut(w.c.hc, h, key, []byte(faults.EncodeSet(set)), tok, "QUORUM")
	w.h.Complete(op, faults.NetOutcome(err), err)
}

// keys returns every key the workload touched.
func (w *workload) keys() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append(append(slices.Clone(regKeys), setKeys...), w.onceKey...)
}

// finalReads reads every key at R=ALL once the cluster has healed, each
// read recorded in the history (client -1), so that CheckRegisterReads
// judges it like any read: with R=ALL, a key whose last acknowledged write
// was a put must return it (no acknowledged write lost) and one whose last
// acknowledged write was a delete must not return what it deleted (no
// resurrection). A read that fails is recorded and tried again through
// the next node (reads write nothing). It returns the successful reads.
func finalReads(t *testing.T, c *cluster, h *faults.History, keys []string) map[string]faults.ReadResult {
	return finalReadsAt(t, c, h, keys, n)
}

// finalReadsAt is finalReads recording each read as standing for quorum
// replicas (ALL is N: 3 for the default ring, the sum of the per-datacenter
// counts for a multi-datacenter one).
func finalReadsAt(t *testing.T, c *cluster, h *faults.History, keys []string, quorum int) map[string]faults.ReadResult {
	t.Helper()
	final := map[string]faults.ReadResult{}
	for i, k := range keys {
		for attempt := 0; attempt < 6; attempt++ {
			nd := c.nodes[(i+attempt)%len(c.nodes)]
			op := h.Invoke(faults.Op{Client: -1, Node: nd.id, Kind: faults.Read, Key: k, Level: "ALL", Quorum: quorum})
			_, hp := nd.addrs()
			rr, _, err := faults.HTTPGet(c.hc, hp, k, "ALL")
			if err != nil {
				h.Complete(op, faults.Info, err)
				time.Sleep(200 * time.Millisecond)
				continue
			}
			op.Read = rr
			h.Complete(op, faults.OK, nil)
			final[k] = rr
			break
		}
		if _, ok := final[k]; !ok {
			t.Errorf("final read of %s at R=ALL failed on every try", k)
		}
	}
	return final
}

// replicaStates stops every node (SIGTERM: a clean shutdown), copies each
// one's data directory out of its container and reads every key's stored
// object there, offline, for the key's replicas in the ring the cluster
// reported before stopping. That is each replica's own state, not a
// coordinator's merge: no endpoint serves a node's local copy alone.
func replicaStates(t *testing.T, c *cluster, keys []string) map[string][]faults.ReplicaState {
	return replicaStatesPerDC(t, c, keys, nil)
}

// replicaStatesPerDC is replicaStates for a ring placed with
// --replicas-per-dc perDC (nil: one datacenter), which /v1/cluster does not
// report, so the caller passes what every node was started with.
func replicaStatesPerDC(t *testing.T, c *cluster, keys []string, perDC map[string]int) map[string][]faults.ReplicaState {
	t.Helper()
	st, err := c.status(c.nodes[0])
	if err != nil {
		t.Fatalf("cluster status: %v", err)
	}
	members := make([]ring.Member, 0, len(st.Members))
	for _, m := range st.Members {
		s, err := ring.ParseState(m.State)
		if err != nil {
			t.Fatalf("member %s: %v", m.ID, err)
		}
		members = append(members, ring.Member{ID: m.ID, Weight: m.Weight, DC: m.DC, Rack: m.Rack, State: s})
	}
	rg, err := ring.New(ring.Config{Partitions: st.Partitions, Replicas: st.Replicas, ReplicasPerDC: perDC}, members)
	if err != nil {
		t.Fatalf("rebuild the ring: %v", err)
	}
	// The rebuilt ring must be the cluster's: same primaries.
	for id, ps := range rg.Ownership() {
		if !slices.Equal(ps, st.Ownership[id]) {
			t.Fatalf("the ring rebuilt from /v1/cluster gives %s %d primaries, the cluster %d", id, len(ps), len(st.Ownership[id]))
		}
	}

	for _, nd := range c.nodes {
		mustDocker(t, "stop", "-t", "10", nd.container)
	}
	stores := map[string]*replica.Store{}
	for _, nd := range c.nodes {
		dir := filepath.Join(t.TempDir(), nd.id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		mustDocker(t, "cp", nd.container+":/data/.", dir)
		db, err := storage.Open(filepath.Join(dir, "engine"), &storage.Options{})
		if err != nil {
			t.Fatalf("open %s's engine (copied to %s): %v", nd.id, dir, err)
		}
		t.Cleanup(func() { db.Close() })
		stores[nd.id] = replica.New(db, "inspect")
	}
	states := map[string][]faults.ReplicaState{}
	for _, k := range keys {
		for _, id := range rg.PreferenceForKey([]byte(k)) {
			s := stores[id]
			if s == nil {
				states[k] = append(states[k], faults.ReplicaState{Node: id, Err: errors.New("not a node of this cluster")})
				continue
			}
			obj, err := s.Get([]byte(k))
			states[k] = append(states[k], faults.ReplicaState{Node: id, Obj: obj, Err: err})
		}
	}
	return states
}

// report fails t with the violations, the seed and the history of the
// first keys involved.
func report(t *testing.T, name string, seed int64, h *faults.History, vs []faults.Violation) {
	t.Helper()
	if len(vs) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d violations with seed %d (replay: go test ./internal/dockerfaults -run '^%s$' -seed=%d -v)\n", len(vs), seed, name, seed)
	keys := []string{}
	for i, v := range vs {
		if i < 12 {
			fmt.Fprintf(&b, "  %s\n", v)
		}
		if !slices.Contains(keys, v.Key) && len(keys) < 2 {
			keys = append(keys, v.Key)
		}
	}
	for _, k := range keys {
		fmt.Fprintf(&b, "history of %s:\n%s", k, h.Format(k))
	}
	t.Error(b.String())
}
