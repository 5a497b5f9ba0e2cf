package resp

import (
	"bytes"
	"slices"
	"sync/atomic"
	"time"
)

// Pipelined execution.
//
// A Backend call can be slow: a write waits for the commit log's fsync and a
// read in a cluster waits for a network round trip. Executing one
// connection's pipelined commands one after another would make a pipeline of
// n commands cost n of those waits, and would give the storage engine's group
// commit only one write per connection to batch. So the commands of a
// pipeline run concurrently, while what the client can observe stays as in
// Redis:
//
//   - Replies go out in command order: a command that runs concurrently
//     encodes its reply into its own buffer (its slot), and the connection's
//     goroutine copies finished slots to the connection strictly in order.
//   - Commands on the same key take effect in order: a command waits for the
//     previous in-flight command of the connection that touches any of its
//     keys (c.p.keys maps a key to the last such command).
//   - Only commands marked pipelined (plain key reads and writes, PING,
//     ECHO; at most maxPipelinedArgs arguments) run concurrently. Everything
//     else — connection state (AUTH, HELLO, SELECT, CLIENT, QUIT, RESET),
//     server-wide commands, unknown commands and any command answered with
//     an error before it runs (NOAUTH, arity, oversized arguments) — is a
//     barrier: it waits until everything before
//     it has finished and its reply is written, then runs alone on the
//     connection's goroutine. So a command after AUTH or HELLO sees their
//     effect, and connection state is only ever touched by that goroutine.
//   - At most maxInFlight commands (and maxInFlightBytes of their arguments)
//     are in flight per connection. When the window is full the connection's
//     goroutine waits for the oldest command and writes its reply before it
//     decodes another, and writing blocks when the client does not read: a
//     client that pipelines without reading is slowed down (TCP backpressure)
//     instead of making the server buffer its replies.
//   - Before the reader blocks for more input, everything in flight is
//     finished and the replies flushed (beforeBlock); the client may be
//     waiting for them before it sends anything else.
//
// Runs of plain SETs (SET key value) go to the Backend as one batch when it
// implements SetBatcher: a pipeline of SETs then costs one slot, one
// goroutine hand-off and one Backend call (one commit-log write) instead of
// one of each per SET. Runs of plain GETs (GET key) do the same through
// GetBatcher, but only while GETs are not quick (in a cluster, where a GET
// waits for other replicas and a batch asks each of them once). The
// commands of a run are held back (in p.run) until the run ends: at a
// command of another kind, at the end of the buffered input, or at
// maxSetBatch commands or maxSetBatchBytes of arguments. The batch is then
// one slot, ordered after the earlier commands on its keys and before the
// later ones, with the replies of its commands in order.
//
// A lone command (no further input buffered, nothing in flight) takes the
// old path: it runs on the connection's goroutine and writes straight into
// the connection's buffer, with no goroutine, channel or copy. The last
// command of a batch also runs on the connection's goroutine (into its slot,
// after the commands it depends on), since that goroutine would otherwise
// only wait. So does a command that usually takes less than inlineBelow
// (an in-memory read, say) and has nothing to wait for: starting a goroutine
// and handing its reply back costs more than running it, and with a fast
// Backend a pipeline then runs as it did before pipelined execution.
const (
	// maxInFlight bounds the commands of one connection in flight: enough to
	// cover the pipelines clients use (redis-benchmark -P 16, go-redis
	// pipelines of tens of commands) and to feed group commit, small enough
	// that a connection cannot claim a large share of the Backend.
	maxInFlight = 32
	// maxInFlightBytes bounds the argument bytes held by commands in flight,
	// so that a pipeline of large values (up to MaxRequestSize each) does not
	// hold maxInFlight of them. A single bigger command still runs, alone.
	maxInFlightBytes = 8 << 20
	// keepReplyBuf is the largest reply buffer a slot keeps for reuse; a
	// bigger one (a big MGET) is left to the garbage collector.
	keepReplyBuf = 16 << 10
	// maxPipelinedArgs: a command with more arguments (a long MGET, DEL or
	// MSET) runs as a barrier, so that tracking keys in flight stays cheap
	// and bounded (at most maxInFlight*max(maxPipelinedArgs, maxSetBatch) keys).
	maxPipelinedArgs = 33
	// inlineBelow: a command whose average execution time is below this runs
	// inline. A few microseconds is what a goroutine start and hand-off cost;
	// a commit-log fsync or a network round trip is far above.
	inlineBelow = 10 * time.Microsecond
	// maxSetBatch and maxSetBatchBytes bound one batch of SETs, so that the
	// first SET of a long pipeline does not wait for the last to be read.
	maxSetBatch      = 64
	maxSetBatchBytes = 1 << 20
	// unknownReplyWindow bounds the commands in flight before the first
	// reply of the connection has finished (its size is unknown until
	// then): a first pipeline of GETs of large values must not put
	// maxInFlight batches of them in flight.
	unknownReplyWindow = 2
	// unknownGetBatch bounds a batch of GETs before the connection's GET
	// replies have told their size.
	unknownGetBatch = 16
)

