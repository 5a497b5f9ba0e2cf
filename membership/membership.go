package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ringkv/ringkv/ring"
)

// Membership is a running member of the cluster. Its accessors are cheap
// and safe for concurrent use: they read an immutable snapshot that is
// replaced on every change.
type Membership struct {
	cfg     Config
	ringCfg string // ringKey(cfg.Ring)
	fp      string // fingerprint(cfg.Ring)
	ml      *memberlist.Memberlist

	mu   sync.Mutex // guards tab and repl, and serialises view updates
	tab  table
	repl replState

	view atomic.Pointer[view]

	persistMu sync.Mutex // serialises writes of ring.json
	written   uint64     // recGen of the last table written

	subMu sync.Mutex
	subs  []func()

	warnMu sync.Mutex
	warned map[string]bool

	notifyCh   chan struct{}
	persistCh  chan struct{}
	announceCh chan struct{}
	rebuildCh  chan struct{}
	stop       chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error
	closed     atomic.Bool

	// joinStates counts ring states for our ring config merged from
	// push/pulls made by a join, so Start can tell a join that taught us
	// the cluster from one that only reached a node.
	joinStates atomic.Uint64
	// bcast queues records changed by SetMemberState for gossip.
	bcast *memberlist.TransmitLimitedQueue
	// ownerBefore is set when a peer's table held a record of our ID in
	// a state that owns partitions (see Config.StreamOnJoin).
	ownerBefore atomic.Bool
}

// view is an immutable snapshot served to readers.
type view struct {
	ring    *ring.Ring
	ringSig string // ringSignature of the records ring was built from
	recs    map[string]Record
	recSig  string      // ringSignature(recs) and the replication's signature
	ringCfg ring.Config // the ring configuration with the cluster's replication
	repl    replState
	alive   map[string]bool
	recGen  uint64 // bumped on every change of recs
}

