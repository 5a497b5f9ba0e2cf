package storage

import (
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
	for depth, want := range map[int]bool{0: false, 4: false, 7: false, 8: true, 12: true} {
		db.mu.Lock()
		db.current.l0Depth = depth // this version is the test's alone: nothing is written
		db.mu.Unlock()
		if got := db.behind(); got != want {
			t.Errorf("L0 depth %d: behind = %v, want %v", depth, got, want)
		}
	}
}