// slot is one command executing concurrently with others of its pipeline.
type slot struct {
	cmd  *command
	args [][]byte
	// keys (and values, for SETs) hold a batch of SETs or GETs (cmd is SET
	// or GET, args is empty); empty for any other command.
	keys, values [][]byte
	size         int // argument bytes, counted in inFlightBytes
	rw           replyWriter
	buf          bytes.Buffer // the reply, copied to the connection when the slot retires
	// deps are the done channels of the earlier in-flight commands that share
	// a key with this one; it runs after they have finished.
	deps []chan struct{}
	// done is closed when the command has finished and its reply is in buf;
	// a fresh channel per command since a closed one cannot be reopened.
	done chan struct{}
	// viaWorker is set while the command is with the connection's workers.
	viaWorker bool
	// tracked is set while the command's keys are in pipeline.keys (it
	// did not run to its end on the connection's goroutine).
	tracked bool
	// panicked holds the value of a panic in the command; the connection's
	// goroutine re-raises it when the slot retires, which closes the
	// connection as a panic on that goroutine always did.
	panicked any
}

// pipeline is a connection's commands in flight, oldest first.
type pipeline struct {
	ring          [maxInFlight]*slot
	head, n       int
	inFlightBytes int
	// replyBytes is the size of the replies of commands that finished and
	// are not yet retired (written to the connection), bounded by
	// Options.MaxOutputBuffer. Workers add to it; the connection's
	// goroutine subtracts.
	replyBytes atomic.Int64
	// replyEst and getEst estimate the reply of one slot and of one GET
	// (the larger of the last one and a decaying past maximum), so that
	// the replies of the commands still running count against
	// MaxOutputBuffer before they exist, and a batch of GETs of large
	// values stays small. Workers update them; racy updates only blur an
	// estimate.
	replyEst, getEst atomic.Int64
	// keys maps each key of a command in flight to the newest such command
	// (commands run to their end as they start are left out: none waits).
	keys map[string]*slot
	free []*slot
	// Commands that do not run inline go to this connection's workers:
	// reused goroutines, because a fresh goroutine per command spends a
	// good part of its time growing its stack. There are always at least
	// as many workers as commands handed to them and not yet retired, so
	// no command waits for a worker behind one blocked on an earlier
	// command.
	jobs      chan *slot
	workers   int
	submitted int
	// run is the run of plain SETs or GETs (cmd) decoded but not yet
	// dispatched; values is nil for GETs.
	run struct {
		cmd          *command
		keys, values [][]byte
		size         int
	}
}

