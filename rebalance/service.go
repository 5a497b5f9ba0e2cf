package rebalance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/transport"
)

// KindView asks a peer which state its ring gives a node (payload: the
// node's ID; reply: one byte, the ring.State, or 0xff for a node it does
// not know). The joiner waits until every member that is up answers
// joining before it streams: see Service.
const KindView uint8 = 72

// Owns reports whether a peer message kind is this package's.
func Owns(kind uint8) bool { return kind == KindView }

// HandleView answers KindView from the ring this node uses.
func HandleView(r *ring.Ring, payload []byte) ([]byte, error) {
	m, ok := r.Member(string(payload))
	if !ok {
		return []byte{0xff}, nil
	}
	return []byte{byte(m.State)}, nil
}

// Cluster is what the service needs of membership.
type Cluster interface {
	Ring() *ring.Ring
	Addr(nodeID string) (string, bool)
	Alive(nodeID string) bool
	SetState(ring.State) error
}

// Syncer runs the exchanges (antientropy.Service).
type Syncer interface {
	SyncPartitions(peer string, parts []int) ([]int, error)
	Status() antientropy.Status
}

// Options configure a Service. Zero fields take their defaults.
type Options struct {
	// Settle bounds the wait for every member that is up to see this node
	// joining before the stream starts. Default: 30s.
	Settle time.Duration
	// Backoff is the retry of a partition whose exchange failed. Default:
	// 200ms doubling to 10s.
	Backoff Backoff
	// Batch is the partitions of one exchange. Default: 16.
	Batch int
	// Timeout bounds one KindView call. Default: 2s.
	Timeout time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Logf receives notable events. Default: discard.
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() Options {
	if o.Settle <= 0 {
		o.Settle = 30 * time.Second
	}
	if o.Backoff.Min <= 0 {
		o.Backoff.Min = 200 * time.Millisecond
	}
	if o.Backoff.Max < o.Backoff.Min {
		o.Backoff.Max = max(10*time.Second, o.Backoff.Min)
	}
	if o.Batch <= 0 {
		o.Batch = 16
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// Transfer is one move as GET /v1/transfers shows it.
type Transfer struct {
	Kind string `json:"kind"` // "join"
	Node string `json:"node"`
	// State: settling (waiting for the members to see the joiner),
	// streaming, done.
	State           string  `json:"state"`
	PartitionsTotal int     `json:"partitions_total"`
	PartitionsDone  int     `json:"partitions_done"`
	Bytes           uint64  `json:"bytes"`
	RateBytesPerSec float64 `json:"rate_bytes_per_sec"`
	ETASeconds      float64 `json:"eta_seconds"`
	Started         string  `json:"started,omitempty"`
	Finished        string  `json:"finished,omitempty"`
	LastError       string  `json:"last_error,omitempty"`
}

// Service runs this node's move, if it is joining.
type Service struct {
	self string
	cl   Cluster
	sync Syncer
	tr   transport.Transport
	o    Options

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	t  *Transfer // nil until a move starts
}

// New returns a service; Start runs it.
func New(self string, cl Cluster, s Syncer, tr transport.Transport, o Options) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{self: self, cl: cl, sync: s, tr: tr, o: o.withDefaults(), ctx: ctx, cancel: cancel}
}

// Start runs the move in the background if this node is joining.
func (s *Service) Start() {
	if m, _ := s.cl.Ring().Member(s.self); m.State != ring.StateJoining {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.join(); err != nil && s.ctx.Err() == nil {
			s.o.Logf("rebalance: join: %v", err)
		}
	}()
}

// Close stops the move (a restarted joiner resumes it) and waits.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// Transfers lists this node's moves.
func (s *Service) Transfers() []Transfer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t == nil {
		return []Transfer{}
	}
	return []Transfer{*s.t}
}

func (s *Service) update(fn func(t *Transfer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s.t)
}

func (s *Service) sleep(d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-s.ctx.Done():
		return false
	}
}

