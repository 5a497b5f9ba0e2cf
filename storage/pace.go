package storage

import "time"

// paceEvery is how many entries a flush or compaction writes between
// calls to its pacer (some tens of microseconds of work).
const paceEvery = 128

// paceSlice is the least work a pacer lets run between two sleeps.
const paceSlice = time.Millisecond

// maxPaceSleep bounds one sleep, so that a job soon notices that the
// engine is closing or behind.
const maxPaceSleep = 20 * time.Millisecond

// pacer holds one flush or compaction to Options.BackgroundShare of a
// processor. A flush of a full memtable or an L0 compaction is hundreds of
// milliseconds of computation with nothing to wait for; run flat out on a
// machine with few cores it takes a whole processor from the requests for
// that long, and their latency doubles or triples while it runs. Paced,
// the same work takes longer at a lower intensity.
//
// Pacing stops, for the rest of the job, as soon as the engine is behind
// (DB.behind): as many memtables wait for their flush as may
// (MaxImmutableMemTables, so writers stop when the active one fills), or
// L0 is halfway from its compaction trigger to its slowdown trigger, or
// the engine is closing. It does not sleep while no write has arrived
// since it last looked: there is then nobody to make room for.
type pacer struct {
	share  float64
	behind func() bool
	writes func() uint64 // the engine's count of writes committed
	now    func() time.Time
	sleep  func(time.Duration)

	mark    time.Time // start of the current slice of work
	written uint64    // writes() at mark
	off     bool
}

// newPacer returns a pacer for one flush or compaction, or nil when pacing
// is off.
func (db *DB) newPacer() *pacer {
	if db.opts.BackgroundShare >= 1 {
		return nil
	}
	return newPacer(db.opts.BackgroundShare, db.behind, db.m.writes.Load, time.Now, time.Sleep)
}

func newPacer(share float64, behind func() bool, writes func() uint64, now func() time.Time, sleep func(time.Duration)) *pacer {
	return &pacer{share: share, behind: behind, writes: writes, now: now, sleep: sleep, mark: now(), written: writes()}
}

// step is called every paceEvery entries. Once a slice of work is long
// enough it sleeps, in proportion, if pacing is still wanted.
func (p *pacer) step() {
	if p == nil || p.off {
		return
	}
	worked := p.now().Sub(p.mark)
	if worked < paceSlice {
		return
	}
	if p.behind() {
		p.off = true
		return
	}
	written := p.writes()
	if written != p.written {
		p.sleep(min(time.Duration(float64(worked)*(1-p.share)/p.share), maxPaceSleep))
	}
	p.written = written
	p.mark = p.now()
}

// behind reports whether background work is late enough, or the engine
// closing, that a flush or compaction must run at full speed.
func (db *DB) behind() bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.closing || len(db.imm) >= db.opts.MaxImmutableMemTables ||
		db.current.l0Depth >= (db.opts.L0CompactionTrigger+db.opts.L0SlowdownTrigger)/2
}
