package handoff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/version"
)

// Options configure a Service. Zero fields take their defaults.
type Options struct {
	// MaxBytes bounds the hints kept for one target (keys and values as
	// stored); past it new hints for the target are refused and counted.
	// Default: 256 MiB.
	MaxBytes int64
	// Window bounds how long a target collects hints: once its hints have
	// been pending continuously for longer than this (it has been down or
	// unreachable that long), new ones are refused and counted. Default: 3h.
	Window time.Duration
	// Rate bounds delivery, in bytes per second over all targets (the
	// burst is one second's worth). Default: 8 MiB/s.
	Rate int64
	// Interval is the time between delivery passes. Default: 1s.
	Interval time.Duration
	// Tick, if set, starts a pass on each receive instead of every
	// Interval (tests drive the service with it).
	Tick <-chan time.Time
	// BatchBytes and BatchEntries bound one delivery message (a batch
	// always holds at least one hint). Defaults: 1 MiB and 512.
	BatchBytes   int64
	BatchEntries int
	// BackoffMax caps the wait before retrying a target whose delivery
	// failed; the first wait is Interval, doubling. Default: 1 minute.
	BackoffMax time.Duration
	// Timeout bounds one delivery message. Default: 10s.
	Timeout time.Duration
	// Now is the clock of hint creation, the window and the rate limit.
	// Default: time.Now.
	Now func() time.Time
	// Logf receives notable events. Default: discard.
	Logf func(format string, args ...any)
}

