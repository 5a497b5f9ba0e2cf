package dockerfaults

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringkv/ringkv/internal/faults"
)

// The datacenter-cut scenario: two datacenters of two nodes, two replicas
// of every key in each (--replicas-per-dc dc1:2,dc2:2, N=4), so that
// LOCAL_QUORUM is both replicas of the client's datacenter and QUORUM is 3
// of the 4, which a side of the cut cannot reach.
const (
	dcPerDCFlag = "dc1:2,dc2:2"
	dcLocalN    = 2 // replicas per datacenter
	dcAllN      = 4 // N, the sum
	dcLevel     = "LOCAL_QUORUM"
)

var dcPerDC = map[string]int{"dc1": 2, "dc2": 2}

// The keys: registers each side writes alone, shared registers both sides
// write (blind puts of unique values, and reads, at LOCAL_QUORUM), and
// write-once keys, put once by one client and maybe deleted by it later.
var (
	dcLocalKeys  = [2][]string{{"d1.r0", "d1.r1", "d1.r2"}, {"d2.r0", "d2.r1", "d2.r2"}}
	dcSharedKeys = []string{"sh0", "sh1", "sh2", "sh3"}
)

// dcWorkload runs clients bound to one datacenter each: a client sends
// every request to a node of its own side, at LOCAL_QUORUM, never retried.
type dcWorkload struct {
	c     *cluster
	h     *faults.History
	seed  int64
	sides [2][]*node

	mu       sync.Mutex
	onceKeys []string
}

type dcClient struct {
	client
	side int
}

func (w *dcWorkload) run(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	for side := 0; side < 2; side++ {
		for i := 0; i < 3; i++ {
			id := 100*(side+1) + i
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &dcClient{client: client{id: id, rng: rand.New(rand.NewPCG(uint64(w.seed), uint64(id)))}, side: side}
				for ctx.Err() == nil {
					w.step(c)
					time.Sleep(time.Duration(c.rng.IntN(15)) * time.Millisecond)
				}
			}()
		}
	}
	return wg.Wait
}

func (w *dcWorkload) step(c *dcClient) {
	nd := w.sides[c.side][c.rng.IntN(len(w.sides[c.side]))]
	key := dcSharedKeys[c.rng.IntN(len(dcSharedKeys))]
	if c.rng.IntN(2) == 0 {
		key = dcLocalKeys[c.side][c.rng.IntN(len(dcLocalKeys[c.side]))]
	}
	switch p := c.rng.Float64(); {
	case p < 0.35:
		w.read(c.id, nd, key, dcLevel, dcLocalN)
	case p < 0.75:
		w.put(c.id, nd, key, c.value(key), dcLevel, dcLocalN)
	case p < 0.8 && len(c.mine) > 0:
		i := c.rng.IntN(len(c.mine))
		k := c.mine[i]
		c.mine = slices.Delete(c.mine, i, i+1)
		w.del(c.id, nd, k)
	default:
		c.seq++
		k := fmt.Sprintf("d%d.u.c%d.%d", c.side+1, c.id, c.seq)
		w.mu.Lock()
		w.onceKeys = append(w.onceKeys, k)
		w.mu.Unlock()
		c.mine = append(c.mine, k)
		w.put(c.id, nd, k, k+".v", dcLevel, dcLocalN)
	}
}

func (w *dcWorkload) put(id int, nd *node, key, v, level string, quorum int) error {
	_, hp := nd.addrs()
	op := w.h.Invoke(faults.Op{Client: id, Node: nd.id, Kind: faults.Put, Key: key, Value: v, Level: level, Quorum: quorum})
	err := faults.HTTPPut(w.c.hc, hp, key, []byte(v), "", level)
	w.h.Complete(op, faults.NetOutcome(err), err)
	return err
}

func (w *dcWorkload) del(id int, nd *node, key string) {
	_, hp := nd.addrs()
	op := w.h.Invoke(faults.Op{Client: id, Node: nd.id, Kind: faults.Delete, Key: key, Level: dcLevel, Quorum: dcLocalN})
	err := httpDelete(w.c.hc, hp, key, dcLevel)
	w.h.Complete(op, faults.NetOutcome(err), err)
}