func (s *Service) join() error {
	now := s.o.Now()
	s.mu.Lock()
	s.t = &Transfer{Kind: "join", Node: s.self, State: "settling", Started: now.UTC().Format(time.RFC3339)}
	s.mu.Unlock()
	s.settle()
	if s.ctx.Err() != nil {
		return s.ctx.Err()
	}
	plan := NewPlan(s.self, s.cl.Ring(), s.o.Backoff)
	bytes0 := s.sync.Status().BytesSent + s.sync.Status().BytesReceived
	start := s.o.Now()
	s.o.Logf("rebalance: %s streams %d partitions from their owners", s.self, len(plan.Partitions()))
	for {
		r := s.cl.Ring()
		if m, _ := r.Member(s.self); m.State != ring.StateJoining {
			return fmt.Errorf("%s is %v, no longer joining: move stopped", s.self, m.State)
		}
		plan.Update(r)
		alive := func(id string) bool { return id != s.self && s.cl.Alive(id) }
		done, total := plan.Progress(alive)
		st := s.sync.Status()
		moved := st.BytesSent + st.BytesReceived - bytes0
		elapsed := s.o.Now().Sub(start).Seconds()
		s.update(func(t *Transfer) {
			t.State, t.PartitionsDone, t.PartitionsTotal, t.Bytes = "streaming", done, total, moved
			t.LastError = plan.LastError()
			if elapsed > 0 {
				t.RateBytesPerSec = float64(moved) / elapsed
			}
			if done > 0 && done < total {
				t.ETASeconds = elapsed / float64(done) * float64(total-done)
			}
		})
		if done == total {
			// Done before the state changes, so that whoever sees the node
			// normal sees its move done.
			s.update(func(t *Transfer) {
				t.State, t.ETASeconds = "done", 0
				t.Finished = s.o.Now().UTC().Format(time.RFC3339)
			})
			if err := s.cl.SetState(ring.StateNormal); err != nil {
				s.update(func(t *Transfer) { t.State, t.Finished, t.LastError = "streaming", "", err.Error() })
				return err
			}
			s.o.Logf("rebalance: %s streamed %d partitions (%d bytes) in %.1fs: now normal", s.self, total, moved, elapsed)
			return nil
		}
		peer, parts, wait := plan.Next(s.o.Now(), alive, s.o.Batch)
		if peer == "" {
			if wait <= 0 || wait > time.Second {
				wait = time.Second // every source down: wait for one to return
			}
			if !s.sleep(wait) {
				return s.ctx.Err()
			}
			continue
		}
		verified, err := s.sync.SyncPartitions(peer, parts)
		if err != nil {
			s.o.Logf("rebalance: streaming %d partitions from %s: %v (retrying)", len(parts), peer, err)
		}
		plan.Result(peer, parts, verified, err, s.o.Now())
		if s.ctx.Err() != nil {
			return s.ctx.Err()
		}
	}
}

// settle waits until every member that is up, in any state but left, sees
// this node joining (then it coordinates every write to the partitions
// this node gains with this node as a pending owner), or Settle passes. A
// write coordinated on a ring without the joiner is not sent to it: the
// stream must begin after the last such write was stored by its owners.
// Asking beats waiting a fixed time: gossip usually spreads in well under
// a second, but a member that missed the broadcast learns the state only
// at its next push/pull.
func (s *Service) settle() {
	deadline := s.o.Now().Add(s.o.Settle)
	for s.ctx.Err() == nil {
		waiting, err := s.unsettled()
		if len(waiting) == 0 {
			return
		}
		if s.o.Now().After(deadline) {
			s.o.Logf("rebalance: after %v, %v do not confirm seeing %s joining (%v); streaming anyway: writes they coordinated meanwhile reach this node by anti-entropy once it is normal", s.o.Settle, waiting, s.self, err)
			return
		}
		s.sleep(100 * time.Millisecond)
	}
}

// unsettled lists the members that are up and do not (yet) see this node
// joining.
func (s *Service) unsettled() ([]string, error) {
	var waiting []string
	var errs []error
	for _, m := range s.cl.Ring().Members() {
		if m.ID == s.self || m.State == ring.StateLeft || !s.cl.Alive(m.ID) {
			continue
		}
		addr, ok := s.cl.Addr(m.ID)
		if !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.o.Timeout)
		reply, err := s.tr.Call(ctx, addr, KindView, []byte(s.self))
		cancel()
		if err != nil || len(reply) != 1 || ring.State(reply[0]) != ring.StateJoining {
			waiting = append(waiting, m.ID)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", m.ID, err))
			}
		}
	}
	return waiting, errors.Join(errs...)
}
