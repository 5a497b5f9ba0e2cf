package handoff

import (
	"bytes"
	"errors"
	"sort"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func testLimits() limits {
	return limits{maxBytes: 100, window: time.Hour, rate: 1000, backoffMin: time.Second, backoffMax: 8 * time.Second}
}

func TestCoreRefusesPastByteBoundAndCountsIt(t *testing.T) {
	c := newCore(testLimits())
	for i, want := range []bool{true, true, true, false, false} {
		if got := c.admit("n2", 30, t0); got != want {
			t.Fatalf("hint %d: admit = %v, want %v", i, got, want)
		}
	}
	// Another target has its own bound.
	if !c.admit("n3", 100, t0) {
		t.Fatal("n3's first hint refused: bounds are per target")
	}
	st := c.stats()["n2"]
	if st.Pending != 3 || st.Bytes != 90 || st.Refused != 2 {
		t.Fatalf("n2 stats = %+v, want 3 pending, 90 bytes, 2 refused", st)
	}
	// Delivery makes room again.
	c.delivered("n2", 1, 30)
	if !c.admit("n2", 30, t0) {
		t.Fatal("hint refused after delivery freed room")
	}
}

func TestCoreWindowRefusesHintsForTargetPendingTooLong(t *testing.T) {
	c := newCore(testLimits())
	if !c.admit("n2", 1, t0) {
		t.Fatal("first hint refused")
	}
	if !c.admit("n2", 1, t0.Add(59*time.Minute)) {
		t.Fatal("hint inside the window refused")
	}
	if c.admit("n2", 1, t0.Add(61*time.Minute)) {
		t.Fatal("hint past the window (counted from the first pending hint) admitted")
	}
	if got := c.stats()["n2"].Refused; got != 1 {
		t.Fatalf("refused = %d, want 1", got)
	}
	// Once the target caught up, a new outage starts a new window.
	c.delivered("n2", 2, 2)
	if !c.admit("n2", 1, t0.Add(2*time.Hour)) {
		t.Fatal("hint refused after the target drained its hints")
	}
}

// A target that acknowledges deliveries is reachable: the window counts
// again from its last accepted delivery, so a target that keeps taking
// hints without ever draining them is not shut out of handoff.
func TestCoreAcceptedDeliveryRestartsTheWindow(t *testing.T) {
	c := newCore(testLimits())
	for i := range 3 {
		if !c.admit("n2", 1, t0.Add(time.Duration(i)*time.Minute)) {
			t.Fatalf("hint %d refused", i)
		}
	}
	c.delivered("n2", 1, 1)
	c.accepted("n2", t0.Add(50*time.Minute))
	if !c.admit("n2", 1, t0.Add(100*time.Minute)) {
		t.Fatal("hint refused although the target accepted a delivery 50 minutes ago")
	}
	if c.admit("n2", 1, t0.Add(111*time.Minute)) {
		t.Fatal("hint admitted more than a window after the last accepted delivery")
	}
}

func TestCoreRestoreStartsWindowAtOldestStoredHint(t *testing.T) {
	c := newCore(testLimits())
	c.restore("n2", 10, t0.Add(time.Minute))
	c.restore("n2", 10, t0)
	st := c.stats()["n2"]
	if st.Pending != 2 || st.Bytes != 20 {
		t.Fatalf("restored stats = %+v", st)
	}
	if c.admit("n2", 1, t0.Add(61*time.Minute)) {
		t.Fatal("window not counted from the oldest restored hint")
	}
}

func TestCoreBackoffDoublesUpToCapAndResetsOnSuccess(t *testing.T) {
	c := newCore(testLimits())
	c.admit("n2", 1, t0)
	alive := func(string) bool { return true }
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	now := t0
	for i, w := range want {
		c.failed("n2", errors.New("boom"), now)
		st := c.stats()["n2"]
		if got := st.RetryAt.Sub(now); got != w*time.Second {
			t.Fatalf("failure %d: retry after %v, want %v", i+1, got, w*time.Second)
		}
		if st.LastError != "boom" {
			t.Fatalf("last error = %q", st.LastError)
		}
		if d := c.due(st.RetryAt.Add(-time.Nanosecond), alive); len(d) != 0 {
			t.Fatalf("due during backoff: %v", d)
		}
		if d := c.due(st.RetryAt, alive); len(d) != 1 {
			t.Fatalf("not due once backoff expired: %v", d)
		}
		now = st.RetryAt
	}
	c.delivered("n2", 1, 1)
	st := c.stats()["n2"]
	if st.LastError != "" || !st.RetryAt.IsZero() {
		t.Fatalf("success did not clear the failure: %+v", st)
	}
	c.admit("n2", 1, now)
	c.failed("n2", errors.New("again"), now)
	if got := c.stats()["n2"].RetryAt.Sub(now); got != time.Second {
		t.Fatalf("backoff after a success restarted at %v, want 1s", got)
	}
}

func TestCoreDueOnlyAliveTargetsWithHints(t *testing.T) {
	c := newCore(testLimits())
	c.admit("n3", 1, t0)
	c.admit("n2", 1, t0)
	c.admit("n4", 1, t0)
	c.delivered("n4", 1, 1) // nothing left
	c.target("n5")          // known, never had a hint
	alive := func(id string) bool { return id != "n3" }
	if got := c.due(t0, alive); len(got) != 1 || got[0] != "n2" {
		t.Fatalf("due = %v, want [n2]", got)
	}
	all := func(string) bool { return true }
	if got := c.due(t0, all); len(got) != 2 || got[0] != "n2" || got[1] != "n3" {
		t.Fatalf("due = %v, want [n2 n3] (sorted)", got)
	}
}

func TestCoreRateBudgetRefillsAtRateAndCapsAtOneSecond(t *testing.T) {
	c := newCore(testLimits()) // 1000 bytes/s
	if b := c.budget(t0); b != 1000 {
		t.Fatalf("initial budget = %d, want a full second's worth", b)
	}
	c.spend(1500) // one large batch: into debt
	if b := c.budget(t0); b > 0 {
		t.Fatalf("budget in debt = %d, want <= 0", b)
	}
	if b := c.budget(t0.Add(time.Second)); b != 500 {
		t.Fatalf("budget after 1s = %d, want 500", b)
	}
	if b := c.budget(t0.Add(time.Hour)); b != 1000 {
		t.Fatalf("budget after an idle hour = %d, want the 1000 cap", b)
	}
}

func TestRecordKeysGroupTargetsAndOrderOldestFirst(t *testing.T) {
	var keys [][]byte
	for _, r := range []struct {
		target string
		seq    uint64
		key    string
	}{
		{"n1", 2, "a"}, {"n10", 1, "b"}, {"n1", 1, "zzz"}, {"n1", 256, "b"}, {"n10", 0, "c"}, {"n", 9, "x"},
	} {
		keys = append(keys, mustKey(t, r.target, r.seq, []byte(r.key)))
	}
	sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) < 0 })
	var got []string
	for _, k := range keys {
		target, seq, key, err := decodeKey(k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(k, targetPrefix(target)) {
			t.Fatalf("key of %s lacks its prefix", target)
		}
		got = append(got, target+"/"+string(rune('0'+seq%10))+"/"+string(key))
	}
	// Each target's hints are contiguous and in sequence order, whatever
	// the user keys.
	want := []string{"n/9/x", "n1/1/zzz", "n1/2/a", "n1/6/b", "n10/0/c", "n10/1/b"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order = %v, want %v", got, want)
		}
	}
}

// A target whose deliveries failed and which the failure detector then saw
// down is due as soon as it is seen up again, not after its backoff.
func TestCoreReturningTargetIsDueAtOnce(t *testing.T) {
	c := newCore(testLimits())
	c.admit("n2", 1, t0)
	up := func(string) bool { return true }
	down := func(string) bool { return false }
	for range 4 {
		c.failed("n2", errors.New("unreachable"), t0) // backoff now 8s
	}
	if got := c.due(t0.Add(time.Second), up); len(got) != 0 {
		t.Fatalf("due during backoff while never seen down: %v", got)
	}
	if got := c.due(t0.Add(time.Second), down); len(got) != 0 {
		t.Fatalf("due while down: %v", got)
	}
	if got := c.due(t0.Add(2*time.Second), up); len(got) != 1 {
		t.Fatalf("a returning target is not due at once: %v (retry at %v)", got, c.stats()["n2"].RetryAt)
	}
	// Its next failure starts the backoff again from the minimum.
	c.failed("n2", errors.New("again"), t0.Add(2*time.Second))
	if got := c.stats()["n2"].RetryAt.Sub(t0.Add(2 * time.Second)); got != time.Second {
		t.Fatalf("backoff after the return is %v, want 1s", got)
	}
}