func (w *dcWorkload) read(id int, nd *node, key, level string, quorum int) {
	_, hp := nd.addrs()
	op := w.h.Invoke(faults.Op{Client: id, Node: nd.id, Kind: faults.Read, Key: key, Level: level, Quorum: quorum})
	rr, _, err := faults.HTTPGet(w.c.hc, hp, key, level)
	if err != nil {
		w.h.Complete(op, faults.Info, err)
		return
	}
	op.Read = rr
	w.h.Complete(op, faults.OK, nil)
}

func (w *dcWorkload) keys() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Concat(dcLocalKeys[0], dcLocalKeys[1], dcSharedKeys, w.onceKeys)
}

// httpDelete deletes key (a blind delete: the tombstone's context is read
// at level w first) on the node at addr.
func httpDelete(hc *http.Client, addr, key, w string) error {
	req, err := http.NewRequest(http.MethodDelete, "http://"+addr+"/v1/kv/"+key+"?w="+w, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("DELETE %s: %d %s", key, resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

// dcCut is what the checks need to know of the cut: the side of each node
// and when the cut was in place, as offsets on the history's clock (bounds
// that err on the side of a shorter cut).
type dcCut struct {
	sideOf     map[string]int // node ID -> 0 (dc1) or 1 (dc2)
	begin      time.Duration  // the first rule was about to be inserted
	done       time.Duration  // every rule was in place (upper bound)
	seen       time.Duration  // each side saw only itself alive
	healBegin  time.Duration  // the first rule was about to be removed (lower bound)
	workEnd    time.Duration  // the clients had stopped
	hasWindows bool
}

// side returns the side of the client that invoked o (-1 for the final
// reads, which are the test's).
func (cut *dcCut) side(o *faults.Op) int {
	if o.Client < 0 {
		return -1
	}
	return cut.sideOf[o.Node]
}

// dcView is the history of one datacenter seen as a cluster of its own
// with N=2 (the per-datacenter promises of LOCAL_QUORUM): that side's
// operations as they are, the final reads at ALL, and the other side's
// writes with Quorum 0, so that their values are known (they may be read
// on this side) but they neither supersede this side's writes nor are
// superseded by them: they reach this side asynchronously, if at all
// before the cut.
func dcView(ops []*faults.Op, cut *dcCut, side int) []*faults.Op {
	var out []*faults.Op
	for _, o := range ops {
		switch s := cut.side(o); {
		case s == side || s < 0:
			out = append(out, o)
		case o.Kind == faults.Put || o.Kind == faults.Delete:
			c := *o
			c.Quorum = 0
			out = append(out, &c)
		}
	}
	return out
}

// checkAckedPresent is "no acknowledged write lost" for the final reads at
// R=ALL after the heal: every acknowledged put's value must be there unless
// another write of the key that may have been applied could have
// superseded it: one that completed after the put was invoked (its read of
// the key's context may have come after the put was stored, even if the
// put's acknowledgement had not reached its client yet). A write on the
// same side could (a blind LOCAL_QUORUM write reads the context from both
// local replicas); one on the other side could only if the put may have
// reached it: not when the put was invoked once the cut was in place and
// the other write completed before the heal began. So a key written on
// both sides during the cut, and not after, must hold each side's last
// write as a sibling.
func checkAckedPresent(ops []*faults.Op, final map[string]faults.ReadResult, cut *dcCut) []faults.Violation {
	var out []faults.Violation
	byKey := map[string][]*faults.Op{}
	for _, o := range ops {
		byKey[o.Key] = append(byKey[o.Key], o)
	}
	for key, kops := range byKey {
		res, ok := final[key]
		if !ok {
			out = append(out, faults.Violation{Checker: "acked-present", Key: key, Msg: "no final read"})
			continue
		}
		for _, x := range kops {
			if x.Kind != faults.Put || !x.Acked() || slices.Contains(res.Values, x.Value) {
				continue
			}
			var by *faults.Op
			for _, y := range kops {
				if y == x || (y.Kind != faults.Put && y.Kind != faults.Delete) || !y.MayHaveApplied() || y.Complete <= x.Invoke {
					continue
				}
				if cut.side(y) == cut.side(x) || !(x.Invoke > cut.done && y.Complete < cut.healBegin) {
					by = y
					break
				}
			}
			if by == nil {
				out = append(out, faults.Violation{Checker: "acked-present", Key: key,
					Msg: fmt.Sprintf("acknowledged value %q is missing from the final read at ALL (%d siblings) and no later write could have superseded it", x.Value, len(res.Values)),
					Ops: []*faults.Op{x}})
			}
		}
	}
	return out
}

// lastWrites returns, for key, each side's last write by invocation (nil
// when a side did not write it), and whether it overlapped no other write
// of its side (then nothing on its side superseded it).
func lastWrites(ops []*faults.Op, cut *dcCut, key string) (last [2]*faults.Op, alone [2]bool) {
	for _, o := range ops {
		if o.Key != key || (o.Kind != faults.Put && o.Kind != faults.Delete) {
			continue
		}
		if s := cut.side(o); s >= 0 && (last[s] == nil || o.Invoke > last[s].Invoke) {
			last[s] = o
		}
	}
	for s, x := range last {
		if x == nil {
			continue
		}
		alone[s] = true
		for _, o := range ops {
			if o != x && o.Key == key && (o.Kind == faults.Put || o.Kind == faults.Delete) && cut.side(o) == s && o.Complete > x.Invoke {
				alone[s] = false
			}
		}
	}
	return last, alone
}

// TestDatacenterCut: two datacenters of two nodes (--dc, --replicas-per-dc
// dc1:2,dc2:2). Clients bound to each side write unique values and read at
// LOCAL_QUORUM over HTTP, on keys of their side alone, keys both sides
// write, and write-once keys some of which they delete. The datacenters
// are cut apart (iptables DROP between the two groups inside each
// container's network namespace) while the clients go on; then the
// clients stop, the cut heals and the hints drain. Checks:
//
//   - during the cut, LOCAL_QUORUM reads and writes succeed on both sides
//     (operations that failed all overlapped the instant of the cut, and
//     at most a few), and a blind QUORUM write (3 of 4) fails on each side,
//     writing nothing;
//   - per datacenter, R+W>N at N=2 (CheckRegisterReads on each side's
//     view), no deleted value back and deleted keys gone from every
//     replica (CheckNoResurrection, CheckDeletedGone);
//   - after the heal, at R=ALL, every acknowledged value is present or may
//     have been superseded (by a write of its side, or of the other side
//     that could have seen it); a shared key whose last write on each side
//     was acknowledged during the cut holds both as siblings, in the final
//     read and in every replica's store (asserted for at least one key);
//   - every key's four replicas hold equal objects (CheckConverged), read
//     offline after a clean stop.
func TestDatacenterCut(t *testing.T) {
	t.Parallel()
	seed := seedFor(t)
	if os.Geteuid() != 0 {
		t.Skip("skipped: cutting datacenters apart takes iptables in the containers' namespaces (nsenter), which needs root")
	}
	c := newClusterArgs(t, "dccut", 4, func(i int) []string {
		return []string{"--dc", fmt.Sprintf("dc%d", i/2+1), "--replicas-per-dc", dcPerDCFlag}
	})
	cut := &dcCut{sideOf: map[string]int{}}
	var sides [2][]*node
	for i, nd := range c.nodes {
		sides[i/2] = append(sides[i/2], nd)
		cut.sideOf[nd.id] = i / 2
	}
	st, err := c.status(c.nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	if st.Replicas != dcAllN || st.ReplicasPlaced != dcAllN {
		t.Fatalf("/v1/cluster: N=%d, %d placed; want %d (--replicas-per-dc %s)", st.Replicas, st.ReplicasPlaced, dcAllN, dcPerDCFlag)
	}
	for _, m := range st.Members {
		if want := fmt.Sprintf("dc%d", cut.sideOf[m.ID]+1); m.DC != want {
			t.Fatalf("/v1/cluster: %s is in %q, want %q", m.ID, m.DC, want)
		}
	}

	// The history's clock starts between before and after: offsets taken
	// from before are upper bounds, from after lower bounds.
	before := time.Now()
	h := faults.NewHistory()
	after := time.Now()
	h.Event("start: seed %d, dc1 %s, dc2 %s, --replicas-per-dc %s", seed, ids(sides[0]), ids(sides[1]), dcPerDCFlag)
	w := &dcWorkload{c: c, h: h, seed: seed, sides: sides}
	rng := rand.New(rand.NewPCG(uint64(seed), 0xdc))

	ctx, cancel := context.WithCancel(context.Background())
	wait := w.run(ctx)
	defer wait()
	defer cancel()
	time.Sleep(jitter(rng, 2*time.Second, time.Second))

	cut.begin = time.Since(after)
	heal, err := c.partition(t, sides[0], sides[1])
	if err != nil {
		t.Fatalf("cannot cut the datacenters apart with iptables: %v", err)
	}
	healed := false
	defer func() {
		if !healed {
			heal()
		}
	}()
	cut.done = time.Since(before)
	h.Event("cut %s | %s (iptables DROP)", ids(sides[0]), ids(sides[1]))
	c.waitAlive(t, sides[0], sides[0], 20*time.Second)
	c.waitAlive(t, sides[1], sides[1], 20*time.Second)
	cut.seen = time.Since(before)
	h.Event("cut seen on both sides")

	time.Sleep(jitter(rng, time.Second, time.Second))
	// A blind write at QUORUM (3 of 4) must fail on each side, at the read
	// of its context: nothing is written.
	var quorumKeys []string
	var quorumVals []string
	for s := 0; s < 2; s++ {
		key := fmt.Sprintf("q%d.%d", s+1, seed)
		v := key + ".v"
		quorumKeys, quorumVals = append(quorumKeys, key), append(quorumVals, v)
		err := w.put(9+s, sides[s][0], key, v, "QUORUM", 3)
		if err == nil {
			t.Errorf("a QUORUM write (3 of %d) to %s of dc%d was acknowledged during the cut", dcAllN, sides[s][0].id, s+1)
		} else if !strings.Contains(err.Error(), " 503 ") {
			t.Errorf("a QUORUM write during the cut failed with %v, want a 503 (quorum error)", err)
		} else {
			t.Logf("QUORUM write to dc%d during the cut, as expected: %v", s+1, err)
		}
	}
	time.Sleep(jitter(rng, 2*time.Second, time.Second))

	// One key written once on each side, one after the other, while cut.
	splitKey := fmt.Sprintf("split.%d", seed)
	for s := 0; s < 2; s++ {
		v := fmt.Sprintf("%s.dc%d", splitKey, s+1)
		if err := w.put(9+s, sides[s][1], splitKey, v, dcLevel, dcLocalN); err != nil {
			t.Errorf("LOCAL_QUORUM write of %s to %s of dc%d during the cut: %v", splitKey, sides[s][1].id, s+1, err)
		}
	}

	kept, detail := c.hintsKept()
	h.Event("before the heal, hints kept: %d (%s)", kept, detail)
	if kept == 0 {
		t.Errorf("no node kept a hint during the cut: no write missed the other datacenter")
	}
	cancel()
	wait()
	cut.workEnd = time.Since(before)
	h.Event("workload over")
	cut.healBegin = time.Since(after)
	heal()
	healed = true
	h.Event("cut healed")
	c.waitAlive(t, c.nodes, c.nodes, 30*time.Second)
	h.Event("every node sees every member alive")
	took, first, err := c.waitHintsDrained(45 * time.Second)
	if first != "" {
		t.Logf("hints pending once every node saw every member alive: %s", first)
	}
	if err != nil {
		t.Errorf("hints still pending %v after the heal: %v", took.Round(time.Millisecond), err)
	} else {
		t.Logf("%d hints kept before the heal, all delivered %v after every node saw every member alive", kept, took.Round(time.Millisecond))
	}
	h.Event("hints drained")

	keys := append(w.keys(), append(quorumKeys, splitKey)...)
	final := finalReadsAt(t, c, h, keys, dcAllN)
	time.Sleep(time.Second) // asynchronous read repair, before the nodes stop
	states := replicaStatesPerDC(t, c, keys, dcPerDC)
	ops := h.Ops()

	// Availability during the cut: both sides served LOCAL_QUORUM, and the
	// operations that failed all overlapped the instant of the cut.
	var okIn [2]int
	var failed []*faults.Op
	for _, o := range ops {
		if o.Level != dcLevel {
			continue
		}
		if o.Outcome != faults.OK {
			failed = append(failed, o)
			continue
		}
		if o.Invoke > cut.seen && o.Complete < cut.healBegin {
			okIn[cut.side(o)]++
		}
	}
	t.Logf("LOCAL_QUORUM operations acknowledged during the cut (after both sides saw it): dc1 %d, dc2 %d; failed in all: %d", okIn[0], okIn[1], len(failed))
	for s := 0; s < 2; s++ {
		if okIn[s] == 0 {
			t.Errorf("no LOCAL_QUORUM operation succeeded on dc%d during the cut", s+1)
		}
	}
	const maxFailed = 6 // at most one in flight per client (3 per side) at the cut
	var outside []string
	for _, o := range failed {
		if o.Complete < cut.begin || o.Invoke > cut.seen {
			outside = append(outside, o.String())
		}
	}
	if len(outside) > 0 || len(failed) > maxFailed {
		var all []string
		for _, o := range failed {
			all = append(all, o.String())
		}
		t.Errorf("LOCAL_QUORUM operations failed: %d (at most %d allowed, all overlapping the cut's installation [%v, %v]); %d outside it:\n  %s",
			len(failed), maxFailed, cut.begin.Round(time.Millisecond), cut.seen.Round(time.Millisecond), len(outside), strings.Join(all, "\n  "))
	}

	// The QUORUM writes wrote nothing.
	for i, k := range quorumKeys {
		if rr, ok := final[k]; ok && slices.Contains(rr.Values, quorumVals[i]) {
			t.Errorf("the failed QUORUM write of %s during the cut is in the final read %v: it was applied", k, rr.Values)
		}
	}

	// The checkers: per datacenter (N=2), then globally.
	var vs []faults.Violation
	for s := 0; s < 2; s++ {
		view := dcView(ops, cut, s)
		vs = append(vs, faults.CheckRegisterReads(view, dcLocalN)...)
		vs = append(vs, faults.CheckNoResurrection(view, final, states, dcLocalN)...)
		vs = append(vs, faults.CheckDeletedGone(view, states, dcLocalN)...)
	}
	vs = append(vs, checkAckedPresent(ops, final, cut)...)
	vs = append(vs, faults.CheckConverged(states)...)
	for _, k := range keys {
		if len(states[k]) != dcAllN {
			t.Errorf("key %s: %d replicas in the ring rebuilt from /v1/cluster, want %d", k, len(states[k]), dcAllN)
		}
	}

	// Concurrent writes across the cut are kept as siblings, explicitly:
	// on the key written once on each side, and on every shared key whose
	// last write on each side was acknowledged during the cut and
	// overlapped no other write of its side.
	split := 0
	for _, k := range append([]string{splitKey}, dcSharedKeys...) {
		last, alone := lastWrites(ops, cut, k)
		if last[0] == nil || last[1] == nil {
			continue
		}
		both := alone[0] && alone[1]
		for _, x := range last {
			both = both && x.Kind == faults.Put && x.Acked() && x.Invoke > cut.done && x.Complete < cut.healBegin
		}
		if !both {
			if k == splitKey {
				t.Errorf("key %s: the writes on each side during the cut were not both acknowledged: %s, %s", k, last[0], last[1])
			}
			continue
		}
		split++
		want := []string{last[0].Value, last[1].Value}
		if rr := final[k]; !slices.Contains(rr.Values, want[0]) || !slices.Contains(rr.Values, want[1]) {
			t.Errorf("key %s, written on both sides during the cut: the final read at ALL returned %v, want siblings %v", k, rr.Values, want)
		}
		for _, rs := range states[k] {
			if rs.Err != nil {
				continue // CheckConverged reports it
			}
			var live []string
			for _, sb := range rs.Obj.Live() {
				live = append(live, string(sb.Value))
			}
			if !slices.Contains(live, want[0]) || !slices.Contains(live, want[1]) {
				t.Errorf("key %s, written on both sides during the cut: replica %s stores %v, want siblings %v", k, rs.Node, live, want)
			}
		}
		t.Logf("key %s: last writes of the cut, %s on dc1 and %s on dc2, both kept as siblings", k, last[0].Value, last[1].Value)
	}
	t.Logf("%d keys written on both sides during the cut hold both sides' last writes as siblings", split)

	t.Logf("%s; %d keys read at R=ALL and compared on their %d replicas", h.Summary(), len(keys), dcAllN)
	t.Logf("timeline (seed %d):\n%s", seed, h.Format("\x00"))
	report(t, t.Name(), seed, h, vs)

	acked := 0
	for _, o := range ops {
		if o.Kind != faults.Read && o.Acked() {
			acked++
		}
	}
	if acked < 50 {
		t.Errorf("only %d writes acknowledged: the workload did not run", acked)
	}

	// The canary: the same checks on this history plus one acknowledged
	// write that was never sent (a lying recorder), on a key of dc1 whose
	// final read found values, after every real write, must report it.
	fabKey := dcLocalKeys[0][0]
	for _, k := range dcLocalKeys[0] {
		if len(final[k].Values) > 0 {
			fabKey = k
			break
		}
	}
	fab := &faults.Op{ID: len(ops), Client: 100, Node: sides[0][0].id, Kind: faults.Put, Key: fabKey,
		Value: fmt.Sprintf("%s.fabricated.%d", fabKey, seed), Level: dcLevel, Quorum: dcLocalN,
		Invoke: cut.workEnd, Complete: cut.workEnd, Outcome: faults.OK}
	lying := append(slices.Clone(ops), fab)
	caught := 0
	for _, v := range checkAckedPresent(lying, final, cut) {
		if v.Key == fab.Key && slices.Contains(v.Ops, fab) {
			caught++
		}
	}
	if caught == 0 {
		t.Errorf("canary: the acknowledged-present check did not report the fabricated write %s", fab)
	}
	staleFound := false
	for _, v := range faults.CheckRegisterReads(dcView(lying, cut, 0), dcLocalN) {
		staleFound = staleFound || (v.Key == fab.Key && slices.Contains(v.Ops, fab))
	}
	if !staleFound {
		t.Errorf("canary: CheckRegisterReads on dc1's view did not report the final read at ALL missing the fabricated write %s", fab)
	} else {
		t.Logf("canary: the fabricated acknowledged write %s is reported by both checks", fab.Value)
	}
}

// TestDatacenterCutCanary: the checks of TestDatacenterCut must report a
// lost write. On a history of one side's writes during a cut, an
// acknowledged put that the final read lacks (a fabricated acknowledgement
// of a write never sent) must be named by checkAckedPresent, and a shared
// key missing the other side's concurrent value too; a put superseded on
// its own side must not be.
func TestDatacenterCutCanary(t *testing.T) {
	cut := &dcCut{sideOf: map[string]int{"n1": 0, "n2": 0, "n3": 1, "n4": 1}, done: 10 * time.Millisecond, healBegin: 100 * time.Millisecond}
	ms := func(v int) time.Duration { return time.Duration(v) * time.Millisecond }
	h := []*faults.Op{
		// k: dc1 writes a then b (b supersedes a), dc2 writes c, all
		// during the cut; the final read holds b and c.
		{ID: 1, Client: 100, Node: "n1", Kind: faults.Put, Key: "k", Value: "a", Quorum: 2, Invoke: ms(20), Complete: ms(21), Outcome: faults.OK},
		{ID: 2, Client: 101, Node: "n2", Kind: faults.Put, Key: "k", Value: "b", Quorum: 2, Invoke: ms(30), Complete: ms(31), Outcome: faults.OK},
		{ID: 3, Client: 200, Node: "n3", Kind: faults.Put, Key: "k", Value: "c", Quorum: 2, Invoke: ms(40), Complete: ms(41), Outcome: faults.OK},
		// f: a fabricated acknowledgement (never sent): nothing holds it.
		{ID: 4, Client: 100, Node: "n1", Kind: faults.Put, Key: "f", Value: "f1", Quorum: 2, Invoke: ms(50), Complete: ms(51), Outcome: faults.OK},
		// s: dc1 writes d during the cut, dc2 writes e later in the cut;
		// the final read lost d (e could not have seen it).
		{ID: 5, Client: 100, Node: "n1", Kind: faults.Put, Key: "s", Value: "d", Quorum: 2, Invoke: ms(60), Complete: ms(61), Outcome: faults.OK},
		{ID: 6, Client: 200, Node: "n4", Kind: faults.Put, Key: "s", Value: "e", Quorum: 2, Invoke: ms(70), Complete: ms(71), Outcome: faults.OK},
	}
	final := map[string]faults.ReadResult{
		"k": {Exists: true, Values: []string{"b", "c"}},
		"f": {Exists: false},
		"s": {Exists: true, Values: []string{"e"}},
	}
	vs := checkAckedPresent(h, final, cut)
	got := map[string]bool{}
	for _, v := range vs {
		got[v.Key] = true
		t.Logf("caught: %s", v)
	}
	if !got["f"] || !got["s"] || got["k"] || len(vs) != 2 {
		t.Errorf("checkAckedPresent reported %d violations on keys %v; want exactly f (fabricated) and s (lost across the cut)", len(vs), got)
	}
	// Without the cut, e could have seen d: not a loss.
	if vs := checkAckedPresent(h[4:6], final, &dcCut{sideOf: cut.sideOf, done: ms(1000), healBegin: ms(2000)}); len(vs) != 0 {
		t.Errorf("checkAckedPresent reported %v for a write the other side could have seen", vs)
	}
}
