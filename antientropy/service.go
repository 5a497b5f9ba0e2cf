package antientropy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ringkv/ringkv/replica"
	"github.com/ringkv/ringkv/ring"
	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// Peers is what the service needs to know about the cluster (the
// membership): the ring, where nodes listen, and which are alive.
type Peers interface {
	Ring() *ring.Ring
	Addr(nodeID string) (string, bool)
	Alive(nodeID string) bool
}

// Options configure a Service. Zero fields take their defaults.
type Options struct {
	// Interval is the pause between two rounds (a round exchanges every
	// partition this node replicates with every other live replica of it).
	// Default: 10s.
	Interval time.Duration
	// Rate bounds the bytes per second the exchange sends and receives
	// (the I/O budget). Default: 16 MiB/s. Negative: no bound.
	Rate int64
	// Timeout bounds one peer message. Default: 10s.
	Timeout time.Duration
	// TombstoneGrace is how long a tombstone is kept at least, counted
	// from when a scan noted it, and only once every other replica of its
	// partition was verified against this one after that (see purge.go).
	// It must exceed the longest time a hint or a fallback's copy of an
	// older version can wait for delivery. Default: 24h. Negative: never
	// purge.
	TombstoneGrace time.Duration
	// Now is the clock of verification times. Default: time.Now.
	Now func() time.Time
	// Logf receives notable events. Default: discard.
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() Options {
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.Rate == 0 {
		o.Rate = 16 << 20
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TombstoneGrace == 0 {
		o.TombstoneGrace = 24 * time.Hour
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// Service keeps this node's trees current and exchanges them with the
// other replicas of each partition it replicates, repairing what differs.
type Service struct {
	self  string
	store *replica.Store
	trees *Trees
	peers Peers
	tr    transport.Transport
	o     Options

	kick   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// moving keeps a stream of gained partitions (SyncPartitions) and the
	// removal of a dropped one (DropPartition) apart: a stream that
	// verified a partition this node gained back must not be followed by
	// the removal of what it verified.
	moving sync.Mutex
	// removals counts, per partition, the removals DropPartition began
	// (guarded by mu): a verification of a gained partition made before
	// the latest removal no longer stands (see Removals).
	removals map[int]uint64

	mu       sync.Mutex
	verified map[verifiedKey]time.Time // when partition p was last verified against peer
	// incarnations: each peer's incarnation as its last KindRoots reply
	// named it; verifications are of that incarnation.
	incarnations map[string]uint64
	st           Status
	debt         time.Duration // throttle: time owed for bytes already exchanged

	// Owned by the rounds' goroutine (purge.go).
	purged    map[string]purgedTombstone // guarded by mu
	noted     map[int]*candidates        // tombstones noted per partition
	lastNoted map[int]time.Time          // when each partition was last scanned for them
}

type verifiedKey struct {
	p    int
	peer string
}

// Status is what the service has done (Service.Status).
type Status struct {
	// RoundsStarted and RoundsDone count rounds; Running is true during one.
	RoundsStarted, RoundsDone uint64
	Running                   bool
	// PartitionsTotal and PartitionsDone are the current (or last) round's
	// progress: (partition, peer) pairs to compare and compared.
	PartitionsTotal, PartitionsDone int
	// TreesTrusted of TreesTotal partitions have a tree built and current.
	TreesTrusted, TreesTotal int
	// KeysPulled and KeysPushed count keys repaired since start: merged
	// here from a peer, and sent to a peer.
	KeysPulled, KeysPushed uint64
	// BytesSent and BytesReceived count the exchange's payloads.
	BytesSent, BytesReceived uint64
	// LastRoundStart and LastRoundEnd time the last round.
	LastRoundStart, LastRoundEnd time.Time
	// TombstonesPurged counts tombstones removed since start.
	TombstonesPurged uint64
	// LastError is the last failure of an exchange (empty if none since
	// the last round without one).
	LastError string
}

// PeerStatus is what the service knows about one peer (Service.PeerStatus).
type PeerStatus struct {
	// Shared counts the partitions both nodes replicate; Unverified those
	// never verified against the peer since this node started.
	Shared, Unverified int
	// OldestVerified is the oldest last-verified time over the shared
	// partitions that were verified (zero if none).
	OldestVerified time.Time
}

// New returns a service for store, installing its trees as the store's
// replica.Observer: call it before the store serves any write. The trees
// start untrusted; Start builds them and begins the rounds.
func New(self string, store *replica.Store, peers Peers, tr transport.Transport, o Options) (*Service, error) {
	trees, err := NewTrees(peers.Ring().Partitions())
	if err != nil {
		return nil, err
	}
	store.SetObserver(trees)
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{
		self: self, store: store, trees: trees, peers: peers, tr: tr, o: o.withDefaults(),
		kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
		verified: make(map[verifiedKey]time.Time), incarnations: make(map[string]uint64),
		noted: make(map[int]*candidates), lastNoted: make(map[int]time.Time),
		purged: make(map[string]purgedTombstone),
	}, nil
}

// Trees returns the service's trees.
func (s *Service) Trees() *Trees { return s.trees }

// Start builds the trees from the store and then runs a round every
// Interval (or at once after Repair) until Close.
func (s *Service) Start() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.buildAll()
		timer := time.NewTimer(s.o.Interval)
		defer timer.Stop()
		for {
			s.round()
			select {
			case <-s.ctx.Done():
				return
			case <-timer.C:
			case <-s.kick:
				if !timer.Stop() {
					select {
					case <-timer.C:
					default:
					}
				}
			}
			timer.Reset(s.o.Interval)
		}
	}()
}

// Close stops the rounds and waits for the current one to end.
func (s *Service) Close() {
	s.cancel()
	s.wg.Wait()
}

// Repair asks for a full round now and returns the number of the round
// that, once RoundsDone reaches it, has started after this call.
func (s *Service) Repair() uint64 {
	s.mu.Lock()
	want := s.st.RoundsStarted + 1
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	return want
}

// Status returns what the service has done so far.
func (s *Service) Status() Status {
	trusted := 0
	for p := range s.trees.Partitions() {
		if s.trees.Trusted(p) {
			trusted++
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.TreesTrusted, st.TreesTotal = trusted, s.trees.Partitions()
	return st
}

// PeerStatus returns, per peer of this node in the current ring, how
// recently their shared partitions were verified.
func (s *Service) PeerStatus() map[string]PeerStatus {
	rg := s.peers.Ring()
	out := make(map[string]PeerStatus)
	s.mu.Lock()
	defer s.mu.Unlock()
	for p := range rg.Partitions() {
		pref := rg.Preference(p)
		if !slices.Contains(pref, s.self) {
			continue
		}
		for _, peer := range pref {
			if peer == s.self {
				continue
			}
			ps := out[peer]
			ps.Shared++
			if t, ok := s.verified[verifiedKey{p, peer}]; !ok {
				ps.Unverified++
			} else if ps.OldestVerified.IsZero() || t.Before(ps.OldestVerified) {
				ps.OldestVerified = t
			}
			out[peer] = ps
		}
	}
	return out
}

// Verified returns when partition p was last verified against peer (zero
// if never since this node started).
func (s *Service) Verified(p int, peer string) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.verified[verifiedKey{p, peer}]
}

// Build builds every partition's tree that is not trusted yet, from the
// store, retrying a few times those that had writes in flight during their
// scan. Start does it first; tests call it to have trees at once.
func (s *Service) Build() { s.buildAll() }

// buildAll builds every partition's tree that is not trusted yet, retrying
// those that had writes in flight during their scan a few times.
func (s *Service) buildAll() {
	for attempt := 0; attempt < 5; attempt++ {
		left := 0
		for p := range s.trees.Partitions() {
			if s.ctx.Err() != nil {
				return
			}
			if !s.trees.Trusted(p) && !s.rebuild(p) {
				left++
			}
		}
		if left == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rebuild rebuilds partition p's tree from the store and reports whether
// it is trusted now.
func (s *Service) rebuild(p int) bool {
	first, last := s.trees.PartitionRange(p)
	ok, err := s.trees.Rebuild(p, func() func(add func(token, hash uint64)) error {
		scan := s.store.SnapshotHashes(first, last)
		return func(add func(token, hash uint64)) error {
			return scan(func(kh replica.KeyHash) bool {
				add(kh.Token, kh.Hash)
				return true
			})
		}
	})
	if err != nil {
		s.o.Logf("antientropy: rebuilding the tree of partition %d: %v", p, err)
	}
	return ok
}

// round exchanges every partition this node replicates with each other
// live replica of it.
func (s *Service) round() {
	rg := s.peers.Ring()
	shared := make(map[string][]int)
	total := 0
	for p := range rg.Partitions() {
		pref := rg.Preference(p)
		if !slices.Contains(pref, s.self) {
			continue
		}
		for _, peer := range pref {
			if peer != s.self && s.peers.Alive(peer) {
				shared[peer] = append(shared[peer], p)
				total++
			}
		}
	}
	s.mu.Lock()
	s.st.RoundsStarted++
	s.st.Running, s.st.PartitionsTotal, s.st.PartitionsDone = true, total, 0
	s.st.LastRoundStart = s.o.Now()
	s.mu.Unlock()
	var failed error
	peers := make([]string, 0, len(shared))
	for peer := range shared {
		peers = append(peers, peer)
	}
	slices.Sort(peers)
	for _, peer := range peers {
		if s.ctx.Err() != nil {
			break
		}
		if _, err := s.exchange(peer, shared[peer], modeRound); err != nil {
			failed = err
			s.o.Logf("antientropy: exchange with %s: %v", peer, err)
		}
	}
	s.purge(rg)
	s.mu.Lock()
	s.st.RoundsDone++
	s.st.Running = false
	s.st.LastRoundEnd = s.o.Now()
	if failed != nil {
		s.st.LastError = failed.Error()
	} else {
		s.st.LastError = ""
	}
	s.mu.Unlock()
}

// peerIncarnation records the incarnation a peer's KindRoots reply named.
// A new one (the peer restarted on a wiped disk, or after a crash) voids
// every verification against the peer: what it held then may be gone.
func (s *Service) peerIncarnation(peer string, inc uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.incarnations[peer]; ok && old == inc {
		return
	}
	s.incarnations[peer] = inc
	for k := range s.verified {
		if k.peer == peer {
			delete(s.verified, k)
		}
	}
}

// rootsPerMessage bounds the partitions of one KindRoots request.
const rootsPerMessage = 8192

// SyncPartitions compares and repairs the given partitions with peer now,
// outside the rounds and whether or not this node replicates them (a
// joining node streams the partitions it will replicate this way: its
// trees cover every partition). It returns the partitions verified:
// everything stored on peer before the call is stored here too, and the
// other way round. It is throttled by Options.Rate, with the rounds.
func (s *Service) SyncPartitions(peer string, parts []int) (verified []int, err error) {
	s.moving.Lock()
	defer s.moving.Unlock()
	return s.exchange(peer, parts, modeSync)
}

// exchangeMode says what an exchange repairs.
type exchangeMode int

const (
	modeRound    exchangeMode = iota // both ways, counted in the round's progress
	modeSync                         // both ways, outside the rounds
	modeHandover                     // this node's keys to the peer only (see DropPartition)
)

// exchange compares and repairs the given partitions with peer. A
// partition whose roots match, or whose differences were all repaired, is
// returned verified: everything stored here before the exchange began is
// now on the peer, and (unless mode is modeHandover) the other way round;
// both-ways verifications are recorded at the time the exchange began.
func (s *Service) exchange(peer string, parts []int, mode exchangeMode) (verified []int, err error) {
	inRound, pushOnly := mode == modeRound, mode == modeHandover
	start := s.o.Now()
	var firstErr error
	for len(parts) > 0 {
		chunk := parts[:min(len(parts), rootsPerMessage)]
		parts = parts[len(chunk):]
		reply, err := s.call(peer, KindRoots, appendUvarints(nil, chunk))
		if err != nil {
			return verified, fmt.Errorf("roots: %w", err)
		}
		if len(reply) != 9*len(chunk)+8 {
			return verified, fmt.Errorf("roots: %w", errMalformed)
		}
		s.peerIncarnation(peer, binary.BigEndian.Uint64(reply[9*len(chunk):]))
		for i, p := range chunk {
			theirs, theirsOK := binary.BigEndian.Uint64(reply[9*i+1:]), reply[9*i] == 1
			ours, oursOK := s.trees.Root(p)
			if !oursOK && s.rebuild(p) {
				ours, oursOK = s.trees.Root(p)
			}
			var err error
			switch {
			case !oursOK || !theirsOK:
				err = fmt.Errorf("partition %d: tree not built yet (here %v, there %v)", p, oursOK, theirsOK)
			case ours != theirs:
				err = s.syncPartition(peer, p, pushOnly)
			}
			if err == nil {
				if !pushOnly {
					s.mu.Lock()
					s.verified[verifiedKey{p, peer}] = start
					s.mu.Unlock()
				}
				verified = append(verified, p)
			} else if firstErr == nil {
				firstErr = err
			}
			if inRound {
				s.mu.Lock()
				s.st.PartitionsDone++
				s.mu.Unlock()
			}
			if s.ctx.Err() != nil {
				return verified, s.ctx.Err()
			}
		}
	}
	return verified, firstErr
}

// leavesPerMessage bounds the leaves of one KindKeys request.
const leavesPerMessage = 64

// syncPartition finds the leaves of partition p that differ from peer's
// and repairs their keys.
func (s *Service) syncPartition(peer string, p int, pushOnly bool) error {
	reply, err := s.call(peer, KindLeaves, binary.AppendUvarint(nil, uint64(p)))
	if err != nil {
		return fmt.Errorf("partition %d leaves: %w", p, err)
	}
	if len(reply) == 1 && reply[0] == 0 {
		return fmt.Errorf("partition %d: the peer's tree is not built", p)
	}
	if len(reply) != 1+8*Leaves || reply[0] != 1 {
		return fmt.Errorf("partition %d leaves: %w", p, errMalformed)
	}
	ours, ok := s.trees.LeafHashes(p)
	if !ok {
		return fmt.Errorf("partition %d: tree not trusted here", p)
	}
	var differ []int
	for l := range Leaves {
		if binary.BigEndian.Uint64(reply[1+8*l:]) != ours[l] {
			differ = append(differ, l)
		}
	}
	for len(differ) > 0 {
		chunk := differ[:min(len(differ), leavesPerMessage)]
		differ = differ[len(chunk):]
		if err := s.syncLeaves(peer, p, chunk, pushOnly); err != nil {
			return err
		}
	}
	return nil
}

// syncLeaves repairs the keys of some leaves of partition p: compares the
// hash of every key here and on peer, merges here the peer's version of
// each key that differs and then sends it this node's (merged) version, so
// that both end with the merge of both. pushOnly sends this node's version
// of every key that differs and takes nothing (the peer merges it).
func (s *Service) syncLeaves(peer string, p int, leaves []int, pushOnly bool) error {
	req := binary.AppendUvarint(nil, uint64(p))
	reply, err := s.call(peer, KindKeys, appendUvarints(req, leaves))
	if err != nil {
		if isTooMany(err) && len(leaves) > 1 {
			half := len(leaves) / 2
			if err := s.syncLeaves(peer, p, leaves[:half], pushOnly); err != nil {
				return err
			}
			return s.syncLeaves(peer, p, leaves[half:], pushOnly)
		}
		return fmt.Errorf("partition %d keys: %w", p, err)
	}
	theirs, err := decodeKeyHashes(reply)
	if err != nil {
		return fmt.Errorf("partition %d keys: %w", p, err)
	}
	ours := make(map[string]uint64)
	for _, l := range leaves {
		first, last := s.trees.LeafRange(p, l)
		if err := s.store.ScanHashes(first, last, func(kh replica.KeyHash) bool {
			ours[string(kh.Key)] = kh.Hash
			return true
		}); err != nil {
			return fmt.Errorf("partition %d: scanning leaf %d: %w", p, l, err)
		}
	}
	var pull, push []string
	if pushOnly {
		theirHash := make(map[string]uint64, len(theirs))
		for _, kh := range theirs {
			theirHash[kh.key] = kh.hash
		}
		for k, h := range ours {
			if th, ok := theirHash[k]; !ok || th != h {
				push = append(push, k)
			}
		}
		slices.Sort(push)
		if err := s.push(peer, push); err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
		return nil
	}
	seen := make(map[string]bool, len(theirs))
	for _, kh := range theirs {
		seen[kh.key] = true
		h, ok := ours[kh.key]
		if !ok && s.wasPurged(kh.key, kh.hash) {
			continue // a tombstone purged here, not yet there
		}
		if !ok || h != kh.hash {
			pull = append(pull, kh.key)
		}
	}
	for k := range ours {
		if !seen[k] {
			push = append(push, k)
		}
	}
	if err := s.pull(peer, pull); err != nil {
		return fmt.Errorf("partition %d: %w", p, err)
	}
	// Every key that differed goes back, merged with the peer's version,
	// unless the merge is what the peer has (it had everything this node
	// had, as when the key was missing here).
	theirHash := make(map[string]uint64, len(pull))
	for _, kh := range theirs {
		theirHash[kh.key] = kh.hash
	}
	for _, k := range pull {
		same, err := s.holds(k, theirHash[k])
		if err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
		if !same {
			push = append(push, k)
		}
	}
	slices.Sort(push)
	push = slices.Compact(push)
	if err := s.push(peer, push); err != nil {
		return fmt.Errorf("partition %d: %w", p, err)
	}
	return nil
}

// holds reports whether the stored object of key has the given hash.
func (s *Service) holds(key string, hash uint64) (bool, error) {
	obj, err := s.store.Get([]byte(key))
	if err != nil || obj == nil {
		return false, err
	}
	return replica.ObjectHash([]byte(key), obj.Encode(nil)) == hash, nil
}

// getPerMessage bounds the keys of one KindGet request (a reply that would
// not fit a frame is split further).
const getPerMessage = 128

// pull merges peer's version of keys into the store.
func (s *Service) pull(peer string, keys []string) error {
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), getPerMessage)]
		keys = keys[len(chunk):]
		if err := s.pullChunk(peer, chunk); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) pullChunk(peer string, keys []string) error {
	reply, err := s.call(peer, KindGet, encodeKeys(keys))
	if err != nil {
		if isTooMany(err) && len(keys) > 1 {
			half := len(keys) / 2
			if err := s.pullChunk(peer, keys[:half]); err != nil {
				return err
			}
			return s.pullChunk(peer, keys[half:])
		}
		return fmt.Errorf("get %d keys: %w", len(keys), err)
	}
	objs, err := decodeObjects(reply, len(keys))
	if err != nil {
		return fmt.Errorf("get %d keys: %w", len(keys), err)
	}
	var ks [][]byte
	var os []*version.Object
	for i, o := range objs {
		if o != nil {
			ks, os = append(ks, []byte(keys[i])), append(os, o)
		}
	}
	n := s.apply(ks, os)
	s.mu.Lock()
	s.st.KeysPulled += uint64(n)
	s.mu.Unlock()
	if n < len(ks) {
		// Not repaired: the partition must not be recorded as verified.
		return fmt.Errorf("merged %d of %d keys pulled", n, len(ks))
	}
	return nil
}

// apply merges objects into the store, one batch, or key by key when the
// batch is refused (one object too large to merge must not keep the others
// out). It returns how many were merged.
func (s *Service) apply(keys [][]byte, objs []*version.Object) int {
	if len(keys) == 0 {
		return 0
	}
	if err := s.store.ApplyBatch(keys, objs); err == nil {
		return len(keys)
	}
	n := 0
	for i := range keys {
		if _, _, err := s.store.Apply(keys[i], objs[i]); err != nil {
			s.o.Logf("antientropy: merging %q: %v", keys[i], err)
			continue
		}
		n++
	}
	return n
}

// putBytes bounds the objects of one KindPut request.
const putBytes = 4 << 20

// push sends this node's version of keys to peer.
func (s *Service) push(peer string, keys []string) error {
	var msg []byte
	count := 0
	flush := func() error {
		if count == 0 {
			return nil
		}
		payload := append(binary.AppendUvarint(nil, uint64(count)), msg...)
		if _, err := s.call(peer, KindPut, payload); err != nil {
			return fmt.Errorf("put %d keys: %w", count, err)
		}
		s.mu.Lock()
		s.st.KeysPushed += uint64(count)
		s.mu.Unlock()
		msg, count = msg[:0], 0
		return nil
	}
	for _, k := range keys {
		obj, err := s.store.Get([]byte(k))
		if err != nil {
			return err
		}
		if obj == nil {
			continue
		}
		enc := obj.Encode(nil)
		if count > 0 && len(msg)+len(enc)+len(k) > putBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		msg = appendBytes(appendBytes(msg, []byte(k)), enc)
		count++
	}
	return flush()
}

func isTooMany(err error) bool {
	var re *transport.RemoteError
	return errors.As(err, &re) && strings.Contains(re.Message, errTooMany.Error())
}

// call sends one message to peer, counts its bytes and pays for them
// against the I/O budget.
func (s *Service) call(peer string, kind uint8, payload []byte) ([]byte, error) {
	addr, ok := s.peers.Addr(peer)
	if !ok {
		return nil, fmt.Errorf("node %s has no known address", peer)
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.o.Timeout)
	defer cancel()
	reply, err := s.tr.Call(ctx, addr, kind, payload)
	s.spend(len(payload), len(reply))
	return reply, err
}

// spend accounts for bytes exchanged and sleeps once the budget is owed
// more than 20 ms.
func (s *Service) spend(sent, received int) {
	s.mu.Lock()
	s.st.BytesSent += uint64(sent)
	s.st.BytesReceived += uint64(received)
	var sleep time.Duration
	if s.o.Rate > 0 {
		s.debt += time.Duration(float64(sent+received) / float64(s.o.Rate) * float64(time.Second))
		if s.debt > 20*time.Millisecond {
			sleep, s.debt = s.debt, 0
		}
	}
	s.mu.Unlock()
	if sleep > 0 {
		select {
		case <-time.After(sleep):
		case <-s.ctx.Done():
		}
	}
}

// Handle serves the exchange's peer messages (the kinds Owns reports).
func (s *Service) Handle(ctx context.Context, from string, kind uint8, payload []byte) ([]byte, error) {
	q := s.trees.Partitions()
	switch kind {
	case KindRoots:
		parts, rest, err := readUvarints(payload, q)
		if err != nil || len(rest) != 0 {
			return nil, errMalformed
		}
		reply := make([]byte, 0, 9*len(parts)+8)
		for _, p := range parts {
			root, ok := s.trees.Root(p)
			reply = append(reply, trustedByte(ok))
			reply = binary.BigEndian.AppendUint64(reply, root)
		}
		return binary.BigEndian.AppendUint64(reply, s.store.Incarnation()), nil
	case KindLeaves:
		p, w := binary.Uvarint(payload)
		if w <= 0 || w != len(payload) || p >= uint64(q) {
			return nil, errMalformed
		}
		leaves, ok := s.trees.LeafHashes(int(p))
		if !ok {
			return []byte{0}, nil
		}
		reply := make([]byte, 1, 1+8*Leaves)
		reply[0] = 1
		for _, h := range leaves {
			reply = binary.BigEndian.AppendUint64(reply, h)
		}
		return reply, nil
	case KindKeys:
		p, w := binary.Uvarint(payload)
		if w <= 0 || p >= uint64(q) {
			return nil, errMalformed
		}
		leaves, rest, err := readUvarints(payload[w:], Leaves)
		if err != nil || len(rest) != 0 {
			return nil, errMalformed
		}
		return s.keysReply(int(p), leaves)
	case KindGet:
		keys, err := decodeKeys(payload)
		if err != nil {
			return nil, err
		}
		var reply []byte
		for _, k := range keys {
			obj, err := s.store.Get(k)
			if err != nil {
				return nil, err
			}
			var enc []byte
			if obj != nil {
				enc = obj.Encode(nil)
			}
			if reply = appendBytes(reply, enc); len(reply) > maxReplyBytes {
				return nil, errTooMany
			}
		}
		return reply, nil
	case KindPut:
		keys, objs, err := decodePut(payload)
		if err != nil {
			return nil, err
		}
		keys, objs, err = s.withoutPurged(keys, objs)
		if err != nil {
			return nil, err
		}
		n := s.apply(keys, objs)
		if n < len(keys) {
			return nil, fmt.Errorf("antientropy: merged %d of %d keys", n, len(keys))
		}
		return nil, nil
	}
	return nil, fmt.Errorf("antientropy: unknown message kind %d", kind)
}

// withoutPurged drops from a KindPut the tombstones this node purged
// recently and does not hold again.
func (s *Service) withoutPurged(keys [][]byte, objs []*version.Object) ([][]byte, []*version.Object, error) {
	s.mu.Lock()
	none := len(s.purged) == 0
	s.mu.Unlock()
	if none {
		return keys, objs, nil
	}
	var ks [][]byte
	var os []*version.Object
	for i, k := range keys {
		if s.wasPurged(string(k), replica.ObjectHash(k, objs[i].Encode(nil))) {
			cur, err := s.store.Get(k)
			if err != nil {
				return nil, nil, err
			}
			if cur == nil {
				continue
			}
		}
		ks, os = append(ks, k), append(os, objs[i])
	}
	return ks, os, nil
}

// keysReply lists the keys and hashes stored in leaves of partition p.
func (s *Service) keysReply(p int, leaves []int) ([]byte, error) {
	var body []byte
	count := 0
	for _, l := range leaves {
		first, last := s.trees.LeafRange(p, l)
		var tooMany bool
		err := s.store.ScanHashes(first, last, func(kh replica.KeyHash) bool {
			body = appendBytes(body, kh.Key)
			body = binary.BigEndian.AppendUint64(body, kh.Hash)
			count++
			tooMany = len(body) > maxReplyBytes
			return !tooMany
		})
		if err != nil {
			return nil, err
		}
		if tooMany {
			return nil, errTooMany
		}
	}
	return append(binary.AppendUvarint(nil, uint64(count)), body...), nil
}

func trustedByte(ok bool) byte {
	if ok {
		return 1
	}
	return 0
}

// LostRange tells the service that the store lost what it held in an
// engine key range (the engine quarantined a damaged table: see
// storage.Options.OnQuarantine): the trees of the partitions it covers
// are distrusted, so that they are rebuilt from what the store still
// holds, and a round starts at once to get the range back from the other
// replicas.
func (s *Service) LostRange(smallest, largest []byte) {
	first, last, ok := replica.TokenSpan(smallest, largest)
	if !ok {
		return
	}
	for p := s.trees.Partition(first); p <= s.trees.Partition(last); p++ {
		s.trees.Distrust(p)
	}
	s.o.Logf("antientropy: the store lost tokens %016x-%016x (partitions %d-%d); repairing them from the other replicas",
		first, last, s.trees.Partition(first), s.trees.Partition(last))
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