// Start creates the gossip member, restores the persisted ring state, and
// joins the cluster. See the package documentation for the join rules.
func Start(cfg Config) (*Membership, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	bindHost, bindPort, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("membership: BindAddr: %w", err)
	}
	if net.ParseIP(bindHost) == nil {
		return nil, fmt.Errorf("membership: BindAddr %q: host must be an IP address", cfg.BindAddr)
	}

	m := &Membership{
		cfg:        cfg,
		ringCfg:    ringKey(cfg.Ring),
		fp:         fingerprint(cfg.Ring),
		warned:     map[string]bool{},
		notifyCh:   make(chan struct{}, 1),
		persistCh:  make(chan struct{}, 1),
		announceCh: make(chan struct{}, 1),
		rebuildCh:  make(chan struct{}, 1),
		stop:       make(chan struct{}),
		tab:        table{self: cfg.NodeID, recs: map[string]Record{}, live: map[string]string{}},
	}
	m.bcast = &memberlist.TransmitLimitedQueue{
		NumNodes: func() int {
			if v := m.view.Load(); v != nil {
				return len(v.alive) + 1
			}
			return 1
		},
		RetransmitMult: 4,
	}

	// Restore the persisted table before anything can gossip to us.
	var restored []Record
	if cfg.DataDir != "" {
		var repl *wireRepl
		if restored, repl, err = loadState(cfg.DataDir, cfg.NodeID, m.ringCfg); err != nil {
			return nil, err
		}
		if repl != nil {
			m.repl = repl.state()
		}
	}
	var prev *Record
	peers := 0
	for _, r := range restored {
		if r.ID == cfg.NodeID {
			if r.State == ring.StateLeft {
				return nil, errLeft(cfg.NodeID)
			}
			prev = &r
			continue
		}
		if err := checkRecord(r, cfg.Ring); err != nil {
			m.logf("membership: dropping persisted record: %v", err)
			continue
		}
		m.tab.recs[r.ID] = r
		if r.State != ring.StateLeft {
			peers++
		}
	}

	logger := log.New(logWriter{m}, "", 0)
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{bindHost},
		BindPort:  bindPort,
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("membership: %w", err)
	}
	fail := func(err error) (*Membership, error) {
		nt.Shutdown()
		return nil, err
	}
	bindPort = nt.GetAutoBindPort()
	advHost, advPort := bindHost, bindPort
	if cfg.AdvertiseAddr != "" {
		h, p, err := splitHostPort(cfg.AdvertiseAddr)
		if err != nil {
			return fail(fmt.Errorf("membership: AdvertiseAddr: %w", err))
		}
		advHost = h
		if p != 0 {
			advPort = p
		}
	}
	advIP := net.ParseIP(advHost)
	if advIP == nil || advIP.IsUnspecified() {
		return fail(fmt.Errorf("membership: cannot advertise %q: set AdvertiseAddr to a reachable IP", advHost))
	}

	self := Record{
		Member: ring.Member{
			ID: cfg.NodeID, Weight: cfg.Weight, DC: cfg.DC, Rack: cfg.Rack,
			State: ring.StateNormal, Tokens: cfg.Replace,
		},
		PeerAddr:   cfg.PeerAddr,
		RespAddr:   cfg.RespAddr,
		HTTPAddr:   cfg.HTTPAddr,
		GossipAddr: net.JoinHostPort(advIP.String(), strconv.Itoa(advPort)),
		Version:    nextVersion(0),
	}
	targets := m.joinTargetsFor(cfg.Join, self.GossipAddr)
	if cfg.Replace != "" && (prev != nil || len(targets) == 0 || !cfg.StreamOnJoin) {
		if prev != nil && prev.Tokens == cfg.Replace {
			// Restarted mid-replacement: carry on.
		} else {
			return fail(fmt.Errorf("membership: replacing %s needs a new node (no ring state in its data directory) that joins a running cluster", cfg.Replace))
		}
	}
	if prev != nil {
		self.State = prev.State
		self.Version = nextVersion(prev.Version)
		self.Tokens = prev.Tokens
	} else if cfg.StreamOnJoin && len(targets) > 0 {
		// Joining until the join shows whether the cluster is established
		// (then the node streams before it owns) or forming (then it is
		// Normal at once, as before): a Normal record gossiped first would
		// make it an owner, empty, for a moment.
		self.State = ring.StateJoining
	}
	worst := self
	worst.Version, worst.State = math.MaxUint64, ring.StateJoining
	if n := len(encodeMeta(m.fp, worst)); n > memberlist.MetaMaxSize {
		return fail(fmt.Errorf("membership: this node's record takes %d bytes, more than memberlist's %d-byte metadata limit; shorten the ID or addresses", n, memberlist.MetaMaxSize))
	}
	m.tab.recs[self.ID] = self
	m.mu.Lock()
	r, err := m.buildRingLocked()
	if err == nil {
		m.publishLocked(true, r)
	}
	m.mu.Unlock()
	if err != nil {
		return fail(fmt.Errorf("membership: %w", err))
	}
	if err := m.persist(); err != nil {
		return fail(fmt.Errorf("membership: persisting ring state: %w", err))
	}

	mlc := memberlist.DefaultLocalConfig()
	mlc.Name = cfg.NodeID
	mlc.Transport = nt
	mlc.BindAddr, mlc.BindPort = bindHost, bindPort
	mlc.AdvertiseAddr, mlc.AdvertisePort = advIP.String(), advPort
	mlc.ProbeInterval = cfg.ProbeInterval
	mlc.ProbeTimeout = cfg.ProbeTimeout
	mlc.SuspicionMult = cfg.SuspicionMult
	mlc.GossipInterval = cfg.GossipInterval
	mlc.PushPullInterval = cfg.PushPullInterval
	mlc.DeadNodeReclaimTime = cfg.DeadNodeReclaimTime
	d := &delegate{m}
	mlc.Delegate, mlc.Events, mlc.Alive, mlc.Conflict = d, d, d, d
	mlc.Logger = logger
	if len(cfg.SecretKey) > 0 {
		switch len(cfg.SecretKey) {
		case 16, 24, 32:
		default:
			return nil, fmt.Errorf("membership: SecretKey of %d bytes: want 16, 24 or 32", len(cfg.SecretKey))
		}
		mlc.SecretKey = cfg.SecretKey
		mlc.GossipVerifyIncoming, mlc.GossipVerifyOutgoing = true, true
	}
	ml, err := memberlist.Create(mlc)
	if err != nil {
		return fail(fmt.Errorf("membership: %w", err))
	}
	m.ml = ml

	m.wg.Add(5)
	go m.rebuildLoop()
	go m.notifyLoop()
	go m.persistLoop()
	go m.announceLoop()
	go m.rejoinLoop()

	if len(targets) > 0 {
		if err := m.joinRetry(targets); err != nil {
			if peers == 0 {
				// A node that knows no peers must not serve a ring of
				// itself alone: it would acknowledge writes with one copy.
				m.Close()
				return nil, fmt.Errorf("membership: joining %v: %w; a new node needs a running member to learn the ring from (only the first node of a cluster starts without joining)", targets, err)
			}
			m.logf("membership: could not join %v (%v); starting from the persisted ring of %d peers and retrying in the background", targets, err, peers)
		}
		// The join merged a peer's table into ours, and the ring for it is
		// normally built in the background. Build it now, so the first ring
		// anyone reads holds the members the join taught us.
		if err := m.rebuildNow(); err != nil {
			if peers == 0 {
				m.Close()
				return nil, fmt.Errorf("membership: building the ring after joining %v: %w", targets, err)
			}
			m.logf("membership: building the ring after joining %v: %v; keeping the persisted ring", targets, err)
		}
		if m.LocalNode().State == ring.StateLeft {
			m.Close()
			return nil, errLeft(cfg.NodeID)
		}
		if cfg.Replace != "" && prev == nil {
			if err := m.startReplacing(cfg.Replace); err != nil {
				// This node was announced (joining) by the join: withdraw
				// it, or the cluster would wait for its join forever.
				if lerr := m.SetState(ring.StateLeft); lerr == nil {
					m.ml.Leave(time.Second)
					err = fmt.Errorf("%w; %s was withdrawn from the cluster (left): start the replacement under a new ID", err, cfg.NodeID)
				}
				m.Close()
				return nil, err
			}
		} else if m.LocalNode().State == ring.StateJoining && prev == nil && !m.establishedWithoutUs() {
			if err := m.SetState(ring.StateNormal); err != nil {
				m.Close()
				return nil, err
			}
		}
	}
	return m, nil
}

