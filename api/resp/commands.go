package resp

import (
	"bytes"
	"context"
	"crypto/subtle"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// compatVersion is the Redis version whose protocol behaviour the server
// follows; it is what HELLO and INFO report as the version.
const compatVersion = "7.0.0"

type command struct {
	name string // lower case
	// arity as Redis counts it, the name included: n > 0 exactly n
	// arguments, n < 0 at least -n.
	arity                   int
	flags                   []string
	firstKey, lastKey, step int
	noAuth                  bool // allowed before AUTH
	// pipelined: the command touches no connection state, only its keys
	// (firstKey, lastKey, step; none for PING and ECHO), so commands of one
	// pipeline may run it concurrently with commands on other keys. Every
	// other command is a barrier there. See pipeline.go.
	pipelined bool
	// avgNanos is a moving average of the command's execution time across
	// the server; a pipelined command that is usually quicker than handing
	// it to another goroutine runs inline (see pipeline.go).
	avgNanos atomic.Int64
	fn       func(c *conn, rw *replyWriter, args [][]byte)
	stats    cmdStats
}

type cmdStats struct {
	calls, errors, usec atomic.Uint64
}

func newCommandTable() map[string]*command {
	list := []*command{
		{name: "ping", arity: -1, flags: []string{"fast"}, pipelined: true, fn: cmdPing},
		{name: "echo", arity: 2, flags: []string{"fast"}, pipelined: true, fn: cmdEcho},
		{name: "get", arity: 2, flags: []string{"readonly", "fast"}, firstKey: 1, lastKey: 1, step: 1, pipelined: true, fn: cmdGet},
		{name: "set", arity: -3, flags: []string{"write", "denyoom"}, firstKey: 1, lastKey: 1, step: 1, pipelined: true, fn: cmdSet},
		{name: "del", arity: -2, flags: []string{"write"}, firstKey: 1, lastKey: -1, step: 1, pipelined: true, fn: cmdDel},
		{name: "unlink", arity: -2, flags: []string{"write", "fast"}, firstKey: 1, lastKey: -1, step: 1, pipelined: true, fn: cmdDel},
		{name: "exists", arity: -2, flags: []string{"readonly", "fast"}, firstKey: 1, lastKey: -1, step: 1, pipelined: true, fn: cmdExists},
		{name: "mget", arity: -2, flags: []string{"readonly", "fast"}, firstKey: 1, lastKey: -1, step: 1, pipelined: true, fn: cmdMGet},
		{name: "mset", arity: -3, flags: []string{"write", "denyoom"}, firstKey: 1, lastKey: -1, step: 2, pipelined: true, fn: cmdMSet},
		{name: "info", arity: -1, flags: []string{"loading", "stale"}, fn: cmdInfo},
		{name: "dbsize", arity: 1, flags: []string{"readonly", "fast"}, fn: cmdDBSize},
		{name: "select", arity: 2, flags: []string{"loading", "stale", "fast"}, fn: cmdSelect},
		{name: "quit", arity: -1, flags: []string{"noscript", "loading", "stale", "fast", "no_auth"}, noAuth: true, fn: cmdQuit},
		{name: "reset", arity: 1, flags: []string{"noscript", "loading", "stale", "fast", "no_auth"}, noAuth: true, fn: cmdReset},
		{name: "auth", arity: -2, flags: []string{"noscript", "loading", "stale", "fast", "no_auth"}, noAuth: true, fn: cmdAuth},
		{name: "hello", arity: -1, flags: []string{"noscript", "loading", "stale", "fast", "no_auth"}, noAuth: true, fn: cmdHello},
		{name: "command", arity: -1, flags: []string{"loading", "stale"}, fn: cmdCommand},
		{name: "client", arity: -2, flags: []string{"loading", "stale"}, fn: cmdClient},
		{name: "config", arity: -2, flags: []string{"admin", "loading", "stale"}, fn: cmdConfig},
		{name: "ringkv.siblings", arity: 2, flags: []string{"readonly"}, firstKey: 1, lastKey: 1, step: 1, pipelined: true, fn: cmdSiblings},
		{name: "ringkv.config", arity: -3, flags: []string{"loading", "stale", "fast"}, fn: cmdRingkvConfig},
		{name: "ringkv.put", arity: 4, flags: []string{"write", "denyoom"}, firstKey: 1, lastKey: 1, step: 1, pipelined: true, fn: cmdPut},
	}
	m := make(map[string]*command, len(list))
	for _, c := range list {
		m[c.name] = c
	}
	return m
}

// lookup finds the command named by args[0], case-insensitively; nil if unknown.
func (c *conn) lookup(args [][]byte) *command {
	name := args[0]
	// The commands that carry the load, without the table's hashing.
	if len(name) == 3 {
		switch string(name) {
		case "GET", "get":
			return c.s.getCmd
		case "SET", "set":
			return c.s.setCmd
		}
	}
	var lower [32]byte
	if len(name) > len(lower) {
		return nil // no command name is that long
	}
	for i, ch := range name {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		lower[i] = ch
	}
	return c.s.cmds[string(lower[:len(name)])]
}

// exec runs one request on the connection's goroutine and writes its reply
// into c.bw. The caller has made sure no command of this connection is in
// flight (see pipeline.go), so cmd may read and change connection state.
func (c *conn) exec(req *request, cmd *command) {
	args := req.Args
	if cmd == nil && !req.Oversize && (is(args[0], "post") || is(args[0], "host:")) {
		// An HTTP request sent to the Redis port: cross-protocol scripting
		// attempt. Close without answering, as Redis does.
		c.s.opt.Logf("resp: client %d (%v) sent an HTTP request; closing", c.id, c.nc.RemoteAddr())
		c.quit = true
		return
	}
	rw := &c.rw
	start := monoNow()
	errsBefore := rw.errs
	ran := false
	switch {
	case req.Oversize:
		if req.OversizeLen > int64(c.s.opt.MaxValueSize) {
			rw.Error(fmt.Sprintf("ERR value too large: argument %d has %d bytes, the limit is %d bytes",
				req.OversizeIndex, req.OversizeLen, c.s.opt.MaxValueSize))
		} else {
			rw.Error(fmt.Sprintf("ERR request too large: its arguments exceed %d bytes in total", c.s.opt.MaxRequestSize))
		}
	case cmd == nil:
		rw.Error(unknownCommand(args))
	case !c.authed && !cmd.noAuth:
		rw.Error("NOAUTH Authentication required.")
	case !cmd.arityOK(args):
		rw.Error(wrongArgs(cmd.name))
	default:
		c.last.Store(cmd)
		cmd.fn(c, rw, args)
		ran = true
	}
	end := monoNow()
	if ran {
		cmd.noteDuration(end - start)
	}
	c.record(cmd, start, end, rw.errs != errsBefore)
}

// call runs a command already known to be valid (known, authorised, right
// arity) with its reply going to rw. It is what pipelined commands run,
// possibly on another goroutine, so it touches only thread-safe connection
// state.
func (c *conn) call(cmd *command, rw *replyWriter, args [][]byte) {
	start := monoNow()
	errsBefore := rw.errs
	c.last.Store(cmd)
	cmd.fn(c, rw, args)
	end := monoNow()
	cmd.noteDuration(end - start)
	c.record(cmd, start, end, rw.errs != errsBefore)
}

// callSets runs a batch of plain SETs (see pipeline.go) through the
// Backend's SetBatcher, with one reply per SET going to rw in order.
func (c *conn) callSets(rw *replyWriter, keys, values [][]byte) {
	start := monoNow()
	c.last.Store(c.s.setCmd)
	errs := c.s.setBatcher.SetBatch(c.ctx, keys, values)
	if len(errs) != len(keys) {
		errs = backendBug(len(errs), len(keys))
	}
	for _, err := range errs {
		if err != nil {
			rw.backendError(err)
		} else {
			rw.OK()
		}
	}
	c.recordRun(c.s.setCmd, start, errs)
}

// callGets runs a batch of plain GETs through the Backend's GetBatcher, with
// one reply per GET going to rw in order.
func (c *conn) callGets(rw *replyWriter, keys [][]byte) {
	start := monoNow()
	c.last.Store(c.s.getCmd)
	values, found, errs := c.s.getBatcher.GetBatch(c.ctx, keys)
	if errs == nil {
		errs = make([]error, len(keys))
	}
	if len(values) != len(keys) || len(found) != len(keys) || len(errs) != len(keys) {
		errs = backendBug(len(values), len(keys))
	}
	for i, err := range errs {
		switch {
		case err != nil:
			rw.backendError(err)
		case found[i]:
			rw.Bulk(values[i])
		default:
			rw.Null()
		}
	}
	c.recordRun(c.s.getCmd, start, errs)
}

// backendBug is the error of every command of a batch whose Backend
// answered with the wrong number of results: claim nothing about them.
func backendBug(got, want int) []error {
	bad := fmt.Errorf("backend returned %d results for %d commands", got, want)
	errs := make([]error, want)
	for i := range errs {
		errs[i] = bad
	}
	return errs
}

// recordRun updates the statistics after a batch of cmd that started at
// start, one error per command. Each command counts as one call taking an
// equal share of the batch's time; the whole batch's time feeds the average
// that decides whether the command runs inline (a batch that waited for an
// fsync or another replica must not make a lone command look quick).
func (c *conn) recordRun(cmd *command, start time.Duration, errs []error) {
	end := monoNow()
	each := (end - start) / time.Duration(len(errs))
	cmd.noteDuration(end - start)
	failed := 0
	for _, err := range errs {
		bad := err != nil
		if bad {
			failed++
		}
		if c.s.opt.OnCommand != nil {
			c.s.opt.OnCommand(cmd.name, each, bad)
		}
	}
	st := &cmd.stats
	st.calls.Add(uint64(len(errs)))
	st.usec.Add(uint64((end - start) / time.Microsecond))
	st.errors.Add(uint64(failed))
	c.s.totalCommands.Add(uint64(len(errs)))
	c.lastAt.Store(int64(end))
}

// clockBase is the origin of monoNow.
var clockBase = time.Now()

// monoNow reads the monotonic clock as the time since clockBase: one clock
// read, where time.Now takes two (wall and monotonic). Command timing uses
// it twice per command.
func monoNow() time.Duration { return time.Since(clockBase) }

// noteDuration folds one execution time into cmd.avgNanos (weight 1/8).
// Concurrent updates may lose one another's sample; it is only a hint.
func (cmd *command) noteDuration(d time.Duration) {
	if cmd.pipelined {
		old := cmd.avgNanos.Load()
		cmd.avgNanos.Store(old + (int64(d)-old)/8)
	}
}

func (cmd *command) arityOK(args [][]byte) bool {
	return cmd.arity > 0 && len(args) == cmd.arity || cmd.arity < 0 && len(args) >= -cmd.arity
}

// record updates the statistics after a command (cmd nil: unknown command)
// that ran from start to end (monoNow readings). Safe for concurrent use.
func (c *conn) record(cmd *command, start, end time.Duration, failed bool) {
	d := end - start
	st := &c.s.unknown
	stName := "unknown"
	if cmd != nil {
		st = &cmd.stats
		stName = cmd.name
	}
	st.calls.Add(1)
	st.usec.Add(uint64(d / time.Microsecond))
	if failed {
		st.errors.Add(1)
	}
	c.s.totalCommands.Add(1)
	c.lastAt.Store(int64(end))
	if c.s.opt.OnCommand != nil {
		c.s.opt.OnCommand(stName, d, failed)
	}
}

func wrongArgs(name string) string {
	return "ERR wrong number of arguments for '" + name + "' command"
}

// unknownCommand builds Redis' message for an unknown command.
func unknownCommand(args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.Write(truncate(args[0], 128))
	b.WriteString("', with args beginning with: ")
	for _, a := range args[1:] {
		if b.Len() > 256 {
			break
		}
		b.WriteByte('\'')
		b.Write(truncate(a, 128))
		b.WriteString("' ")
	}
	return b.String()
}

func unknownSubcommand(sub []byte, cmd string) string {
	return "ERR unknown subcommand '" + string(truncate(sub, 128)) + "'. Try " + cmd + " HELP."
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func is(arg []byte, word string) bool { return strings.EqualFold(string(arg), word) }

func (rw *replyWriter) backendError(err error) { rw.Error(errorReply(err)) }

func cmdPing(c *conn, rw *replyWriter, args [][]byte) {
	switch len(args) {
	case 1:
		rw.Simple("PONG")
	case 2:
		rw.Bulk(args[1])
	default:
		rw.Error(wrongArgs("ping"))
	}
}

func cmdEcho(c *conn, rw *replyWriter, args [][]byte) { rw.Bulk(args[1]) }

func cmdGet(c *conn, rw *replyWriter, args [][]byte) {
	v, found, err := c.s.b.Get(c.ctx, args[1])
	switch {
	case err != nil:
		rw.backendError(err)
	case !found:
		rw.Null()
	default:
		rw.Bulk(v)
	}
}

const errExpiry = "ERR ringkv does not support key expiry"

func cmdSet(c *conn, rw *replyWriter, args [][]byte) {
	var nx, xx, get bool
	for _, a := range args[3:] {
		switch {
		case is(a, "NX"):
			nx = true
		case is(a, "XX"):
			xx = true
		case is(a, "GET"):
			get = true
		case is(a, "EX"), is(a, "PX"), is(a, "EXAT"), is(a, "PXAT"), is(a, "KEEPTTL"):
			rw.Error(errExpiry)
			return
		default:
			rw.Error("ERR syntax error")
			return
		}
	}
	if nx && xx {
		rw.Error("ERR syntax error")
		return
	}
	key, val := args[1], args[2]
	var old []byte
	var found bool
	if nx || xx || get {
		var err error
		if old, found, err = c.s.b.Get(c.ctx, key); err != nil {
			rw.backendError(err)
			return
		}
		if nx && found || xx && !found {
			if get && found {
				rw.Bulk(old)
			} else {
				rw.Null()
			}
			return
		}
	}
	if err := c.s.b.Set(c.ctx, key, val); err != nil {
		rw.backendError(err)
		return
	}
	switch {
	case !get:
		rw.OK()
	case found:
		rw.Bulk(old)
	default:
		rw.Null()
	}
}

func cmdDel(c *conn, rw *replyWriter, args [][]byte) {
	var n int64
	for _, k := range args[1:] {
		existed, err := c.s.b.Delete(c.ctx, k)
		if err != nil {
			rw.backendError(err)
			return
		}
		if existed {
			n++
		}
	}
	rw.Int(n)
}

func cmdExists(c *conn, rw *replyWriter, args [][]byte) {
	var n int64
	for _, k := range args[1:] {
		_, found, err := c.s.b.Get(c.ctx, k)
		if err != nil {
			rw.backendError(err)
			return
		}
		if found {
			n++
		}
	}
	rw.Int(n)
}

func cmdMGet(c *conn, rw *replyWriter, args [][]byte) {
	keys := args[1:]
	vals := make([][]byte, len(keys))
	ok := make([]bool, len(keys))
	for i, k := range keys {
		v, found, err := c.s.b.Get(c.ctx, k)
		if err != nil {
			rw.backendError(err)
			return
		}
		vals[i], ok[i] = v, found
	}
	rw.Array(len(keys))
	for i := range keys {
		if ok[i] {
			rw.Bulk(vals[i])
		} else {
			rw.Null()
		}
	}
}

func cmdMSet(c *conn, rw *replyWriter, args [][]byte) {
	if len(args)%2 != 1 {
		rw.Error(wrongArgs("mset"))
		return
	}
	if c.s.setBatcher != nil && len(args) > 3 {
		// One batch for all pairs (one commit-log write and fsync on each
		// replica instead of one per pair). Not atomic: on an error the
		// other pairs may be written, as they may be when SETs fail one by
		// one.
		// Batches are bounded as pipelined SETs are (maxSetBatch pairs,
		// maxSetBatchBytes), however long the MSET.
		pairs := args[1:]
		for len(pairs) > 0 {
			var keys, values [][]byte
			size := 0
			for len(pairs) > 0 && len(keys) < maxSetBatch && size < maxSetBatchBytes {
				keys, values = append(keys, pairs[0]), append(values, pairs[1])
				size += len(pairs[0]) + len(pairs[1])
				pairs = pairs[2:]
			}
			errs := c.s.setBatcher.SetBatch(c.ctx, keys, values)
			if len(errs) != len(keys) {
				rw.Error(fmt.Sprintf("ERR backend returned %d results for %d pairs", len(errs), len(keys)))
				return
			}
			for _, err := range errs {
				if err != nil {
					rw.backendError(err)
					return
				}
			}
		}
		rw.OK()
		return
	}
	for i := 1; i < len(args); i += 2 {
		if err := c.s.b.Set(c.ctx, args[i], args[i+1]); err != nil {
			rw.backendError(err)
			return
		}
	}
	rw.OK()
}

func cmdDBSize(c *conn, rw *replyWriter, args [][]byte) {
	ds, ok := c.s.b.(DBSizer)
	if !ok {
		rw.Error("ERR DBSIZE is not supported: keys are spread over the cluster and not counted")
		return
	}
	n, err := ds.DBSize(c.ctx)
	if err != nil {
		rw.backendError(err)
		return
	}
	rw.Int(n)
}

func cmdSelect(c *conn, rw *replyWriter, args [][]byte) {
	n, err := strconv.ParseInt(string(args[1]), 10, 64)
	switch {
	case err != nil:
		rw.Error("ERR value is not an integer or out of range")
	case n != 0:
		rw.Error("ERR DB index is out of range (ringkv has only database 0)")
	default:
		rw.OK()
	}
}

func cmdQuit(c *conn, rw *replyWriter, args [][]byte) {
	rw.OK()
	c.quit = true
}

// cmdReset and cmdHello change connection state (c.rw.proto, c.authed): they
// are barriers, so they run alone on the connection's goroutine and rw is &c.rw.
func cmdReset(c *conn, rw *replyWriter, args [][]byte) {
	c.setConnSettings(nil)
	c.rw.proto = 2
	c.proto.Store(2)
	c.authed = !c.s.opt.authRequired()
	c.mu.Lock()
	c.name = ""
	c.mu.Unlock()
	rw.Simple("RESET")
}

// checkAuth reports whether user/pass authenticate: through
// Options.Authenticate when set, else as the default user. Without a
// configured password the default user accepts any password, as in Redis.
func (c *conn) checkAuth(user, pass []byte) bool {
	if c.s.opt.Authenticate != nil {
		return c.s.opt.Authenticate(string(user), string(pass))
	}
	if !is(user, "default") {
		return false
	}
	if c.s.opt.Password == "" {
		return true
	}
	return subtle.ConstantTimeCompare(pass, []byte(c.s.opt.Password)) == 1
}

const errWrongPass = "WRONGPASS invalid username-password pair or user is disabled."

func cmdAuth(c *conn, rw *replyWriter, args [][]byte) {
	var user, pass []byte
	switch len(args) {
	case 2:
		if !c.s.opt.authRequired() {
			rw.Error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
			return
		}
		user, pass = []byte("default"), args[1]
	case 3:
		user, pass = args[1], args[2]
	default:
		rw.Error("ERR syntax error")
		return
	}
	if !c.checkAuth(user, pass) {
		c.s.opt.Logf("resp: client %d (%v): authentication failed", c.id, c.nc.RemoteAddr())
		rw.Error(errWrongPass)
		return
	}
	c.authed = true
	c.loggedIn.Store(true)
	rw.OK()
}

func cmdHello(c *conn, rw *replyWriter, args [][]byte) {
	proto := c.rw.proto
	if len(args) >= 2 {
		v, err := strconv.ParseInt(string(args[1]), 10, 64)
		if err != nil {
			rw.Error("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 && v != 3 {
			rw.Error("NOPROTO unsupported protocol version")
			return
		}
		proto = int(v)
	}
	var user, pass, name []byte
	auth, setName := false, false
	for i := 2; i < len(args); i++ {
		more := len(args) - 1 - i
		switch {
		case is(args[i], "AUTH") && more >= 2:
			auth, user, pass = true, args[i+1], args[i+2]
			i += 2
		case is(args[i], "SETNAME") && more >= 1:
			setName, name = true, args[i+1]
			i++
		default:
			rw.Error("ERR Syntax error in HELLO option '" + string(truncate(args[i], 128)) + "'")
			return
		}
	}
	if auth {
		if !c.checkAuth(user, pass) {
			c.s.opt.Logf("resp: client %d (%v): authentication failed", c.id, c.nc.RemoteAddr())
			rw.Error(errWrongPass)
			return
		}
		c.authed = true
		c.loggedIn.Store(true)
	}
	if !c.authed {
		rw.Error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")
		return
	}
	if setName {
		if !validClientName(name) {
			rw.Error(errClientName)
			return
		}
		c.mu.Lock()
		c.name = string(name)
		c.mu.Unlock()
	}
	c.rw.proto = proto
	c.proto.Store(int32(proto))
	rw.Map(7)
	rw.BulkString("server")
	rw.BulkString("ringkv")
	rw.BulkString("version")
	rw.BulkString(compatVersion)
	rw.BulkString("proto")
	rw.Int(int64(proto))
	rw.BulkString("id")
	rw.Int(c.id)
	rw.BulkString("mode")
	rw.BulkString("standalone")
	rw.BulkString("role")
	rw.BulkString("master")
	rw.BulkString("modules")
	rw.Array(0)
}

const errClientName = "ERR Client names cannot contain spaces, newlines or special characters."

func validClientName(b []byte) bool {
	for _, ch := range b {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

func cmdClient(c *conn, rw *replyWriter, args [][]byte) {
	sub := strings.ToLower(string(args[1]))
	need := func(n int) bool {
		if len(args) != n {
			rw.Error(wrongArgs("client|" + sub))
			return false
		}
		return true
	}
	switch sub {
	case "id":
		if need(2) {
			rw.Int(c.id)
		}
	case "getname":
		if need(2) {
			c.mu.Lock()
			name := c.name
			c.mu.Unlock()
			if name == "" {
				rw.Null()
			} else {
				rw.BulkString(name)
			}
		}
	case "setname":
		if need(3) {
			if !validClientName(args[2]) {
				rw.Error(errClientName)
				return
			}
			c.mu.Lock()
			c.name = string(args[2])
			c.mu.Unlock()
			rw.OK()
		}
	case "setinfo":
		if need(4) {
			v := string(args[3])
			if strings.ContainsAny(v, " \r\n") {
				rw.Error("ERR " + string(args[2]) + " cannot contain spaces, newlines or special characters.")
				return
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			switch {
			case is(args[2], "LIB-NAME"):
				c.libName = v
			case is(args[2], "LIB-VER"):
				c.libVer = v
			default:
				rw.Error("ERR Unrecognized option '" + string(truncate(args[2], 128)) + "'")
				return
			}
			rw.OK()
		}
	case "info":
		if need(2) {
			rw.BulkString(c.describe(time.Now()) + "\n")
		}
	case "list":
		if need(2) {
			c.s.mu.Lock()
			conns := make([]*conn, 0, len(c.s.conns))
			for o := range c.s.conns {
				conns = append(conns, o)
			}
			c.s.mu.Unlock()
			slices.SortFunc(conns, func(a, b *conn) int { return int(a.id - b.id) })
			now := time.Now()
			var b strings.Builder
			for _, o := range conns {
				b.WriteString(o.describe(now))
				b.WriteByte('\n')
			}
			rw.BulkString(b.String())
		}
	default:
		rw.Error(unknownSubcommand(args[1], "CLIENT"))
	}
}

// describe renders the connection as one line of CLIENT LIST.
func (c *conn) describe(now time.Time) string {
	c.mu.Lock()
	name, lib, ver := c.name, c.libName, c.libVer
	c.mu.Unlock()
	last := "NULL"
	if cmd := c.last.Load(); cmd != nil {
		last = cmd.name
	}
	idle := time.Duration(0)
	if at := c.lastAt.Load(); at != 0 {
		idle = now.Sub(clockBase) - time.Duration(at)
	} else {
		idle = now.Sub(c.born)
	}
	return fmt.Sprintf("id=%d addr=%v laddr=%v name=%s age=%d idle=%d db=0 cmd=%s lib-name=%s lib-ver=%s resp=%d",
		c.id, c.nc.RemoteAddr(), c.nc.LocalAddr(), name, int64(now.Sub(c.born)/time.Second),
		int64(idle/time.Second), last, lib, ver, c.proto.Load())
}

func cmdConfig(c *conn, rw *replyWriter, args [][]byte) {
	switch sub := strings.ToLower(string(args[1])); sub {
	case "get":
		if len(args) < 3 {
			rw.Error(wrongArgs("config|get"))
			return
		}
		params := c.s.configParams()
		names := make([]string, 0, len(params))
		for name := range params {
			for _, pat := range args[2:] {
				if ok, _ := path.Match(strings.ToLower(string(pat)), name); ok {
					names = append(names, name)
					break
				}
			}
		}
		slices.Sort(names)
		rw.Map(len(names))
		for _, n := range names {
			rw.BulkString(n)
			rw.BulkString(params[n])
		}
	case "resetstat":
		if len(args) != 2 {
			rw.Error(wrongArgs("config|resetstat"))
			return
		}
		c.s.ResetStats()
		rw.OK()
	case "set", "rewrite":
		rw.Error("ERR CONFIG " + strings.ToUpper(sub) + " is not supported by ringkv; configure the node with its command-line flags")
	default:
		rw.Error(unknownSubcommand(args[1], "CONFIG"))
	}
}

// configParams are the values CONFIG GET reports, so that tools such as
// redis-benchmark (which asks for "save" and "appendonly") get sensible answers.
func (s *Server) configParams() map[string]string {
	o := &s.opt
	return map[string]string{
		"save":                  "",
		"appendonly":            "no",
		"databases":             "1",
		"maxmemory":             "0",
		"maxclients":            "10000",
		"timeout":               strconv.FormatInt(int64(o.IdleTimeout/time.Second), 10),
		"proto-max-bulk-len":    strconv.Itoa(o.MaxBulkLen),
		"ringkv-max-value-size": strconv.Itoa(o.MaxValueSize),
		"cluster-enabled":       "no",
	}
}

func cmdCommand(c *conn, rw *replyWriter, args [][]byte) {
	if len(args) == 1 {
		cmds := c.s.sortedCommands()
		rw.Array(len(cmds))
		for _, cmd := range cmds {
			c.writeCommandInfo(rw, cmd)
		}
		return
	}
	switch sub := strings.ToLower(string(args[1])); sub {
	case "count":
		if len(args) != 2 {
			rw.Error(wrongArgs("command|count"))
			return
		}
		rw.Int(int64(len(c.s.cmds)))
	case "list":
		cmds := c.s.sortedCommands()
		rw.Array(len(cmds))
		for _, cmd := range cmds {
			rw.BulkString(cmd.name)
		}
	case "info":
		if len(args) == 2 {
			cmds := c.s.sortedCommands()
			rw.Array(len(cmds))
			for _, cmd := range cmds {
				c.writeCommandInfo(rw, cmd)
			}
			return
		}
		rw.Array(len(args) - 2)
		for _, a := range args[2:] {
			if cmd := c.s.cmds[strings.ToLower(string(a))]; cmd != nil {
				c.writeCommandInfo(rw, cmd)
			} else if rw.proto == 3 {
				rw.Null()
			} else {
				rw.w.WriteString("*-1\r\n")
			}
		}
	case "docs":
		// No documentation: redis-cli then falls back to its built-in help.
		rw.Map(0)
	default:
		rw.Error(unknownSubcommand(args[1], "COMMAND"))
	}
}

func (s *Server) sortedCommands() []*command {
	out := make([]*command, 0, len(s.cmds))
	for _, c := range s.cmds {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *command) int { return strings.Compare(a.name, b.name) })
	return out
}

// writeCommandInfo writes the Redis 7 shape of a COMMAND entry: name, arity,
// flags, first key, last key, step, ACL categories, tips, key specs, subcommands.
func (c *conn) writeCommandInfo(rw *replyWriter, cmd *command) {
	rw.Array(10)
	rw.BulkString(cmd.name)
	rw.Int(int64(cmd.arity))
	rw.Set(len(cmd.flags))
	for _, f := range cmd.flags {
		rw.Simple(f)
	}
	rw.Int(int64(cmd.firstKey))
	rw.Int(int64(cmd.lastKey))
	rw.Int(int64(cmd.step))
	rw.Set(0)
	rw.Set(0)
	rw.Array(0)
	rw.Array(0)
}

func cmdInfo(c *conn, rw *replyWriter, args [][]byte) {
	want := map[string]bool{}
	all := len(args) == 1
	for _, a := range args[1:] {
		s := strings.ToLower(string(a))
		if s == "all" || s == "everything" || s == "default" {
			all = true
		}
		want[s] = true
	}
	var b bytes.Buffer
	for _, sec := range c.s.infoSections() {
		if !all && !want[strings.ToLower(sec.Name)] {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# ")
		b.WriteString(sec.Name)
		b.WriteString("\r\n")
		for _, f := range sec.Fields {
			b.WriteString(f[0])
			b.WriteByte(':')
			b.WriteString(f[1])
			b.WriteString("\r\n")
		}
	}
	rw.Bulk(b.Bytes())
}

func cmdSiblings(c *conn, rw *replyWriter, args [][]byte) {
	token, values, err := c.s.b.Siblings(c.ctx, args[1])
	if err != nil {
		rw.backendError(err)
		return
	}
	rw.Array(2)
	rw.BulkString(token)
	rw.Array(len(values))
	for _, v := range values {
		rw.Bulk(v)
	}
}

func cmdPut(c *conn, rw *replyWriter, args [][]byte) {
	if err := c.s.b.PutWithContext(c.ctx, args[1], string(args[2]), args[3]); err != nil {
		rw.backendError(err)
		return
	}
	rw.OK()
}

// cmdRingkvConfig is RINGKV.CONFIG SET name value and RINGKV.CONFIG GET
// name: the connection's own settings (see ConnConfigurer). It changes
// c.ctx, so it is a barrier: no command of the connection is in flight.
func cmdRingkvConfig(c *conn, rw *replyWriter, args [][]byte) {
	cc, ok := c.s.b.(ConnConfigurer)
	if !ok {
		rw.Error("ERR RINGKV.CONFIG: this server has no per-connection settings")
		return
	}
	name := strings.ToLower(string(args[2]))
	def, known := cc.ConnSettingDefault(name)
	switch sub := strings.ToLower(string(args[1])); {
	case !known && (sub == "get" || sub == "set"):
		rw.Error(fmt.Sprintf("ERR RINGKV.CONFIG: unknown setting '%s'", truncate(args[2], 64)))
	case sub == "get" && len(args) == 3:
		if v, ok := ConnSettings(c.ctx)[name]; ok {
			def = v
		}
		rw.BulkString(def)
	case sub == "set" && len(args) == 4:
		v, err := cc.CheckConnSetting(name, string(args[3]))
		if err != nil {
			rw.backendError(err)
			return
		}
		next := make(map[string]string, len(ConnSettings(c.ctx))+1)
		maps.Copy(next, ConnSettings(c.ctx))
		if v == "" {
			delete(next, name)
		} else {
			next[name] = v
		}
		c.setConnSettings(next)
		rw.OK()
	case sub == "get" || sub == "set":
		rw.Error(wrongArgs("ringkv.config|" + sub))
	default:
		rw.Error(unknownSubcommand(args[1], "RINGKV.CONFIG"))
	}
}

// setConnSettings makes settings (nil or empty: none) the connection's.
func (c *conn) setConnSettings(settings map[string]string) {
	if len(settings) == 0 {
		c.ctx = c.s.ctx
		return
	}
	c.ctx = context.WithValue(c.s.ctx, connSettingsKey{}, settings)
}
