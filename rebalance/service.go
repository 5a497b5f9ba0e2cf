package rebalance

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/transport"
)

// Peer message kinds of this package.
const (
	// KindView asks a peer for the hash of its ring's members and states
	// (RingHash; reply: 8 bytes). A node streams the partitions it gains
	// only once every member that is up answers with its own hash: from
	// then on every coordinator sends writes to it as a pending owner.
	KindView uint8 = 72
	// KindMoveStatus asks a peer how far it is with the partitions it
	// gains in the current change (reply: moveStatus, 25 bytes). The
	// member that completes a change asks every gainer.
	KindMoveStatus uint8 = 73
	// KindMember asks a peer what it knows of one member (payload: the
	// ID; reply: MemberInfo as JSON), so that a replacement can be checked
	// before the new node announces itself (CheckReplace).
	KindMember uint8 = 74
)

// Owns reports whether a peer message kind is this package's.
func Owns(kind uint8) bool { return kind >= KindView && kind <= KindMember }

// MemberInfo is a KindMember reply.
type MemberInfo struct {
	Known  bool   `json:"known"`
	State  string `json:"state,omitempty"`
	Alive  bool   `json:"alive"`
	Weight int    `json:"weight,omitempty"`
	DC     string `json:"dc,omitempty"`
}

// CheckReplace asks the first of targets (peer addresses) that answers
// whether member old can be replaced by a new node of that weight in dc:
// it must be known, placed (normal or leaving) and down. A node started
// with --replace checks this before it announces itself, so that a mistake
// leaves no trace in the cluster.
func CheckReplace(ctx context.Context, tr transport.Transport, targets []string, old string, weight int, dc string) error {
	var errs []error
	for _, addr := range targets {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		reply, err := tr.Call(cctx, addr, KindMember, []byte(old))
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		var mi MemberInfo
		if err := json.Unmarshal(reply, &mi); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		switch {
		case !mi.Known:
			return fmt.Errorf("cannot replace %s: the cluster has no such member", old)
		case mi.State != ring.StateNormal.String() && mi.State != ring.StateLeaving.String():
			return fmt.Errorf("cannot replace %s: it is %s", old, mi.State)
		case mi.Alive:
			return fmt.Errorf("cannot replace %s: it is up (decommission it instead)", old)
		case max(mi.Weight, 1) != max(weight, 1):
			return fmt.Errorf("cannot replace %s of weight %d with weight %d: give the replacement its weight", old, max(mi.Weight, 1), max(weight, 1))
		case mi.DC != dc:
			return fmt.Errorf("cannot replace %s of DC %q from DC %q", old, mi.DC, dc)
		}
		return nil
	}
	return fmt.Errorf("cannot check the replacement of %s: no join target answered: %w", old, errors.Join(errs...))
}

// RingHash identifies a ring's members with their states, weights and
// places: two nodes with equal hashes compute the same preference lists
// and the same pending owners.
func RingHash(r *ring.Ring) uint64 {
	h := fnv.New64a()
	ms := r.Members()
	sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID })
	for _, m := range ms {
		fmt.Fprintf(h, "%q %d %d %q %q %q\n", m.ID, m.State, m.Weight, m.DC, m.Rack, m.Tokens)
	}
	fmt.Fprintf(h, "replicas %s", r.Config().Replication())
	if next := r.Config().Next; next != nil {
		fmt.Fprintf(h, " to %s", next)
	}
	return h.Sum64()
}

// moveStatus is a KindMoveStatus reply: a node's progress with the
// partitions it gains in the ring of hash Hash.
type moveStatus struct {
	Hash                       uint64
	Done                       bool // settled, and every gained partition verified
	PartitionsDone, Partitions uint32
	Bytes                      uint64
}

func (m moveStatus) encode() []byte {
	b := binary.BigEndian.AppendUint64(nil, m.Hash)
	d := byte(0)
	if m.Done {
		d = 1
	}
	b = append(b, d)
	b = binary.BigEndian.AppendUint32(b, m.PartitionsDone)
	b = binary.BigEndian.AppendUint32(b, m.Partitions)
	return binary.BigEndian.AppendUint64(b, m.Bytes)
}