// startReplacing checks that old can be replaced by this new node and
// marks it leaving: its partitions are then pending on this node (which
// takes its tokens), and nowhere else.
func (m *Membership) startReplacing(old string) error {
	v := m.view.Load()
	rec, ok := v.recs[old]
	switch {
	case old == m.cfg.NodeID:
		return fmt.Errorf("membership: node %s cannot replace itself", old)
	case !ok:
		return fmt.Errorf("membership: cannot replace %s: the cluster has no such member", old)
	case rec.State == ring.StateLeft:
		return fmt.Errorf("membership: cannot replace %s: it has left the cluster already (join as a new node instead)", old)
	case rec.State == ring.StateJoining:
		return fmt.Errorf("membership: cannot replace %s: it is joining, it owns nothing", old)
	case v.alive[old]:
		return fmt.Errorf("membership: cannot replace %s: it is up (decommission it instead)", old)
	case max(rec.Weight, 1) != max(m.cfg.Weight, 1):
		return fmt.Errorf("membership: cannot replace %s of weight %d with weight %d: give the replacement its weight", old, max(rec.Weight, 1), max(m.cfg.Weight, 1))
	case rec.DC != m.cfg.DC:
		return fmt.Errorf("membership: cannot replace %s of DC %q from DC %q", old, rec.DC, m.cfg.DC)
	}
	m.logf("membership: %s replaces %s (down): it takes its tokens and streams its partitions from the surviving replicas", m.cfg.NodeID, old)
	return m.SetMemberState(old, ring.StateLeaving)
}

// errLeft is why a node whose ID has left the cluster does not start.
func errLeft(id string) error {
	return fmt.Errorf("membership: node %q has left the cluster (decommissioned or removed); a node ID is not reused: start the node with a new --node-id and an empty data directory", id)
}

// establishedWithoutUs reports whether the cluster this new node joined
// already places every key's N replicas without it, and did not know its ID
// as an owner: only then must it stream its partitions before it owns them.
func (m *Membership) establishedWithoutUs() bool {
	if m.ownerBefore.Load() {
		m.logf("membership: the cluster knows %s as an owner already (a node back on an empty disk): entering as normal", m.cfg.NodeID)
		return false
	}
	v := m.view.Load()
	var others []ring.Member
	for id, r := range v.recs {
		if id != m.cfg.NodeID {
			others = append(others, r.Member)
		}
	}
	r, err := ring.New(v.ringCfg, others)
	if err != nil || len(others) == 0 {
		return false
	}
	return r.Placed() >= r.Replicas()
}