// pipelinable reports whether req may run concurrently with its neighbours:
// a pipelined command that will actually run (no error answered up front),
// on a connection that may run it.
func (c *conn) pipelinable(req *request, cmd *command) bool {
	return cmd != nil && cmd.pipelined && !req.Oversize && c.authed &&
		cmd.arityOK(req.Args) && len(req.Args) <= maxPipelinedArgs
}

// handle executes one decoded request: inline, concurrently, or as a barrier.
func (c *conn) handle(req *request) {
	cmd := c.lookup(req.Args)
	if !c.pipelinable(req, cmd) {
		c.drain()
		c.exec(req, cmd)
		return
	}
	last := c.rd.Buffered() == 0 // nothing more decodable without reading
	quick := cmd.avgNanos.Load() < int64(inlineBelow) && !c.s.alwaysConcurrent.Load()
	if c.batchable(cmd, req.Args, quick) && !(last && c.p.n == 0 && len(c.p.run.keys) == 0) {
		if c.p.run.cmd != cmd {
			c.flushRun(false) // a run holds one kind of command
		}
		var value []byte
		if len(req.Args) > 2 {
			value = req.Args[2]
		}
		c.addToRun(cmd, req.Args[1], value, last)
		return
	}
	c.flushRun(false)
	if (last || quick) && c.p.n == 0 {
		c.exec(req, cmd) // as fast as without pipelining
		return
	}
	c.dispatch(cmd, req.Args, last, quick)
}

// forEachKey calls f with each key argument of a (pipelined) command.
func forEachKey(cmd *command, args [][]byte, f func(k []byte)) {
	if cmd.firstKey <= 0 {
		return
	}
	last := cmd.lastKey
	if last < 0 {
		last = len(args) + last
	}
	for i := cmd.firstKey; i <= last && i < len(args); i += cmd.step {
		f(args[i])
	}
}

// dispatch starts a pipelined command. It runs on the calling (connection's)
// goroutine instead of a new one if inline, or if quick and it need not wait
// for an earlier command.
func (c *conn) dispatch(cmd *command, args [][]byte, inline, quick bool) {
	size := 0
	for _, a := range args {
		size += len(a)
	}
	s := c.newSlot(size, cmd)
	s.cmd = cmd
	s.args = append(s.args[:0], args...) // the reader reuses its Args slice
	c.start(s, inline, quick)
}

// batchable reports whether a command joins a run that goes to the
// Backend as one batch: a plain SET (SET key value) when the Backend is a
// SetBatcher, and a plain GET (GET key) when it is a GetBatcher and GETs
// are not quick (a cluster's GETs wait for other replicas; a local GET is
// cheaper run inline than held back).
func (c *conn) batchable(cmd *command, args [][]byte, quick bool) bool {
	switch cmd {
	case c.s.setCmd:
		return len(args) == 3 && c.s.setBatcher != nil
	case c.s.getCmd:
		return len(args) == 2 && c.s.getBatcher != nil && !quick
	}
	return false
}

// addToRun holds back one command of a run (see the top of this file),
// dispatching the run when it is complete or full.
func (c *conn) addToRun(cmd *command, key, value []byte, last bool) {
	run := &c.p.run
	run.cmd = cmd
	run.keys = append(run.keys, key)
	run.values = append(run.values, value)
	run.size += len(key) + len(value)
	full := len(run.keys) >= maxSetBatch || run.size >= maxSetBatchBytes
	if cmd == c.s.getCmd {
		// The replies of a batch of GETs of large values stay about
		// maxSetBatchBytes; before their size is known, batches are short.
		est := c.p.getEst.Load()
		full = full || est == 0 && len(run.keys) >= unknownGetBatch ||
			int64(len(run.keys))*est >= maxSetBatchBytes
	}
	if last || full {
		c.flushRun(last)
	}
}

// setName and getName are args[0] of a command dispatched alone from a run
// of one.
var setName, getName = []byte("SET"), []byte("GET")

