package faults

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/internal/testcluster"
)

// FastHandoff is the hinted-handoff configuration of the fault runs: a
// delivery pass every 50ms, retries backing off up to 250ms, deliveries
// bounded by timeout (the coordinators' request timeout), so that hints
// drain within a fraction of a second of a target's return.
func FastHandoff(timeout time.Duration) *handoff.Options {
	return &handoff.Options{Interval: 50 * time.Millisecond, BackoffMax: 250 * time.Millisecond, Timeout: timeout}
}

// Hinted is a hint record seen in a node's store during a run, and what
// its target stored for the key once hints had drained.
type Hinted struct {
	Holder string
	testcluster.Hint
	// Seen is when the record was first seen.
	Seen time.Duration
	// OnTarget is the target's local state of the key after the wait for
	// hints to drain (read from its store, before any final read).
	OnTarget ReplicaState
}

// HintReport is what a run with hinted handoff learned about its hints.
type HintReport struct {
	// Hinted lists every distinct hint record seen: the stores are sampled
	// every few tens of milliseconds during the run and once after the
	// heal, so a hint created and delivered between two samples is missed
	// (it is a lower bound of the hints kept).
	Hinted []Hinted
	// Unreadable reports hint records the harness could not decode.
	Unreadable []string
	// Wait is how long after the heal (and the wait for in-flight writes;
	// in the returning-node scenario, after the restart) it took until no
	// node reported a pending hint for a live target, or about Deadline
	// when some still did.
	Wait, Deadline time.Duration
	// Pending lists, holder -> target, what was still pending at the end
	// of the wait for targets alive then; Left the hint records still in
	// the holders' stores for them.
	Pending map[string]map[string]handoff.Stats
	Left    map[string]map[string]int
}

// hintSampler collects the hint records of the running nodes.
type hintSampler struct {
	mu    sync.Mutex
	seen  map[string]bool // holder | target | seq
	rep   *HintReport
	start time.Time
}

func newHintSampler(h *History) *hintSampler {
	return &hintSampler{seen: map[string]bool{}, rep: &HintReport{}, start: h.start}
}

// sample reads every running node's hint records.
func (s *hintSampler) sample(cl *testcluster.Cluster) {
	for _, id := range cl.IDs() {
		hs, err := cl.Hints(id)
		s.mu.Lock()
		if err != nil && errors.Is(err, testcluster.ErrBadHintRecord) && len(s.rep.Unreadable) < 10 {
			s.rep.Unreadable = append(s.rep.Unreadable, err.Error())
		}
		for _, h := range hs {
			k := fmt.Sprintf("%s|%s|%d", id, h.Target, h.Seq)
			if s.seen[k] {
				continue
			}
			s.seen[k] = true
			s.rep.Hinted = append(s.rep.Hinted, Hinted{Holder: id, Hint: h, Seen: time.Since(s.start)})
		}
		s.mu.Unlock()
	}
}

// drain waits, up to deadline, until no running node reports a pending hint
// for a target the cluster's view says is alive, then records what is
// left and each sampled hint's target state.
func (s *hintSampler) drain(cl *testcluster.Cluster, deadline time.Duration) *HintReport {
	start := time.Now()
	pending := func() (map[string]map[string]handoff.Stats, bool) {
		out := map[string]map[string]handoff.Stats{}
		for _, id := range cl.IDs() {
			st, err := cl.HintStats(id)
			if err != nil {
				continue
			}
			for target, ts := range st {
				if ts.Pending > 0 && cl.View.Alive(target) {
					if out[id] == nil {
						out[id] = map[string]handoff.Stats{}
					}
					out[id][target] = ts
				}
			}
		}
		return out, len(out) == 0
	}
	var left map[string]map[string]handoff.Stats
	for {
		var done bool
		left, done = pending()
		if done || time.Since(start) > deadline {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rep := s.rep
	rep.Wait, rep.Deadline, rep.Pending = time.Since(start), deadline, left
	rep.Left = map[string]map[string]int{}
	for _, id := range cl.IDs() {
		hs, err := cl.Hints(id)
		if err != nil {
			continue
		}
		for _, h := range hs {
			if cl.View.Alive(h.Target) {
				if rep.Left[id] == nil {
					rep.Left[id] = map[string]int{}
				}
				rep.Left[id][h.Target]++
			}
		}
	}
	for i := range rep.Hinted {
		h := &rep.Hinted[i]
		h.OnTarget = ReplicaState{Node: h.Target}
		st, err := cl.StoreOf(h.Target)
		if err == nil {
			h.OnTarget.Obj, err = st.Get([]byte(h.Key))
		}
		h.OnTarget.Err = err
	}
	return rep
}

// CheckHintsDelivered is the checker "hints delivered and removed", for a
// run with hinted handoff, after the heal (every node running and alive in
// the failure detector's view) and a bounded wait (HintReport.Deadline):
//
//   - no node's handoff service reports pending hints for a live target
//     (handoff.Service.Stats), and no hint record for one is left in its
//     store: every hint was delivered and then deleted;
//   - every hint record seen during the run (a sample, see HintReport) is
//     present on its target: the target's local state of the key descends
//     the hinted version (version.Object.Descends: merging the hint into it
//     would change nothing). The states are read before any final read, so
//     read repair has not done the work.
//
// A nil report (a run without hinted handoff) has nothing to check.
func CheckHintsDelivered(rep *HintReport) []Violation {
	if rep == nil {
		return nil
	}
	var out []Violation
	for _, e := range rep.Unreadable {
		out = append(out, Violation{Checker: "hints", Msg: e})
	}
	for _, holder := range sortedKeys(rep.Pending) {
		for _, target := range sortedKeys(rep.Pending[holder]) {
			st := rep.Pending[holder][target]
			msg := fmt.Sprintf("%s still reports %d hints (%d bytes) pending for live target %s after %v",
				holder, st.Pending, st.Bytes, target, rep.Wait.Round(time.Millisecond))
			if st.LastError != "" {
				msg += " (last delivery error: " + st.LastError + ")"
			}
			out = append(out, Violation{Checker: "hints", Msg: msg})
		}
	}
	for _, holder := range sortedKeys(rep.Left) {
		for _, target := range sortedKeys(rep.Left[holder]) {
			if _, reported := rep.Pending[holder][target]; reported {
				continue
			}
			out = append(out, Violation{Checker: "hints", Msg: fmt.Sprintf("%s reports no pending hints for %s but still stores %d hint records for it",
				holder, target, rep.Left[holder][target])})
		}
	}
	for _, h := range rep.Hinted {
		if h.OnTarget.Err != nil {
			out = append(out, Violation{Checker: "hints", Key: h.Key, Msg: fmt.Sprintf("target %s of a hint held by %s: %v", h.Target, h.Holder, h.OnTarget.Err)})
			continue
		}
		if !h.OnTarget.Obj.Descends(h.Obj) {
			out = append(out, Violation{Checker: "hints", Key: h.Key,
				Msg: fmt.Sprintf("hint #%d held by %s for %s (seen at %s) is not on its target: the target stores %s, the hint %s",
					h.Seq, h.Holder, h.Target, ms(h.Seen), brief(h.OnTarget.Obj), brief(h.Obj))})
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return slices.Clip(ks)
}