// rebuildNow installs the ring for the current records if the published
// one is older.
func (m *Membership) rebuildNow() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := m.view.Load()
	if v.ringSig == v.recSig {
		return nil
	}
	r, err := ring.New(v.ringCfg, ringMembers(v.recs))
	if err != nil {
		return err
	}
	nv := *v
	nv.ring, nv.ringSig = r, v.recSig
	m.view.Store(&nv)
	signal(m.notifyCh)
	return nil
}

// nextVersion returns a version above old, taken from the wall clock when
// that is higher, so a node that lost its data directory still outranks
// its old record.
func nextVersion(old uint64) uint64 {
	now := uint64(time.Now().UnixNano())
	if now > old {
		return now
	}
	return old + 1
}

// joinTargets drops our own address from addrs.
func (m *Membership) joinTargets(addrs []string) []string {
	return m.joinTargetsFor(addrs, m.LocalNode().GossipAddr)
}

func (m *Membership) joinTargetsFor(addrs []string, me string) []string {
	var out []string
	for _, a := range addrs {
		if a = strings.TrimSpace(a); a != "" && normAddr(a) != me && normAddr(a) != normAddr(m.cfg.BindAddr) {
			out = append(out, a)
		}
	}
	return out
}

// joinRetry tries to join any of addrs until one answers with its ring
// state or JoinTimeout passes. memberlist merges the state of every node it
// reaches before Join returns, so on success our table holds everything
// that node knew.
func (m *Membership) joinRetry(addrs []string) error {
	deadline := time.Now().Add(m.cfg.JoinTimeout)
	backoff := 100 * time.Millisecond
	for {
		before := m.joinStates.Load()
		n, err := m.ml.Join(addrs)
		if n > 0 && m.joinStates.Load() != before {
			return nil
		}
		switch {
		case n > 0:
			// Reached, but it sent no ring state we accept (another ring
			// config, or not a ringkv node); MergeRemoteState logged why.
			err = fmt.Errorf("%d node(s) answered but sent no ring state for this ring config", n)
		case err == nil:
			err = errors.New("no node answered")
		}
		left := time.Until(deadline)
		if left <= 0 {
			// memberlist returns a multi-line multierror; flatten it.
			return errors.New(strings.Join(strings.Fields(err.Error()), " "))
		}
		time.Sleep(min(backoff, left))
		backoff = min(2*backoff, time.Second)
	}
}

// Ring returns the current ring, built from every record in every state;
// the ring places only Normal and Leaving members, so a Joining member owns
// nothing yet and a Left one owns nothing any more. Calling it is one atomic
// load. When records learned from peers change, the ring is rebuilt in the
// background (a few milliseconds) and subscribers are notified again; a
// local SetState is reflected before it returns.
func (m *Membership) Ring() *ring.Ring { return m.view.Load().ring }

// Addr returns a node's advertised PeerAddr.
func (m *Membership) Addr(nodeID string) (string, bool) {
	r, ok := m.view.Load().recs[nodeID]
	if !ok || r.PeerAddr == "" {
		return "", false
	}
	return r.PeerAddr, true
}

// Alive reports whether the failure detector considers the node up. The
// local node is always alive; unknown nodes are not.
func (m *Membership) Alive(nodeID string) bool {
	return nodeID == m.cfg.NodeID || m.view.Load().alive[nodeID]
}

// Members returns every known record, in every state, with its liveness,
// sorted by ID.
func (m *Membership) Members() []MemberStatus {
	v := m.view.Load()
	recs := sortedRecords(v.recs)
	out := make([]MemberStatus, len(recs))
	for i, r := range recs {
		out[i] = MemberStatus{Record: r, Alive: r.ID == m.cfg.NodeID || v.alive[r.ID]}
	}
	return out
}

// LocalNode returns this node's own record.
func (m *Membership) LocalNode() Record { return m.view.Load().recs[m.cfg.NodeID] }

// Subscribe registers fn to be called after the record table or liveness
// changes. Calls are made one at a time from a single goroutine and are
// coalesced: a burst of changes may produce one call, which then sees the
// newest state. fn must not block for long.
func (m *Membership) Subscribe(fn func()) {
	m.subMu.Lock()
	m.subs = append(m.subs, fn)
	m.subMu.Unlock()
}