func (o *Options) ensureDefaults() {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 256 << 20
	}
	if o.Window <= 0 {
		o.Window = 3 * time.Hour
	}
	if o.Rate <= 0 {
		o.Rate = 8 << 20
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 1 << 20
	}
	if o.BatchEntries <= 0 {
		o.BatchEntries = 512
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Deliverer sends a target the versions it missed and reports how many
// leading entries it acknowledged; *coordinator.Coordinator is one.
type Deliverer interface {
	DeliverBatch(ctx context.Context, node string, keys [][]byte, objs []*version.Object) (int, error)
}

// Service keeps a node's hints and delivers them. It implements
// coordinator.Hints.
type Service struct {
	store *replica.Store
	o     Options

	mu   sync.Mutex // guards core, seq and byKey
	core *core
	seq  uint64 // the next hint's sequence number
	// byKey counts the hints kept per user key (by a 64-bit hash of it),
	// for every target (see PendingFor).
	byKey map[uint64]int
	seed  maphash.Seed

	// closeMu is held shared by Add while it writes to the store, and
	// exclusively by Close, so that no hint is written once Close returns.
	closeMu sync.RWMutex
	closed  bool

	passMu  sync.Mutex // one pass at a time
	deliver Deliverer
	alive   func(string) bool
	cancel  context.CancelFunc
	done    chan struct{}
}

// Open returns the service for the hints kept in store, counting those a
// previous run left there. Delivery starts with Start.
func Open(store *replica.Store, o Options) (*Service, error) {
	o.ensureDefaults()
	s := &Service{store: store, o: o, core: newCore(limits{
		maxBytes: o.MaxBytes, window: o.Window, rate: o.Rate,
		backoffMin: o.Interval, backoffMax: o.BackoffMax,
	}), byKey: map[uint64]int{}, seed: maphash.MakeSeed()}
	// An unreadable record (damaged, or written by a newer release) can
	// never be delivered: it is dropped, loudly, as a delivery pass drops
	// one, rather than keeping the node from starting.
	var bad [][]byte
	var lastBad error
	err := store.ScanHints(nil, nil, func(k, v []byte) bool {
		target, seq, key, err := decodeKey(k)
		var created time.Time
		if err == nil {
			created, err = createdOf(v)
		}
		if err != nil {
			bad, lastBad = append(bad, bytes.Clone(k)), err
			return true
		}
		s.core.restore(target, recordSize(k, v), created)
		s.count(key, 1)
		s.seq = max(s.seq, seq+1)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("handoff: open: %w", err)
	}
	if len(bad) > 0 {
		o.Logf("handoff: dropping %d unreadable hint records (last: %v)", len(bad), lastBad)
		if err := store.DeleteHints(bad); err != nil {
			return nil, fmt.Errorf("handoff: open: drop unreadable hints: %w", err)
		}
	}
	return s, nil
}

// Add keeps objs[i], the version of keys[i], for target, as far as the
// bounds allow (what they refuse is counted in Stats). It stores them with
// one engine write before returning. After Close it does nothing.
func (s *Service) Add(target string, keys [][]byte, objs []*version.Object) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed || len(keys) == 0 {
		return
	}
	if len(target) > maxTarget {
		s.o.Logf("handoff: %d hints not kept: %v: %d", len(keys), errTargetTooLong, len(target))
		return
	}
	now := s.o.Now()
	values := make([][]byte, len(keys))
	for i, obj := range objs {
		values[i] = encodeValue(now, obj)
	}
	var recKeys, recValues, kept [][]byte
	var sizes []int64
	s.mu.Lock()
	for i, key := range keys {
		// The sequence number's size is fixed: the size is known before it.
		rk, _ := encodeKey(target, 0, key) // target checked above
		size := recordSize(rk, values[i])
		if !s.core.admit(target, size, now) {
			continue
		}
		rk, _ = encodeKey(target, s.seq, key)
		recKeys, kept = append(recKeys, rk), append(kept, key)
		recValues = append(recValues, values[i])
		sizes = append(sizes, size)
		s.seq++
	}
	s.mu.Unlock()
	if len(recKeys) == 0 {
		return
	}
	if err := s.store.PutHints(recKeys, recValues); err != nil {
		s.o.Logf("handoff: keep %d hints for %s: %v", len(recKeys), target, err)
		s.mu.Lock()
		for _, size := range sizes {
			s.core.unadmit(target, size)
		}
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	for _, key := range kept {
		s.count(key, 1)
	}
	s.mu.Unlock()
}

// ErrRefused: the bounds (Options.MaxBytes, Options.Window) refused hints
// that Keep was asked to keep.
var ErrRefused = errors.New("handoff: hints refused: past the target's byte bound or hint window")

// ErrClosed: Keep was called after Close.
var ErrClosed = errors.New("handoff: closed")

// Keep keeps objs[i], the version of keys[i], for target, all of them or
// none: it is what a fallback standing in for a down target calls, and it
// acknowledges the write only when Keep returned nil, by which time the
// hints are in the engine under its sync mode (as durable as a write). It
// returns ErrRefused when the bounds refuse them (they are counted as
// refused), and the engine's error when it could not store them.
func (s *Service) Keep(target string, keys [][]byte, objs []*version.Object) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if len(keys) == 0 {
		return nil
	}
	now := s.o.Now()
	recKeys, recValues := make([][]byte, len(keys)), make([][]byte, len(keys))
	sizes := make([]int64, len(keys))
	for i, obj := range objs {
		rk, err := encodeKey(target, 0, keys[i])
		if err != nil {
			return err
		}
		recValues[i] = encodeValue(now, obj)
		sizes[i] = recordSize(rk, recValues[i])
	}
	s.mu.Lock()
	if !s.core.admitAll(target, sizes, now) {
		s.mu.Unlock()
		return fmt.Errorf("%w: %d hints for %s", ErrRefused, len(keys), target)
	}
	for i, key := range keys {
		recKeys[i], _ = encodeKey(target, s.seq, key) // checked above
		s.seq++
	}
	s.mu.Unlock()
	if err := s.store.PutHints(recKeys, recValues); err != nil {
		s.mu.Lock()
		for _, size := range sizes {
			s.core.unadmit(target, size)
		}
		s.mu.Unlock()
		return fmt.Errorf("handoff: keep %d hints for %s: %w", len(keys), target, err)
	}
	s.mu.Lock()
	for _, key := range keys {
		s.count(key, 1)
	}
	s.mu.Unlock()
	return nil
}

// count adds d to the hints counted for key. Called with s.mu held.
func (s *Service) count(key []byte, d int) {
	h := maphash.Bytes(s.seed, key)
	if n := s.byKey[h] + d; n > 0 {
		s.byKey[h] = n
	} else {
		delete(s.byKey, h)
	}
}

// PendingFor returns how many hints this node keeps for key, for any
// target, counting those of a delivery in progress until they are deleted
// after it (keys are counted by a 64-bit hash: a collision can only make
// it larger). It costs a few bytes of memory per key with hints.
func (s *Service) PendingFor(key []byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byKey[maphash.Bytes(s.seed, key)]
}

// Stats returns, per target, the hints kept and the state of their
// delivery.
func (s *Service) Stats() map[string]Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.core.stats()
}

// Start starts delivery: a pass every Interval (or Tick) sends hints to
// the targets alive reports up, through d.
func (s *Service) Start(d Deliverer, alive func(nodeID string) bool) {
	s.passMu.Lock()
	s.deliver, s.alive = d, alive
	s.passMu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	tick := s.o.Tick
	var ticker *time.Ticker
	if tick == nil {
		ticker = time.NewTicker(s.o.Interval)
		tick = ticker.C
	}
	go func() {
		defer close(s.done)
		if ticker != nil {
			defer ticker.Stop()
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick:
				s.Pass(ctx)
			}
		}
	}()
}

// Close stops delivery, waiting for a pass in progress, and makes later
// Adds do nothing. It does not close the store.
func (s *Service) Close() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	s.closeMu.Lock()
	s.closed = true
	s.closeMu.Unlock()
}