func decodeMoveStatus(b []byte) (moveStatus, error) {
	if len(b) != 25 || b[8] > 1 {
		return moveStatus{}, fmt.Errorf("rebalance: malformed move status (%d bytes)", len(b))
	}
	return moveStatus{
		Hash: binary.BigEndian.Uint64(b), Done: b[8] == 1,
		PartitionsDone: binary.BigEndian.Uint32(b[9:]), Partitions: binary.BigEndian.Uint32(b[13:]),
		Bytes: binary.BigEndian.Uint64(b[17:]),
	}, nil
}

// Handle answers this package's peer messages. r is the ring this node
// uses; s may be nil (anti-entropy off: no moves run here), and then a
// move status is refused, so no change completes counting on this node.
func (s *Service) Handle(r *ring.Ring, kind uint8, payload []byte) ([]byte, error) {
	switch kind {
	case KindView:
		return binary.BigEndian.AppendUint64(nil, RingHash(r)), nil
	case KindMember:
		if s == nil {
			return nil, errors.New("rebalance: moves are off on this node (anti-entropy is disabled)")
		}
		m, ok := r.Member(string(payload))
		mi := MemberInfo{Known: ok}
		if ok {
			mi.State, mi.Alive, mi.Weight, mi.DC = m.State.String(), s.cl.Alive(m.ID), m.Weight, m.DC
		}
		return json.Marshal(mi)
	case KindMoveStatus:
		if s == nil {
			return nil, errors.New("rebalance: moves are off on this node (anti-entropy is disabled)")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.status.encode(), nil
	}
	return nil, fmt.Errorf("rebalance: unknown message kind %d", kind)
}

// Cluster is what the service needs of membership.
type Cluster interface {
	Ring() *ring.Ring
	Addr(nodeID string) (string, bool)
	Alive(nodeID string) bool
	SetState(ring.State) error
	SetMemberState(id string, s ring.State) error
	// FinishReplication makes the replication being moved to the ring's.
	FinishReplication() error
}

// Syncer runs the exchanges (antientropy.Service).
type Syncer interface {
	SyncPartitions(peer string, parts []int) ([]int, error)
	Status() antientropy.Status
	// Holds reports whether this node may hold keys of a partition.
	Holds(p int) bool
	// DropPartition hands a partition this node no longer replicates to
	// its owners, verified, and removes this node's copy while dropped
	// says it is still not this node's; the removal never overlaps
	// SyncPartitions.
	DropPartition(p int, owners []string, dropped func() bool) (removed int, err error)
	// Removals counts the removals DropPartition began of a partition.
	Removals(p int) uint64
}

// Options configure a Service. Zero fields take their defaults.
type Options struct {
	// Settle bounds the wait for every member that is up to see the ring
	// this node sees before it streams. Default: 30s.
	Settle time.Duration
	// Backoff is the retry of a partition whose exchange failed. Default:
	// 200ms doubling to 10s.
	Backoff Backoff
	// Batch is the partitions of one exchange. Default: 16.
	Batch int
	// Timeout bounds one call to a peer. Default: 2s.
	Timeout time.Duration
	// Poll is how often the ring is looked at when nothing moves.
	// Default: 250ms.
	Poll time.Duration
	// DropInterval is how often, while no change is in progress, this
	// node looks for partitions it holds but no longer replicates (after
	// a join or a leave), hands them to their owners and removes its copy.
	// Default: 10s.
	DropInterval time.Duration
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
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.DropInterval <= 0 {
		o.DropInterval = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// Transfer is one move as GET /v1/transfers shows it. A node shows the
// partitions it receives (kind "stream"), what it hands over and drops
// (kind "drop") and, where it completes a change, the change with every
// receiver's progress summed (kind "join" or "leave": Node is the member
// joining or leaving; kind "replicas": Node is the replication moved to).
type Transfer struct {
	Kind string `json:"kind"` // "stream", "join", "leave", "replicas" or "drop"
	Node string `json:"node"`
	// Changes lists the ring changes in progress ("n4 joining").
	Changes []string `json:"changes,omitempty"`
	// State: settling (waiting for the members to see the ring change),
	// streaming, done; for a change that was overtaken (the node it moves
	// went back, or another change replaced it): stopped.
	State           string  `json:"state"`
	PartitionsTotal int     `json:"partitions_total"`
	PartitionsDone  int     `json:"partitions_done"`
	Bytes           uint64  `json:"bytes"`
	RateBytesPerSec float64 `json:"rate_bytes_per_sec"`
	ETASeconds      float64 `json:"eta_seconds"`
	Started         string  `json:"started,omitempty"`
	Finished        string  `json:"finished,omitempty"`
	// Waiting names what the move waits for (a receiver that is down, a
	// member that does not see the change yet).
	Waiting   string `json:"waiting,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// KeysRemoved counts the keys a drop removed once their owners held
	// them.
	KeysRemoved int `json:"keys_removed,omitempty"`

	started time.Time
}

// maxHistory bounds the finished transfers kept for display.
const maxHistory = 16

// Service runs this node's part of every ring change: it streams the
// partitions this node gains (from their current owners, through
// anti-entropy exchanges), and completes the changes it is responsible
// for: a joining node makes itself normal, and a leaving node makes
// itself left (a dead leaving node, removed by an operator, is completed
// by the normal member with the lowest ID that is up) once every node that
// gains partitions in the change reports them verified. Everything is
// recomputed from the ring, so a node that restarts resumes where the ring
// says the change is.
type Service struct {
	self string
	cl   Cluster
	sync Syncer
	tr   transport.Transport
	o    Options

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Owned by the run goroutine.
	hash     uint64 // RingHash of the ring the plan is for
	seen     time.Time
	settled  bool
	plan     *Plan
	bytes0   uint64 // anti-entropy bytes when the stream began
	streamed uint64

	mu       sync.Mutex
	status   moveStatus           // served to KindMoveStatus
	active   map[string]*Transfer // by kind+node
	finished []Transfer
}

// New returns a service; Start runs it.
func New(self string, cl Cluster, s Syncer, tr transport.Transport, o Options) *Service {
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{self: self, cl: cl, sync: s, tr: tr, o: o.withDefaults(), ctx: ctx, cancel: cancel, active: map[string]*Transfer{}}
}

// Start runs the service in the background: the moves in one goroutine,
// and in another the drops of what this node no longer replicates (an
// exchange with an owner that does not answer must not hold up a move).
func (s *Service) Start() {
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		for s.ctx.Err() == nil {
			if !s.sleep(s.step()) {
				return
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		for s.sleep(s.o.DropInterval) {
			r := s.cl.Ring()
			if ms, replicas, _ := changes(r); len(ms) == 0 && !replicas {
				s.drop(r, RingHash(r))
			}
		}
	}()
}

// Close stops the service (a restarted node resumes its moves) and waits.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// Transfers lists this node's moves: the ones in progress, then the last
// finished ones, oldest first.
func (s *Service) Transfers() []Transfer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.finished)
	var act []Transfer
	for _, t := range s.active {
		act = append(act, *t)
	}
	sort.Slice(act, func(i, j int) bool { return act[i].Kind+act[i].Node < act[j].Kind+act[j].Node })
	out = append(out, act...)
	if out == nil {
		out = []Transfer{}
	}
	return out
}

func (s *Service) sleep(d time.Duration) bool {
	if d <= 0 {
		return s.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// transfer returns the active transfer kind/node, creating it as started
// at since. s.mu must be held.
func (s *Service) transfer(kind, node string, changes []string, since time.Time) *Transfer {
	k := kind + "\x00" + node
	t := s.active[k]
	if t == nil {
		t = &Transfer{Kind: kind, Node: node, State: "settling", Started: since.UTC().Format(time.RFC3339), started: since}
		s.active[k] = t
	}
	t.Changes = changes
	return t
}

// finish moves the active transfer kind/node to the history in state st.
func (s *Service) finish(kind, node, st string) {
	k := kind + "\x00" + node
	t := s.active[k]
	if t == nil {
		return
	}
	delete(s.active, k)
	t.State, t.ETASeconds, t.Waiting = st, 0, ""
	if st == "done" {
		t.PartitionsDone = t.PartitionsTotal
	}
	t.Finished = s.o.Now().UTC().Format(time.RFC3339)
	s.finished = append(s.finished, *t)
	if len(s.finished) > maxHistory {
		s.finished = s.finished[len(s.finished)-maxHistory:]
	}
}

// changes returns the members joining or leaving and whether the
// replication changes, with a description of each change.
func changes(r *ring.Ring) (ms []ring.Member, replicas bool, desc []string) {
	for _, m := range r.Members() {
		if m.State == ring.StateJoining || m.State == ring.StateLeaving {
			ms = append(ms, m)
			desc = append(desc, m.ID+" "+m.State.String())
		}
	}
	if next := r.Config().Next; next != nil {
		replicas = true
		desc = append(desc, "replicas "+r.Config().Replication().String()+" to "+next.String())
	}
	return ms, replicas, desc
}

// step does one unit of work and returns how long to wait before the next.
func (s *Service) step() time.Duration {
	r := s.cl.Ring()
	h := RingHash(r)
	changing, replicas, desc := changes(r)
	if h != s.hash {
		s.newRing(r, h, changing, replicas)
	}
	if len(changing) == 0 && !replicas {
		return s.o.Poll
	}
	alive := func(id string) bool { return id != s.self && s.cl.Alive(id) }

	// This node's gains.
	if gained := s.plan.Partitions(); len(gained) > 0 {
		if !s.settled {
			waiting, err := s.unsettled(r, h)
			if len(waiting) > 0 && s.o.Now().Sub(s.seen) < s.o.Settle {
				s.mu.Lock()
				t := s.transfer("stream", s.self, desc, s.seen)
				t.State, t.PartitionsTotal = "settling", len(gained)
				t.Waiting = fmt.Sprintf("%v to see the change", waiting)
				s.mu.Unlock()
				return 100 * time.Millisecond
			}
			if len(waiting) > 0 {
				s.o.Logf("rebalance: after %v, %v do not confirm seeing the change (%v); streaming anyway: writes they coordinated meanwhile reach this node by anti-entropy", s.o.Settle, waiting, err)
			}
			s.settled = true
			s.bytes0 = s.syncBytes()
			s.o.Logf("rebalance: %s streams %d partitions from their owners (%s)", s.self, len(gained), strings.Join(desc, ", "))
		}
		if peer, parts, _ := s.plan.Next(s.o.Now(), alive, s.o.Batch); peer != "" && !s.plan.Done(alive) {
			verified, err := s.sync.SyncPartitions(peer, parts)
			if err != nil && s.ctx.Err() == nil {
				s.o.Logf("rebalance: streaming %d partitions from %s: %v (retrying)", len(parts), peer, err)
			}
			s.plan.Result(peer, parts, verified, err, s.o.Now())
			s.publishStream(h, desc, alive)
			return 0
		}
	}
	s.publishStream(h, desc, alive)

	// The changes this node completes.
	for _, c := range changing {
		if s.completes(r, c) {
			s.drive(r, h, c, desc)
		}
	}
	if replicas && len(changing) == 0 && s.lowestNormal(r) {
		// One change at a time: a member's move first.
		s.driveReplication(r, h, desc)
	}
	return s.o.Poll
}

// newRing starts over for a changed ring: the plan is recomputed (its
// verifications kept: they are of the data), the members must be asked
// again whether they see the ring, and the moves of changes that are over
// are closed.
func (s *Service) newRing(r *ring.Ring, h uint64, changing []ring.Member, replicas bool) {
	s.hash, s.seen, s.settled = h, s.o.Now(), false
	if s.plan == nil || len(changing) == 0 && !replicas {
		s.plan = NewPlan(s.self, r, s.o.Backoff)
		s.plan.Removals = s.sync.Removals
	} else {
		s.plan.Update(r)
	}
	gains := len(s.plan.Partitions())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = moveStatus{Hash: h, Done: gains == 0, Partitions: uint32(gains)}
	for _, t := range s.active {
		if t.Kind == "stream" {
			switch {
			case t.State == "done":
				s.finish(t.Kind, t.Node, "done")
			case gains == 0:
				s.finish(t.Kind, t.Node, "stopped")
			}
			continue
		}
		if t.Kind == "replicas" {
			switch {
			case replicas && t.Node == r.Config().Next.String():
			case !replicas && r.Config().Replication().String() == t.Node:
				s.finish(t.Kind, t.Node, "done")
			default:
				s.finish(t.Kind, t.Node, "stopped")
			}
			continue
		}
		want := ring.StateLeaving
		if t.Kind == "join" {
			want = ring.StateJoining
		}
		m, _ := r.Member(t.Node)
		switch {
		case m.State == want:
		case t.Kind == "join" && m.State == ring.StateNormal, t.Kind == "leave" && m.State == ring.StateLeft:
			s.finish(t.Kind, t.Node, "done") // completed, by this node or another
		default:
			s.finish(t.Kind, t.Node, "stopped")
		}
	}
}

func (s *Service) syncBytes() uint64 {
	st := s.sync.Status()
	return st.BytesSent + st.BytesReceived
}

// publishStream updates this node's stream transfer and the status it
// serves to KindMoveStatus.
func (s *Service) publishStream(h uint64, desc []string, alive func(string) bool) {
	done, total := s.plan.Progress(alive)
	complete := s.settled && done == total || total == 0
	var moved uint64
	if s.settled {
		moved = s.syncBytes() - s.bytes0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = moveStatus{Hash: h, Done: complete, PartitionsDone: uint32(done), Partitions: uint32(total), Bytes: moved}
	if total == 0 {
		return
	}
	t := s.transfer("stream", s.self, desc, s.seen)
	if t.State == "done" {
		return
	}
	t.State, t.PartitionsDone, t.PartitionsTotal, t.Bytes = "streaming", done, total, moved
	t.LastError, t.Waiting = s.plan.LastError(), ""
	fillRate(t, s.o.Now())
	if complete {
		t.State = "done"
		t.Finished = s.o.Now().UTC().Format(time.RFC3339)
		t.ETASeconds = 0
		s.o.Logf("rebalance: %s holds the %d partitions it gains (%d bytes exchanged)", s.self, total, moved)
	}
}

func fillRate(t *Transfer, now time.Time) {
	elapsed := now.Sub(t.started).Seconds()
	if elapsed > 0 {
		t.RateBytesPerSec = float64(t.Bytes) / elapsed
	}
	t.ETASeconds = 0
	if t.PartitionsDone > 0 && t.PartitionsDone < t.PartitionsTotal {
		t.ETASeconds = elapsed / float64(t.PartitionsDone) * float64(t.PartitionsTotal-t.PartitionsDone)
	}
}

// completes reports whether this node completes change c: its own join or
// leave, or the leave of a member that is down (an operator's removal) when
// this node is the normal member with the lowest ID that is up.
func (s *Service) completes(r *ring.Ring, c ring.Member) bool {
	if c.ID == s.self {
		return true
	}
	if c.State != ring.StateLeaving || s.cl.Alive(c.ID) {
		return false
	}
	for _, m := range r.Members() {
		if m.State == ring.StateJoining && m.Tokens == c.ID {
			return false // its replacement completes both
		}
	}
	return s.lowestNormal(r)
}

// lowestNormal reports whether this node is the normal member with the
// lowest ID that is up.
func (s *Service) lowestNormal(r *ring.Ring) bool {
	me, _ := r.Member(s.self)
	if me.State != ring.StateNormal {
		return false
	}
	for _, m := range r.Members() {
		if m.State == ring.StateNormal && m.ID < s.self && s.cl.Alive(m.ID) {
			return false
		}
	}
	return true
}

// gainers returns every pending owner of any partition.
func gainers(r *ring.Ring) []string {
	set := map[string]bool{}
	for p := range r.Partitions() {
		for _, id := range r.Pending(p) {
			set[id] = true
		}
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// drive asks every gainer of the change how far it is and, once all hold
// what they gain, completes change c: a joining node becomes normal, a
// leaving one left.
func (s *Service) drive(r *ring.Ring, h uint64, c ring.Member, desc []string) {
	kind, next := "leave", ring.StateLeft
	if c.State == ring.StateJoining {
		kind, next = "join", ring.StateNormal
	}
	if !s.gainersDone(r, h, kind, c.ID, desc) {
		return
	}
	if !s.complete(kind, c.ID, func() error { return s.cl.SetMemberState(c.ID, next) }) {
		return
	}
	s.o.Logf("rebalance: %s %s is complete: it is now %v", kind, c.ID, next)
	if old, ok := r.Member(c.Tokens); ok && kind == "join" && c.Tokens != c.ID && old.State == ring.StateLeaving {
		// A replacement: the member it replaces leaves as it becomes
		// normal (both were placed on the same tokens for that moment).
		if err := s.cl.SetMemberState(old.ID, ring.StateLeft); err != nil {
			s.o.Logf("rebalance: %s replaced %s, but setting %s left: %v", c.ID, old.ID, old.ID, err)
			return
		}
		s.o.Logf("rebalance: %s has replaced %s, which is now left", c.ID, old.ID)
	}
}

// driveReplication completes a change of the replication once every
// gainer holds its new replicas.
func (s *Service) driveReplication(r *ring.Ring, h uint64, desc []string) {
	node := r.Config().Next.String()
	if !s.gainersDone(r, h, "replicas", node, desc) {
		return
	}
	if s.complete("replicas", node, s.cl.FinishReplication) {
		s.o.Logf("rebalance: the cluster's replication is now %s", node)
	}
}

// gainersDone asks every pending owner how far it is, shows the sum as
// the transfer kind/node, and reports whether all hold what they gain in
// the ring of hash h.
func (s *Service) gainersDone(r *ring.Ring, h uint64, kind, node string, desc []string) bool {
	var waiting []string
	var done, total int
	var moved uint64
	for _, g := range gainers(r) {
		var st moveStatus
		if g == s.self {
			s.mu.Lock()
			st = s.status
			s.mu.Unlock()
		} else if !s.cl.Alive(g) {
			waiting = append(waiting, g+" (down)")
			continue
		} else {
			var err error
			if st, err = s.moveStatus(g); err != nil {
				waiting = append(waiting, fmt.Sprintf("%s (%v)", g, err))
				continue
			}
		}
		done, total, moved = done+int(st.PartitionsDone), total+int(st.Partitions), moved+st.Bytes
		switch {
		case st.Hash != h:
			waiting = append(waiting, g+" (does not see the change yet)")
		case !st.Done:
			waiting = append(waiting, g)
		}
	}
	s.mu.Lock()
	t := s.transfer(kind, node, desc, s.seen)
	t.State, t.PartitionsDone, t.PartitionsTotal, t.Bytes = "streaming", done, total, moved
	t.Waiting = ""
	if len(waiting) > 0 {
		t.Waiting = strings.Join(waiting, ", ")
	}
	fillRate(t, s.o.Now())
	s.mu.Unlock()
	return len(waiting) == 0
}

// complete ends the transfer kind/node and makes the ring change with
// apply; on failure the transfer goes on. The transfer is marked done
// first, so that whoever sees the change sees the move done.
func (s *Service) complete(kind, node string, apply func() error) bool {
	s.mu.Lock()
	s.finish(kind, node, "done")
	s.mu.Unlock()
	if err := apply(); err != nil {
		s.o.Logf("rebalance: completing %s %s: %v", kind, node, err)
		s.mu.Lock()
		t := s.finished[len(s.finished)-1]
		s.finished = s.finished[:len(s.finished)-1]
		t.State, t.Finished, t.LastError = "streaming", "", err.Error()
		s.active[kind+"\x00"+node] = &t
		s.mu.Unlock()
		return false
	}
	return true
}

func (s *Service) moveStatus(peer string) (moveStatus, error) {
	addr, ok := s.cl.Addr(peer)
	if !ok {
		return moveStatus{}, errors.New("no address")
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.o.Timeout)
	defer cancel()
	reply, err := s.tr.Call(ctx, addr, KindMoveStatus, nil)
	if err != nil {
		return moveStatus{}, err
	}
	return decodeMoveStatus(reply)
}

// unsettled lists the members that are up and do not (yet) see the ring
// of hash h. A write coordinated on an older ring is not sent to a pending
// owner: the stream must begin after the last such write was stored by
// the owners. Asking beats waiting a fixed time: gossip usually spreads in
// well under a second, but a member that missed the broadcast learns the
// change only at its next push/pull.
func (s *Service) unsettled(r *ring.Ring, h uint64) ([]string, error) {
	var waiting []string
	var errs []error
	for _, m := range r.Members() {
		if m.ID == s.self || m.State == ring.StateLeft || !s.cl.Alive(m.ID) {
			continue
		}
		addr, ok := s.cl.Addr(m.ID)
		if !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.o.Timeout)
		reply, err := s.tr.Call(ctx, addr, KindView, nil)
		cancel()
		if err != nil || len(reply) != 8 || binary.BigEndian.Uint64(reply) != h {
			waiting = append(waiting, m.ID)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", m.ID, err))
			}
		}
	}
	return waiting, errors.Join(errs...)
}

// HandingOver returns how many partitions this node holds but neither
// replicates nor gains in the current ring: its drops hand them to their
// owners and remove its copies. A node that has left holds the writes it
// took while leaving until this is 0; stop it only then.
func (s *Service) HandingOver() int {
	n := 0
	for p := range s.cl.Ring().Partitions() {
		if s.notMine(p) && s.sync.Holds(p) {
			n++
		}
	}
	return n
}

// notMine reports whether, in the current ring, this node neither
// replicates partition p nor is gaining it.
func (s *Service) notMine(p int) bool {
	r := s.cl.Ring()
	return !slices.Contains(r.Preference(p), s.self) && !slices.Contains(r.Pending(p), s.self)
}

// drop hands the partitions this node holds but does not replicate in
// ring r (of hash h) to their owners and removes its copies, while r
// stays current. A partition with an owner down waits for the next pass:
// every owner must be verified to hold what is removed.
func (s *Service) drop(r *ring.Ring, h uint64) {
	var parts []int
	for p := range r.Partitions() {
		if !slices.Contains(r.Preference(p), s.self) && s.sync.Holds(p) {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		// A drop begun earlier (under a ring that newRing has since
		// replaced while this pass ran, or for copies gone meanwhile) has
		// nothing left to hand over.
		s.mu.Lock()
		s.finish("drop", s.self, "stopped")
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	t := s.transfer("drop", s.self, nil, s.o.Now())
	t.State, t.PartitionsTotal, t.PartitionsDone, t.Waiting = "streaming", len(parts), 0, ""
	s.mu.Unlock()
	var waiting []string
	var lastErr error
	for _, p := range parts {
		if s.ctx.Err() != nil || RingHash(s.cl.Ring()) != h {
			break
		}
		owners := r.Preference(p)
		up := true
		for _, o := range owners {
			if !s.cl.Alive(o) {
				up = false
				if !slices.Contains(waiting, o) {
					waiting = append(waiting, o)
				}
			}
		}
		var removed int
		var err error
		if up {
			removed, err = s.sync.DropPartition(p, owners, func() bool { return s.notMine(p) })
		}
		if err != nil {
			lastErr = err
		}
		s.mu.Lock()
		if up && err == nil {
			t.PartitionsDone++
		}
		t.KeysRemoved += removed
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if RingHash(s.cl.Ring()) != h {
		// The ring changed during the pass: the next pass starts over.
		s.finish("drop", s.self, "stopped")
		return
	}
	if len(waiting) > 0 {
		t.Waiting = fmt.Sprintf("%v (down) to hand partitions to", waiting)
	}
	if lastErr != nil {
		t.LastError = lastErr.Error()
	}
	if t.PartitionsDone == t.PartitionsTotal {
		if t.KeysRemoved > 0 {
			s.o.Logf("rebalance: %s handed %d partitions it no longer replicates to their owners and removed %d keys", s.self, t.PartitionsTotal, t.KeysRemoved)
		}
		s.finish("drop", s.self, "done")
	}
}