// SetState changes the local node's ring state, persists it, and gossips
// it. Moving to ring.StateLeft removes the node from every preference list
// on every node once the change has spread.
func (m *Membership) SetState(s ring.State) error {
	if s > ring.StateLeft {
		return fmt.Errorf("membership: unknown state %d", s)
	}
	if m.closed.Load() {
		return errors.New("membership: closed")
	}
	m.mu.Lock()
	me := m.tab.recs[m.cfg.NodeID]
	if me.State == s {
		m.mu.Unlock()
		return nil
	}
	old := me
	me.State = s
	me.Version = nextVersion(me.Version)
	m.tab.recs[me.ID] = me
	// Build the ring here rather than in the background, so the caller
	// sees its own change in Ring() when SetState returns.
	r, err := m.buildRingLocked()
	if err != nil {
		m.tab.recs[me.ID] = old
		m.mu.Unlock()
		return fmt.Errorf("membership: state %v: %w", s, err)
	}
	m.publishLocked(true, r)
	m.mu.Unlock()
	m.logf("membership: %s is now %v", me.ID, s)

	err = m.persist()
	if uerr := m.ml.UpdateNode(time.Second); uerr != nil {
		// Push/pull will carry the change anyway.
		m.logf("membership: announcing state %v: %v", s, uerr)
	}
	if err != nil {
		return fmt.Errorf("membership: persisting ring state: %w", err)
	}
	return nil
}

// Leave announces a graceful departure from gossip and waits up to timeout
// for it to spread, so peers mark this node down at once. It does not
// change ring membership (see SetState) and does not shut down; call Close
// afterwards.
func (m *Membership) Leave(timeout time.Duration) error {
	return m.ml.Leave(timeout)
}

// Close shuts the node down without announcing it: peers will detect it as
// down. The ring state is flushed to disk first.
func (m *Membership) Close() error {
	m.closeOnce.Do(func() {
		m.closed.Store(true)
		m.closeErr = m.ml.Shutdown()
		close(m.stop)
		m.wg.Wait()
		if err := m.persist(); err != nil && m.closeErr == nil {
			m.closeErr = err
		}
	})
	return m.closeErr
}

// publishLocked installs a new view after the table changed; records says
// whether records changed (as opposed to liveness only). built, if not nil,
// is the ring for the current records; otherwise a changed ring is rebuilt
// in the background, because building takes milliseconds and this runs
// inside memberlist's callbacks. m.mu must be held.
func (m *Membership) publishLocked(records bool, built *ring.Ring) {
	v := &view{}
	if old := m.view.Load(); old != nil {
		*v = *old
	}
	v.alive = make(map[string]bool, len(m.tab.live))
	for id := range m.tab.live {
		v.alive[id] = true
	}
	if records {
		v.recs = make(map[string]Record, len(m.tab.recs))
		for id, r := range m.tab.recs {
			v.recs[id] = r
		}
		v.recGen++
		v.repl = m.repl
		v.ringCfg = m.ringConfigLocked()
		v.recSig = ringSignature(v.recs) + m.repl.signature()
	}
	if built != nil {
		v.ring, v.ringSig = built, v.recSig
	}
	m.view.Store(v)
	if v.ringSig != v.recSig {
		signal(m.rebuildCh)
	}
	signal(m.notifyCh)
	if records {
		signal(m.persistCh)
	}
}

// buildRingLocked builds the ring for the current table. m.mu must be held.
func (m *Membership) buildRingLocked() (*ring.Ring, error) {
	return ring.New(m.ringConfigLocked(), ringMembers(m.tab.recs))
}

// rebuildLoop rebuilds the ring after records learned from peers changed
// it. A ring that cannot be built (a peer's record the ring rejects) is
// logged and the previous ring kept.
func (m *Membership) rebuildLoop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.stop:
			return
		case <-m.rebuildCh:
		}
		v := m.view.Load()
		if v.ringSig == v.recSig {
			continue
		}
		r, err := ring.New(v.ringCfg, ringMembers(v.recs))
		if err != nil {
			m.warnOnce("ring\x00"+err.Error(), "membership: keeping the previous ring: %v", err)
			continue
		}
		m.mu.Lock()
		// Install only if the records did not move on meanwhile; if they
		// did, another rebuild is already signalled.
		if cur := m.view.Load(); cur.recSig == v.recSig && cur.ringSig != v.recSig {
			nv := *cur
			nv.ring, nv.ringSig = r, v.recSig
			m.view.Store(&nv)
			signal(m.notifyCh)
		}
		m.mu.Unlock()
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// persist writes the newest table to DataDir unless it is already there.
func (m *Membership) persist() error {
	if m.cfg.DataDir == "" {
		return nil
	}
	m.persistMu.Lock()
	defer m.persistMu.Unlock()
	v := m.view.Load()
	if v.recGen == m.written {
		return nil
	}
	ds := diskState{Format: stateFormat, NodeID: m.cfg.NodeID, Ring: m.ringCfg, Repl: v.repl.wire()}
	for _, r := range sortedRecords(v.recs) {
		ds.Records = append(ds.Records, toWire(r))
	}
	if err := saveState(m.cfg.DataDir, ds); err != nil {
		return err
	}
	m.written = v.recGen
	return nil
}

