package storage

import (
	"math"
	"testing"
	"time"
)

// fakePace drives a pacer on a clock of its own.
type fakePace struct {
	now    time.Time
	slept  []time.Duration
	writes uint64
	behind bool
}

func (f *fakePace) pacer(share float64) *pacer {
	return newPacer(share, func() bool { return f.behind }, func() uint64 { return f.writes },
		func() time.Time { return f.now }, func(d time.Duration) { f.slept = append(f.slept, d); f.now = f.now.Add(d) })
}

// work advances the clock by d with writes arriving, then steps p.
func (f *fakePace) work(p *pacer, d time.Duration, writes uint64) {
	f.now = f.now.Add(d)
	f.writes += writes
	p.step()
}

func TestPacerSleepsInProportionToTheWork(t *testing.T) {
	f := &fakePace{now: time.Unix(1000, 0)}
	p := f.pacer(0.25)
	f.work(p, 400*time.Microsecond, 10) // under a slice: no sleep yet
	if len(f.slept) != 0 {
		t.Fatalf("slept %v after 400 µs of work", f.slept)
	}
	f.work(p, 800*time.Microsecond, 10) // 1.2 ms of work at a share of 1/4: 3.6 ms of sleep
	if len(f.slept) != 1 || f.slept[0] != 3600*time.Microsecond {
		t.Fatalf("slept %v after 1.2 ms of work at share 0.25, want [3.6ms]", f.slept)
	}
	f.work(p, 100*time.Millisecond, 10) // a long slice: the sleep is bounded
	if f.slept[1] != maxPaceSleep {
		t.Fatalf("slept %v after 100 ms of work, want %v", f.slept[1], maxPaceSleep)
	}
}

func TestPacerDoesNotSleepWithoutWrites(t *testing.T) {
	f := &fakePace{now: time.Unix(1000, 0)}
	p := f.pacer(0.5)
	for range 10 {
		f.work(p, 2*time.Millisecond, 0)
	}
	if len(f.slept) != 0 {
		t.Fatalf("slept %v while no write arrived", f.slept)
	}
	f.work(p, 2*time.Millisecond, 1)
	if len(f.slept) != 1 || f.slept[0] != 2*time.Millisecond {
		t.Fatalf("slept %v after a write arrived, want [2ms]", f.slept)
	}
}

func TestPacerStopsForGoodOnceBehind(t *testing.T) {
	f := &fakePace{now: time.Unix(1000, 0)}
	p := f.pacer(0.5)
	f.work(p, 2*time.Millisecond, 5)
	f.behind = true
	f.work(p, 2*time.Millisecond, 5)
	f.behind = false
	for range 5 {
		f.work(p, 2*time.Millisecond, 5)
	}
	if len(f.slept) != 1 {
		t.Fatalf("slept %v: want one sleep, before the engine fell behind", f.slept)
	}
}

func TestNoPacerAtAFullShare(t *testing.T) {
	db, err := Open("db", &Options{FS: l0TestOptions().FS, BackgroundShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if p := db.newPacer(); p != nil {
		t.Fatalf("BackgroundShare 1 gave a pacer: %+v", p)
	}
	var p *pacer
	p.step() // a nil pacer is full speed
}

// TestBehindWhenL0IsDeep: a paced job goes full speed once L0 is halfway
// from its compaction trigger (4) to its slowdown trigger (12), before
// writes slow down.
func TestBehindWhenL0IsDeep(t *testing.T) {
	db, err := Open("db", &Options{FS: l0TestOptions().FS})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Keep the compaction goroutine from acting on the depths set here
	// (it would install a new version of depth 0).
	db.mu.Lock()
	db.compacting = true
	db.mu.Unlock()
	defer func() {
		db.mu.Lock()
		db.current.l0Depth = 0
		db.compacting = false
		db.mu.Unlock()
	}()
	for depth, want := range map[int]bool{0: false, 4: false, 7: false, 8: true, 12: true} {
		db.mu.Lock()
		db.current.l0Depth = depth // no write: the version's tables stay none
		db.mu.Unlock()
		if got := db.behind(); got != want {
			t.Errorf("L0 depth %d: behind = %v, want %v", depth, got, want)
		}
	}
}

// TestL0TriggersKeepTheirOrder: a stop trigger set below the compaction
// trigger would stop writers for a compaction that never starts.
func TestL0TriggersKeepTheirOrder(t *testing.T) {
	o := (&Options{L0CompactionTrigger: 8, L0SlowdownTrigger: 2, L0StopTrigger: 3}).EnsureDefaults()
	if o.L0SlowdownTrigger != 8 || o.L0StopTrigger != 8 {
		t.Fatalf("triggers compaction 8, slowdown 2, stop 3 became slowdown %d, stop %d; want 8 and 8", o.L0SlowdownTrigger, o.L0StopTrigger)
	}
	o = (&Options{L0CompactionTrigger: 8, L0StopTrigger: 3}).EnsureDefaults()
	if o.L0SlowdownTrigger != 12 || o.L0StopTrigger != 12 {
		t.Fatalf("triggers compaction 8, stop 3 became slowdown %d, stop %d; want 12 and 12", o.L0SlowdownTrigger, o.L0StopTrigger)
	}
	for _, share := range []float64{0, -1, math.NaN(), 1e-9} {
		if got := (&Options{BackgroundShare: share}).EnsureDefaults().BackgroundShare; !(got >= minBackgroundShare) {
			t.Errorf("BackgroundShare %v became %v", share, got)
		}
	}
}

// TestWritersWaitForACompactionAndItComes: with the stop trigger asked
// below the compaction trigger (and raised to it), writers that reach it
// are let go by the compaction.
func TestWritersWaitForACompactionAndItComes(t *testing.T) {
	o := l0TestOptions()
	o.MemTableSize = 64 << 10 // each round of writes fills it twice
	o.L0CompactionTrigger = 3
	o.L0SlowdownTrigger = 3
	o.L0StopTrigger = 1 // raised to 3
	db, err := Open("db", o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 6 {
			writeAndFlush(t, db, "key", 0, 1000)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		m := db.Metrics()
		t.Fatalf("six rounds of writes over the same keys not done in 20 s: L0 depth %d, %d compactions", m.L0Depth, m.Compactions)
	}
	waitForCompactions(t, db, 1)
}
