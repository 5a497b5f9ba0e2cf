package rebalance

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ringkv/ringkv/ring"
)

func testRing(t *testing.T, normal, joining int) *ring.Ring {
	t.Helper()
	var ms []ring.Member
	for i := range normal + joining {
		st := ring.StateNormal
		if i >= normal {
			st = ring.StateJoining
		}
		ms = append(ms, ring.Member{ID: fmt.Sprintf("n%d", i+1), State: st})
	}
	r, err := ring.New(ring.Config{Partitions: 64, Replicas: 3}, ms)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func up(down ...string) func(string) bool {
	return func(id string) bool { return !slices.Contains(down, id) }
}

var b = Backoff{Min: time.Second, Max: 8 * time.Second}

// The gained partitions are those the joiner replicates once normal, and
// the sources of each are its owners now.
func TestPlanGainsFuturePartitionsFromTheirCurrentOwners(t *testing.T) {
	r := testRing(t, 3, 1)
	p := NewPlan("n4", r, b)
	fr, _ := r.Future()
	var want []int
	for part := range r.Partitions() {
		if slices.Contains(fr.Preference(part), "n4") {
			want = append(want, part)
		}
	}
	if !slices.Equal(p.Partitions(), want) || len(want) == 0 {
		t.Fatalf("gained %v, want %v", p.Partitions(), want)
	}
	for _, part := range want {
		if got := p.parts[part].sources; !slices.Equal(got, r.Preference(part)) {
			t.Fatalf("partition %d: sources %v, want its owners %v", part, got, r.Preference(part))
		}
	}
	if NewPlan("n1", r, b).Partitions() != nil {
		t.Fatal("a normal node gains partitions")
	}
	if p := NewPlan("n4", testRing(t, 4, 0), b); !p.Done(up()) {
		t.Fatal("a plan with nothing gained is not done")
	}
}

// drive runs a plan to the end against a fake exchange, and returns the
// exchanges made.
func drive(t *testing.T, p *Plan, alive func(string) bool, exchange func(peer string, parts []int) ([]int, error)) (calls int) {
	t.Helper()
	now := time.Unix(0, 0)
	for !p.Done(alive) {
		peer, parts, wait := p.Next(now, alive, 8)
		if peer == "" {
			if wait <= 0 {
				t.Fatal("not done, nothing due and nothing ever will be")
			}
			now = now.Add(wait)
			continue
		}
		if len(parts) > 8 {
			t.Fatalf("%d partitions in one exchange, max 8", len(parts))
		}
		verified, err := exchange(peer, parts)
		p.Result(peer, parts, verified, err, now)
		if calls++; calls > 10000 {
			t.Fatal("no end")
		}
	}
	return calls
}

// Done means: every gained partition verified against every owner that is
// up, at least one; never before.
func TestPlanDoneOnlyWhenEveryLiveSourceVerified(t *testing.T) {
	r := testRing(t, 3, 1)
	p := NewPlan("n4", r, b)
	got := map[verifiedKey]bool{}
	drive(t, p, up(), func(peer string, parts []int) ([]int, error) {
		for _, part := range parts {
			got[verifiedKey{part, peer}] = true
		}
		if done, total := p.Progress(up()); done == total {
			t.Fatal("done before the last exchange")
		}
		return parts, nil
	})
	for _, part := range p.Partitions() {
		for _, src := range r.Preference(part) {
			if !got[verifiedKey{part, src}] {
				t.Fatalf("partition %d done without an exchange with owner %s", part, src)
			}
		}
	}
}

// A source that is down is skipped, but a partition needs one verified
// source: with all of its owners down it is never done.
func TestPlanSkipsDownSourcesButNeedsOne(t *testing.T) {
	r := testRing(t, 3, 1)
	p := NewPlan("n4", r, b)
	drive(t, p, up("n2"), func(peer string, parts []int) ([]int, error) {
		if peer == "n2" {
			t.Fatal("exchange with a source that is down")
		}
		return parts, nil
	})
	p = NewPlan("n4", r, b)
	all := up("n1", "n2", "n3")
	if p.Done(all) {
		t.Fatal("done with every source down")
	}
	if peer, _, wait := p.Next(time.Now(), all, 8); peer != "" || wait != 0 {
		t.Fatalf("Next with every source down = %q, wait %v", peer, wait)
	}
}

// A failed partition is retried after a backoff that doubles up to Max;
// partial results count (what was verified stays verified), and a success
// resets the backoff.
func TestPlanRetriesFailuresWithBackoff(t *testing.T) {
	r := testRing(t, 3, 1)
	p := NewPlan("n4", r, b)
	now := time.Unix(0, 0)
	peer, parts, _ := p.Next(now, up(), 8)
	if len(parts) < 2 {
		t.Fatalf("first exchange asks %v", parts)
	}
	failed := parts[0]
	p.Result(peer, parts, parts[1:], errors.New("boom"), now)
	if p.LastError() != peer+": boom" {
		t.Fatalf("LastError = %q", p.LastError())
	}
	var waits []time.Duration
	for range 6 {
		for {
			pe, ps, wait := p.Next(now, up(), 1000)
			if pe == "" {
				waits = append(waits, wait)
				now = now.Add(wait)
				break
			}
			if slices.Contains(ps, failed) {
				t.Fatalf("partition %d retried before its backoff ended", failed)
			}
			p.Result(pe, ps, ps, nil, now) // everything else succeeds
		}
		pe, ps, _ := p.Next(now, up(), 1000)
		if !slices.Contains(ps, failed) {
			t.Fatalf("partition %d not due after its backoff (%s %v)", failed, pe, ps)
		}
		p.Result(pe, []int{failed}, nil, errors.New("again"), now)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
	if !slices.Equal(waits, want) {
		t.Fatalf("backoffs %v, want %v", waits, want)
	}
	pe, _, _ := p.Next(now.Add(time.Minute), up(), 1000)
	p.Result(pe, []int{failed}, []int{failed}, nil, now)
	if m := p.parts[failed]; m.attempts != 0 || m.lastErr != "" {
		t.Fatalf("after a success: %+v", m)
	}
}

// A ring change mid-move (another node joins too) keeps what was verified
// and adapts the sources.
func TestPlanUpdateKeepsVerifications(t *testing.T) {
	r := testRing(t, 3, 1)
	p := NewPlan("n4", r, b)
	drive(t, p, up(), func(peer string, parts []int) ([]int, error) { return parts, nil })
	p.Update(testRing(t, 3, 2))
	calls := drive(t, p, up(), func(peer string, parts []int) ([]int, error) { return parts, nil })
	if calls == 0 && len(p.Partitions()) == 0 {
		t.Fatal("n4 gains nothing with a second joiner")
	}
	for _, part := range p.Partitions() {
		if !p.done(part, p.parts[part], up()) {
			t.Fatalf("partition %d not done", part)
		}
	}
}

// A partition that stops being gained (the change is undone) loses its
// verifications: the node may drop its copy, and a later gain of the same
// partition must stream it again.
func TestPlanForgetsVerificationsOfPartitionsNoLongerGained(t *testing.T) {
	r := testRing(t, 3, 1)
	p := NewPlan("n4", r, b)
	drive(t, p, up(), func(peer string, parts []int) ([]int, error) { return parts, nil })
	if !p.Done(up()) {
		t.Fatal("the first move is not done")
	}
	p.Update(testRing(t, 4, 0)) // n4 normal: it gains nothing
	if len(p.Partitions()) != 0 {
		t.Fatalf("a normal n4 gains %v", p.Partitions())
	}
	p.Update(r) // the same gains again
	if len(p.Partitions()) == 0 {
		t.Fatal("n4 gains nothing")
	}
	if done, total := p.Progress(up()); done != 0 {
		t.Fatalf("%d of %d partitions done before any stream of the new gain", done, total)
	}
}

// A verification stands only while no removal of the partition (a drop)
// began since: a ring change the move did not see may have dropped the
// data the verification saw.
func TestPlanVerificationLapsesWhenThePartitionIsDropped(t *testing.T) {
	r := testRing(t, 3, 1)
	p := NewPlan("n4", r, b)
	removals := map[int]uint64{}
	p.Removals = func(part int) uint64 { return removals[part] }
	drive(t, p, up(), func(peer string, parts []int) ([]int, error) { return parts, nil })
	if !p.Done(up()) {
		t.Fatal("the move is not done")
	}
	dropped := p.Partitions()[0]
	removals[dropped]++
	if done, total := p.Progress(up()); done != total-1 {
		t.Fatalf("%d of %d done after partition %d was dropped, want all but it", done, total, dropped)
	}
	peer, parts, _ := p.Next(time.Now().Add(time.Hour), up(), 16)
	if peer == "" || !slices.Equal(parts, []int{dropped}) {
		t.Fatalf("next exchange %s %v, want the dropped partition %d again", peer, parts, dropped)
	}
	drive(t, p, up(), func(peer string, parts []int) ([]int, error) { return parts, nil })
	if !p.Done(up()) {
		t.Fatal("not done after streaming the dropped partition again")
	}
}