func (m *Membership) persistLoop() {
	defer m.wg.Done()
	var retry <-chan time.Time
	for {
		select {
		case <-m.stop:
			return
		case <-m.persistCh:
		case <-retry:
		}
		retry = nil
		if err := m.persist(); err != nil {
			m.logf("membership: persisting ring state: %v (retrying)", err)
			retry = time.After(time.Second)
		}
	}
}

func (m *Membership) notifyLoop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.stop:
			return
		case <-m.notifyCh:
		}
		m.subMu.Lock()
		subs := append([]func(){}, m.subs...)
		m.subMu.Unlock()
		for _, fn := range subs {
			fn()
		}
	}
}

// announceLoop re-broadcasts our metadata after our record was bumped to
// outrank a version of it seen elsewhere. It runs apart from the delegate
// callbacks because those hold memberlist's locks.
func (m *Membership) announceLoop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.stop:
			return
		case <-m.announceCh:
		}
		if err := m.ml.UpdateNode(time.Second); err != nil {
			m.logf("membership: re-announcing own record: %v", err)
		}
	}
}

// rejoinLoop periodically joins known members that memberlist considers
// down (and the configured seeds when we are alone), so that restarts after
// a full outage and healed partitions merge back into one cluster.
func (m *Membership) rejoinLoop() {
	defer m.wg.Done()
	t := time.NewTicker(m.cfg.RejoinInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		v := m.view.Load()
		var addrs []string
		for id, r := range v.recs {
			if id != m.cfg.NodeID && r.State != ring.StateLeft && !v.alive[id] {
				addrs = append(addrs, r.GossipAddr)
			}
		}
		if len(v.alive) == 0 {
			addrs = append(addrs, m.joinTargets(m.cfg.Join)...)
		}
		if len(addrs) == 0 {
			continue
		}
		if n, _ := m.ml.Join(addrs); n > 0 {
			m.logf("membership: rejoined via %d of %d down or seed nodes", n, len(addrs))
		}
	}
}

func (m *Membership) logf(format string, args ...any) {
	if m.cfg.Logf != nil {
		m.cfg.Logf(format, args...)
	}
}

// warnOnce logs a message once per key, so a conflict that every push/pull
// repeats does not flood the log.
func (m *Membership) warnOnce(key, format string, args ...any) {
	m.warnMu.Lock()
	seen := m.warned[key]
	if !seen {
		if len(m.warned) > 1000 {
			clear(m.warned)
		}
		m.warned[key] = true
	}
	m.warnMu.Unlock()
	if !seen {
		m.logf(format, args...)
	}
}

// mergeLocked merges one record from gossip and reports whether the table
// changed. m.mu must be held.
func (m *Membership) mergeLocked(r Record, from string) bool {
	if err := checkRecord(r, m.ringConfigLocked()); err != nil {
		m.warnOnce("bad\x00"+r.ID+"\x00"+from, "membership: ignoring record from %s: %v", from, err)
		return false
	}
	if r.ID == m.cfg.NodeID && (r.State == ring.StateNormal || r.State == ring.StateLeaving) {
		m.ownerBefore.Store(true)
	}
	switch m.tab.merge(r) {
	case mergeApplied:
		return true
	case mergeConflict:
		m.warnOnce("conflict\x00"+r.ID+"\x00"+r.GossipAddr,
			"membership: node ID %q is claimed by %s, but it belongs to %s; ignoring that record (node IDs must be unique)",
			r.ID, r.GossipAddr, m.ownerAddrLocked(r.ID))
	case mergeSelf:
		me := m.tab.recs[m.cfg.NodeID]
		me.Version = nextVersion(max(me.Version, r.Version))
		m.tab.recs[me.ID] = me
		signal(m.announceCh)
		return true
	case mergeSelfState:
		me := m.tab.recs[m.cfg.NodeID]
		m.logf("membership: %s learns from %s that it is %v (was %v): an operator decommissioned or removed it", me.ID, from, r.State, me.State)
		me.State = r.State
		me.Version = nextVersion(max(me.Version, r.Version))
		m.tab.recs[me.ID] = me
		signal(m.announceCh)
		return true
	}
	return false
}