// flushRun dispatches the run held back, if any: one command as the
// command it is, more as one batch slot.
func (c *conn) flushRun(inline bool) {
	run := &c.p.run
	switch {
	case len(run.keys) == 0:
		return
	case len(run.keys) == 1 && run.cmd == c.s.setCmd:
		c.dispatch(run.cmd, [][]byte{setName, run.keys[0], run.values[0]}, inline, false)
	case len(run.keys) == 1:
		c.dispatch(run.cmd, [][]byte{getName, run.keys[0]}, inline, false)
	default:
		s := c.newSlot(run.size, run.cmd)
		s.cmd = run.cmd
		s.args = s.args[:0]
		s.keys = append(s.keys[:0], run.keys...)
		s.values = append(s.values[:0], run.values...)
		c.start(s, inline, false)
	}
	clear(run.keys)
	clear(run.values)
	run.cmd, run.keys, run.values, run.size = nil, run.keys[:0], run.values[:0], 0
}

// newSlot waits until a command of size argument bytes may be in flight and
// returns a free slot for it.
func (c *conn) newSlot(size int, cmd *command) *slot {
	p := &c.p
	// Wait for room: this is the backpressure that bounds the memory a
	// connection holds however deep the client pipelines.
	// Replies waiting to be written count too: a client that never reads
	// them stops being read from once they pass MaxOutputBuffer (and its
	// writes time out after WriteTimeout).
	// Until a reply has told how large this connection's replies are, at
	// most unknownReplyWindow reads (whose replies may be large) are in
	// flight.
	read := cmd == c.s.getCmd || slices.Contains(cmd.flags, "readonly")
	for p.n == maxInFlight || p.n > 0 && (p.inFlightBytes+size > maxInFlightBytes ||
		read && p.n >= unknownReplyWindow && p.replyEst.Load() == 0 ||
		p.replyBytes.Load()+int64(p.n)*p.replyEst.Load() > int64(c.s.opt.MaxOutputBuffer)) {
		c.retire()
	}
	var s *slot
	if k := len(p.free); k > 0 {
		s, p.free = p.free[k-1], p.free[:k-1]
	} else {
		s = new(slot)
	}
	s.size = size
	return s
}

// start puts a slot filled in by dispatch or flushRun in flight: after the
// commands in flight on its keys, on this goroutine or a worker.
func (c *conn) start(s *slot, inline, quick bool) {
	p := &c.p
	s.rw = replyWriter{w: &s.buf, proto: c.rw.proto} // proto only changes in barriers
	s.done = make(chan struct{})
	if len(p.keys) > 0 {
		s.eachKey(func(k []byte) {
			if prev := p.keys[string(k)]; prev != nil {
				s.addDep(prev.done)
			}
		})
	}
	p.ring[(p.head+p.n)%maxInFlight] = s
	p.n++
	p.inFlightBytes += s.size
	c.s.notePipeline(p.n)
	if inline || quick && len(s.deps) == 0 {
		// It runs to its end here, before any later command starts: none
		// will have to wait for it, so its keys are not tracked.
		s.run(c)
		return
	}
	if p.keys == nil {
		p.keys = make(map[string]*slot)
	}
	s.eachKey(func(k []byte) { p.keys[string(k)] = s })
	s.tracked = true
	c.submit(s)
}

// eachKey calls f with each key of the slot's command or batch.
func (s *slot) eachKey(f func(k []byte)) {
	if len(s.keys) > 0 {
		for _, k := range s.keys {
			f(k)
		}
		return
	}
	forEachKey(s.cmd, s.args, f)
}

// submit hands a command to the connection's workers, starting one if every
// worker may be busy.
func (c *conn) submit(s *slot) {
	p := &c.p
	if p.jobs == nil {
		p.jobs = make(chan *slot, maxInFlight)
	}
	s.viaWorker = true
	p.submitted++
	if p.workers < p.submitted {
		p.workers++
		go c.work(p.jobs)
	}
	p.jobs <- s
}