// Pass runs one delivery pass: each due target (hints pending, alive, not
// backing off) is sent its hints oldest first, in batches, while the rate
// budget lasts; each batch's hints are deleted once the target has
// acknowledged them. Before Start it does nothing.
func (s *Service) Pass(ctx context.Context) {
	s.passMu.Lock()
	defer s.passMu.Unlock()
	if s.deliver == nil {
		return
	}
	s.mu.Lock()
	targets := s.core.due(s.o.Now(), s.alive)
	s.mu.Unlock()
	for _, t := range targets {
		if !s.deliverTo(ctx, t) {
			return // out of rate budget, or stopping
		}
	}
}

// deliverTo sends target its hints until they run out, a delivery fails or
// the rate budget does. It reports false when the pass should stop.
func (s *Service) deliverTo(ctx context.Context, target string) bool {
	var from []byte // resume point: the hints before it were handled
	for ctx.Err() == nil {
		s.mu.Lock()
		budget := s.core.budget(s.o.Now())
		s.mu.Unlock()
		if budget <= 0 {
			return false
		}
		b, err := s.readBatch(target, from, min(budget, s.o.BatchBytes))
		if err != nil {
			s.fail(target, err)
			return true
		}
		if len(b.recKeys) > 0 {
			from = append(append([]byte(nil), b.recKeys[len(b.recKeys)-1]...), 0)
		}
		if len(b.bad) > 0 {
			// Unreadable records can never be delivered: drop them, loudly.
			s.o.Logf("handoff: dropping %d unreadable hints for %s", len(b.bad), target)
			if err := s.store.DeleteHints(b.bad); err == nil {
				s.mu.Lock()
				s.core.discarded(target, len(b.bad), b.badBytes)
				for _, rec := range b.bad {
					if _, _, key, err := decodeKey(rec); err == nil {
						s.count(key, -1)
					}
				}
				s.mu.Unlock()
			}
		}
		if len(b.keys) == 0 {
			// Nothing (left) in the store. The counts may still say some
			// are pending: an Add counts its hints before it writes them.
			return true
		}
		dctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
		n, derr := s.deliver.DeliverBatch(dctx, target, b.keys, b.objs)
		cancel()
		n = min(max(n, 0), len(b.keys))
		var size int64
		for _, sz := range b.sizes[:n] {
			size += sz
		}
		s.mu.Lock()
		s.core.spend(b.total)
		s.mu.Unlock()
		if n > 0 {
			if err := s.store.DeleteHints(b.recKeys[:n]); err != nil {
				s.fail(target, fmt.Errorf("delete delivered hints: %w", err))
				return true
			}
			s.mu.Lock()
			s.core.delivered(target, n, size)
			s.core.accepted(target, s.o.Now())
			for _, key := range b.keys[:n] {
				s.count(key, -1)
			}
			s.mu.Unlock()
		}
		if derr != nil {
			s.fail(target, derr)
			return true
		}
		if b.end {
			return true
		}
	}
	return false
}

func (s *Service) fail(target string, err error) {
	s.o.Logf("handoff: deliver hints to %s: %v", target, err)
	s.mu.Lock()
	s.core.failed(target, err, s.o.Now())
	s.mu.Unlock()
}

// batch is the next hints of one target, read from the store.
type batch struct {
	recKeys  [][]byte // record keys of keys[i] (copies)
	keys     [][]byte
	objs     []*version.Object
	sizes    []int64
	total    int64
	bad      [][]byte // unreadable records
	badBytes int64
	end      bool // the target has no hints past these
}

// readBatch reads target's hints from the record key from on (nil: the
// first), up to BatchEntries and maxBytes (at least one hint).
func (s *Service) readBatch(target string, from []byte, maxBytes int64) (batch, error) {
	var b batch
	b.end = true
	prefix := targetPrefix(target)
	err := s.store.ScanHints(prefix, from, func(k, v []byte) bool {
		size := recordSize(k, v)
		if len(b.keys) > 0 && (len(b.keys) >= s.o.BatchEntries || b.total+size > maxBytes) {
			b.end = false
			return false
		}
		k = append([]byte(nil), k...)
		_, _, key, err := decodeKey(k)
		var obj *version.Object
		if err == nil {
			_, obj, err = decodeValue(v)
		}
		if err != nil {
			b.bad = append(b.bad, k)
			b.badBytes += size
			return true
		}
		b.recKeys = append(b.recKeys, k)
		b.keys = append(b.keys, key)
		b.objs = append(b.objs, obj)
		b.sizes = append(b.sizes, size)
		b.total += size
		return true
	})
	if err != nil {
		return batch{}, errors.Join(errors.New("read hints"), err)
	}
	return b, nil
}