// SetMemberState is the operator's path to another node's state: it moves
// node id to ring.StateLeaving (decommission, or removal of a dead node)
// or ring.StateLeft (the move is done), writes the record with a higher
// version, persists it, and gossips it to every node, including id itself,
// which adopts it (see table.merge). States only move forward: a node that
// is leaving or left never returns to normal, even if it restarts from an
// old data directory. For this node's own ID it is SetState.
func (m *Membership) SetMemberState(id string, s ring.State) error {
	if id == m.cfg.NodeID {
		return m.SetState(s)
	}
	if s != ring.StateLeaving && s != ring.StateLeft {
		return fmt.Errorf("membership: another node's state can only be set to leaving or left, not %v", s)
	}
	if m.closed.Load() {
		return errors.New("membership: closed")
	}
	m.mu.Lock()
	rec, ok := m.tab.recs[id]
	switch {
	case !ok:
		m.mu.Unlock()
		return fmt.Errorf("membership: unknown node %q", id)
	case rec.State == s:
		m.mu.Unlock()
		return nil
	case rec.State > s:
		m.mu.Unlock()
		return fmt.Errorf("membership: node %q is %v already", id, rec.State)
	}
	old := rec
	rec.State = s
	rec.Version = nextVersion(rec.Version)
	m.tab.recs[id] = rec
	r, err := m.buildRingLocked()
	if err != nil {
		m.tab.recs[id] = old
		m.mu.Unlock()
		return fmt.Errorf("membership: %s to %v: %w", id, s, err)
	}
	m.publishLocked(true, r)
	m.mu.Unlock()
	m.logf("membership: %s is now %v (set here, on %s)", id, s, m.cfg.NodeID)
	m.broadcast(rec)
	if err := m.persist(); err != nil {
		return fmt.Errorf("membership: persisting ring state: %w", err)
	}
	return nil
}

// recordBroadcast gossips one record that is not the sender's own (the
// sender's own rides in its metadata): an operator's state change.
type recordBroadcast struct {
	id  string
	msg []byte
}

func (b recordBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(recordBroadcast)
	return ok && ob.id == b.id
}
func (b recordBroadcast) Message() []byte { return b.msg }
func (b recordBroadcast) Finished()       {}

func (m *Membership) broadcast(r Record) {
	m.bcast.QueueBroadcast(recordBroadcast{id: r.ID, msg: encodeMeta(m.fp, r)})
}

func (m *Membership) ownerAddrLocked(id string) string {
	if a, ok := m.tab.live[id]; ok {
		return a
	}
	return m.tab.recs[id].GossipAddr
}

// logWriter routes memberlist's logger into Config.Logf, dropping debug
// lines.
type logWriter struct{ m *Membership }

func (w logWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\n")
	if !strings.Contains(line, "[DEBUG]") {
		w.m.logf("%s", line)
	}
	return len(p), nil
}

var _ io.Writer = logWriter{}

// delegate implements memberlist's callbacks. They run with memberlist's
// locks held, so they only touch our table and never call memberlist.
type delegate struct{ m *Membership }

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.AliveDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
)

// NodeMeta returns our own record; Start checked that it fits.
func (d *delegate) NodeMeta(limit int) []byte {
	b := encodeMeta(d.m.fp, d.m.LocalNode())
	if len(b) > limit {
		d.m.logf("membership: own record is %d bytes, over the %d-byte limit", len(b), limit)
		return nil
	}
	return b
}