func (c *conn) work(jobs <-chan *slot) {
	for s := range jobs {
		s.run(c)
	}
}

// stopWorkers ends the connection's workers once nothing is in flight.
func (c *conn) stopWorkers() {
	if c.p.jobs != nil {
		close(c.p.jobs)
		c.p.jobs = nil
	}
}

func (s *slot) addDep(d chan struct{}) {
	for _, x := range s.deps {
		if x == d {
			return // at most maxInFlight distinct deps, however many keys
		}
	}
	s.deps = append(s.deps, d)
}

func (s *slot) run(c *conn) {
	defer close(s.done)
	defer func() {
		n := int64(s.buf.Len())
		c.p.replyBytes.Add(n)
		noteEstimate(&c.p.replyEst, n)
		if len(s.keys) > 0 && s.cmd == c.s.getCmd {
			noteEstimate(&c.p.getEst, n/int64(len(s.keys)))
		}
	}()
	for _, d := range s.deps {
		<-d
	}
	defer func() {
		if r := recover(); r != nil {
			s.panicked = r
		}
	}()
	switch {
	case len(s.keys) > 0 && s.cmd == c.s.setCmd:
		c.callSets(&s.rw, s.keys, s.values)
	case len(s.keys) > 0:
		c.callGets(&s.rw, s.keys)
	default:
		c.call(s.cmd, &s.rw, s.args)
	}
}

// noteEstimate folds a reply size into an estimate: the larger of the
// size and the old estimate less an eighth.
func noteEstimate(est *atomic.Int64, n int64) {
	old := est.Load()
	est.Store(max(n, old-old/8))
}

// retire waits for the oldest command in flight to finish and writes its
// reply to the connection.
func (c *conn) retire() {
	p := &c.p
	s := p.ring[p.head]
	<-s.done
	p.ring[p.head] = nil
	p.head = (p.head + 1) % maxInFlight
	p.n--
	p.inFlightBytes -= s.size
	if s.viaWorker {
		p.submitted--
		s.viaWorker = false
	}
	if s.tracked {
		s.eachKey(func(k []byte) {
			if p.keys[string(k)] == s {
				delete(p.keys, string(k)) // no newer command in flight on k
			}
		})
		s.tracked = false
	}
	if s.panicked != nil {
		panic(s.panicked)
	}
	p.replyBytes.Add(-int64(s.buf.Len()))
	c.bw.Write(s.buf.Bytes()) // a failure is sticky; serve notices
	s.cmd = nil
	clear(s.args) // do not keep the arguments alive
	clear(s.keys)
	clear(s.values)
	s.keys, s.values = s.keys[:0], s.values[:0]
	s.deps = s.deps[:0]
	s.done = nil
	if s.buf.Cap() > keepReplyBuf {
		s.buf = bytes.Buffer{}
	} else {
		s.buf.Reset()
	}
	p.free = append(p.free, s)
}

// drain finishes every command in flight (and the SETs held back), writing
// their replies in order.
func (c *conn) drain() {
	c.flushRun(true)
	for c.p.n > 0 {
		c.retire()
	}
}

// abandon waits for the commands still in flight without writing their
// replies: the connection is being torn down after a panic or a write error.
// It keeps Server.Close's promise that no command runs after it returns.
func (c *conn) abandon() {
	p := &c.p
	clear(p.run.keys) // held back, never started: dropped with the connection
	clear(p.run.values)
	p.run.cmd, p.run.keys, p.run.values = nil, nil, nil
	for ; p.n > 0; p.n-- {
		<-p.ring[p.head].done
		p.head = (p.head + 1) % maxInFlight
	}
}

// notePipeline records the high-water mark of commands in flight on one
// connection, which tests use to check the bound holds.
func (s *Server) notePipeline(n int) {
	for {
		old := s.peakInFlight.Load()
		if int64(n) <= old || s.peakInFlight.CompareAndSwap(old, int64(n)) {
			return
		}
	}
}
