// Package resp serves ringkv over the Redis protocol (RESP2, and RESP3 after
// HELLO 3), so redis-cli, redis-benchmark and ordinary Redis client libraries
// work against a ringkv node.
//
// It is a thin layer: it decodes a command, calls a [Backend] (the cluster's
// coordinator in production, [NewMapBackend] in tests), and encodes the reply.
// It knows nothing of rings, replicas or versions.
//
// # Siblings
//
// Concurrent writes to a key may leave several live versions ("siblings").
// GET returns the value of the sibling with the highest timestamp (ties by
// dot) — the Backend decides; RINGKV.SIBLINGS returns them all, together with
// the opaque causal context that covers them, and RINGKV.PUT writes a value as
// the successor of exactly the versions a context saw:
//
//	RINGKV.SIBLINGS key          -> [context, [value, value, ...]]
//	                                ("" and [] when the key has no live sibling)
//	RINGKV.PUT key context value -> +OK
//
// The reply of RINGKV.SIBLINGS is a two-element array in RESP2 and RESP3 alike.
// A plain SET is a write without causal context: the Backend decides what it
// supersedes (in ringkv, whatever the coordinating replica holds).
//
// # Commands
//
// PING [msg], ECHO msg, GET key, SET key value [NX|XX] [GET], DEL/UNLINK key
// [key ...], EXISTS key [key ...], MGET key [key ...], MSET key value [key
// value ...], INFO [section ...], DBSIZE (only if the Backend implements
// [DBSizer], else an error), SELECT 0, QUIT, RESET, AUTH [user] password,
// HELLO [2|3 [AUTH user password] [SETNAME name]], COMMAND [COUNT|INFO|DOCS|
// LIST], CLIENT ID|GETNAME|SETNAME|SETINFO|INFO|LIST, CONFIG GET|RESETSTAT,
// RINGKV.SIBLINGS, RINGKV.PUT and RINGKV.CONFIG.
//
// # Per-connection settings
//
// A Backend that implements [ConnConfigurer] has settings each connection
// may choose for itself (ringkv's: the levels r, w, pr and pw; r and w
// also take LOCAL_ONE, LOCAL_QUORUM and EACH_QUORUM):
//
//	RINGKV.CONFIG SET name value -> +OK    (value DEFAULT: back to the default)
//	RINGKV.CONFIG GET name       -> value  (the default when not set)
//
// They last until the connection closes or sends RESET, and reach the
// Backend in the context of every call made for the connection
// ([ConnSettings]). A client that pools connections must keep them on one
// connection (with go-redis, Client.Conn), as with any connection state.
//
// Not Redis: ringkv keeps no expiry (SET with EX, PX, EXAT, PXAT or KEEPTTL
// answers "ERR ringkv does not support key expiry"); SET NX/XX/GET is a Get
// followed by a Set, not an atomic compare-and-set across replicas; DEL,
// EXISTS, MGET and MSET are one Backend call per key, so MSET is not atomic
// and may be partly applied when it answers an error; there is a single
// database (SELECT 0 only).
//
// # Pipelining
//
// The commands of one pipelined batch may execute concurrently (at most 32
// at a time per connection), so that n pipelined writes wait for about one
// commit rather than n, and n reads for about one round trip. What a client
// sees is as if they ran one by one: replies come in command order, commands
// of the connection that share a key take effect in order, and commands
// other than plain key reads and writes (AUTH, HELLO, SELECT, CLIENT, QUIT,
// RESET, INFO, DBSIZE, CONFIG, COMMAND, unknown commands) wait for everything
// before them and run alone. Commands of different connections were never
// ordered and still are not.
//
// # Limits
//
// What one client can make the server hold is bounded, and each bound is
// checked before memory is allocated for it (see [Options]): bulk and
// array lengths (MaxBulkLen, MaxMultiBulkLen), argument and request sizes
// (MaxValueSize, MaxRequestSize; memory grows with the bytes that arrive,
// never with a declared length), the inline line (64 KiB), open connections
// (MaxConnections, default 10,000: over it "-ERR max number of clients
// reached" and the connection is closed), pipelined commands in flight per
// connection (32, and 8 MiB of arguments) and their unsent replies
// (MaxOutputBuffer, default 1 MiB: past it the server stops reading the
// connection). Deadlines: a command must arrive whole within ReadTimeout
// (default 30 s) of the first wait for its rest, so a client trickling
// bytes is closed; a client that does not read its replies is closed after
// WriteTimeout (default 30 s); an idle one after IdleTimeout (default:
// never). A quiet connection holds small buffers (4 KiB each way) that grow
// for long commands and pipelines.
//
// # Errors
//
// A Backend error is sent as a RESP error. If the error (or one it wraps)
// has a method RESPCode() string, that code prefixes the message, e.g.
// "QUORUM not enough replicas answered (1 of 2)"; see [Error]. A
// context.DeadlineExceeded becomes "TIMEOUT ...". Anything else becomes
// "ERR <message>". Arguments larger than [Options].MaxValueSize are read off
// the wire and dropped, and the command is answered with "ERR value too
// large ..." on a connection that stays usable. Malformed frames are answered
// with "ERR Protocol error: ..." and the connection is closed, as Redis does.
package resp