// NotifyMsg merges a record gossiped by SetMemberState, or a replication
// gossiped by a change of it.
func (d *delegate) NotifyMsg(b []byte) {
	m := d.m
	var msg metaMsg
	if err := json.Unmarshal(b, &msg); err != nil || msg.Cfg != m.fp {
		m.warnOnce("badmsg", "membership: ignoring a gossiped message (%v, ring config %s; ours %s)", err, msg.Cfg, m.fp)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := m.mergeReplLocked(msg.Repl, "gossip")
	if msg.Repl == nil {
		r, err := fromWire(msg.Rec)
		if err != nil {
			m.warnOnce("badmsg\x00"+msg.Rec.ID, "membership: ignoring a gossiped record: %v", err)
		} else if m.mergeLocked(r, "gossip") {
			changed = true
		}
	}
	if changed {
		m.publishLocked(true, nil)
	}
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.bcast.GetBroadcasts(overhead, limit)
}

// LocalState returns the whole table for push/pull.
func (d *delegate) LocalState(join bool) []byte {
	v := d.m.view.Load()
	msg := stateMsg{Format: stateFormat, Cfg: d.m.fp, Repl: v.repl.wire()}
	for _, r := range sortedRecords(v.recs) {
		msg.Records = append(msg.Records, toWire(r))
	}
	b, _ := json.Marshal(msg)
	return b
}

// MergeRemoteState merges a peer's table, record by record.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	m := d.m
	if len(buf) == 0 {
		return
	}
	var msg stateMsg
	if err := json.Unmarshal(buf, &msg); err != nil {
		m.warnOnce("badstate", "membership: ignoring undecodable ring state from a peer: %v", err)
		return
	}
	if msg.Format != stateFormat || msg.Cfg != m.fp {
		m.warnOnce("cfgstate\x00"+msg.Cfg, "membership: ignoring ring state from a peer with a different ring config or format (%d, %s; ours %d, %s)", msg.Format, msg.Cfg, stateFormat, m.fp)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if join {
		// Counted under m.mu once merged: see joinRetry.
		defer m.joinStates.Add(1)
	}
	changed := m.mergeReplLocked(msg.Repl, "push/pull")
	for _, w := range msg.Records {
		r, err := fromWire(w)
		if err != nil {
			m.warnOnce("badrec\x00"+w.ID, "membership: ignoring record %q: %v", w.ID, err)
			continue
		}
		if m.mergeLocked(r, "push/pull") {
			changed = true
		}
	}
	if changed {
		m.publishLocked(true, nil)
	}
}

// NotifyAlive refuses peers whose metadata is not a ringkv record for the
// same ring config, so such nodes never enter our member list.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	if n.Name == d.m.cfg.NodeID {
		return nil
	}
	cfg, r, err := decodeMeta(n.Meta)
	switch {
	case err != nil:
		return err
	case cfg != d.m.fp:
		return fmt.Errorf("ring config fingerprint %s differs from ours (%s)", cfg, d.m.fp)
	case r.ID != n.Name:
		return fmt.Errorf("metadata names node %q", r.ID)
	case normAddr(r.GossipAddr) != n.Address():
		return fmt.Errorf("metadata gossip address %s differs from %s", r.GossipAddr, n.Address())
	}
	return nil
}

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.nodeEvent(n, true) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.nodeEvent(n, true) }
func (d *delegate) NotifyLeave(n *memberlist.Node)  { d.nodeEvent(n, false) }

// nodeEvent records a liveness change and merges the record carried in the
// node's metadata.
func (d *delegate) nodeEvent(n *memberlist.Node, alive bool) {
	m := d.m
	if n.Name == m.cfg.NodeID {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	addr, wasAlive := m.tab.live[n.Name]
	if !alive {
		delete(m.tab.live, n.Name)
		if wasAlive {
			m.logf("membership: %s (%s) is down", n.Name, addr)
			m.publishLocked(false, nil)
		}
		return
	}
	m.tab.live[n.Name] = n.Address()
	changed := false
	if _, r, err := decodeMeta(n.Meta); err != nil {
		m.warnOnce("meta\x00"+n.Name, "membership: node %s: %v", n.Name, err)
	} else if r.ID == n.Name {
		changed = m.mergeLocked(r, n.Address())
	}
	if !wasAlive {
		m.logf("membership: %s (%s) is alive", n.Name, n.Address())
	}
	if changed || !wasAlive || addr != n.Address() {
		m.publishLocked(changed, nil)
	}
}

// NotifyConflict logs two live nodes claiming one ID.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.m.warnOnce("conflict\x00"+other.Name+"\x00"+other.Address(),
		"membership: node ID %q is claimed by %s, but it belongs to %s; ignoring it (node IDs must be unique)",
		other.Name, other.Address(), existing.Address())
}
