// Package transport is ringkv's node-to-node RPC layer: a caller sends a
// (kind, payload) request to the node listening at an address and waits for
// that node's reply. The payload is opaque here; the packages above
// (coordinator, handoff, antientropy, rebalance) define the kinds and the
// encodings.
//
// Two implementations satisfy [Transport]:
//
//   - TCP ([Listen], [NewClient]): framed, multiplexed and pipelined over one
//     connection per peer address.
//   - In-memory ([NewNetwork]): for tests, with per-link fault injection (cut,
//     partition, isolate, delay, seeded random drops) so fault tests are
//     reproducible without sockets.
//
// # Errors
//
// Call returns one of:
//
//   - an error wrapping context.DeadlineExceeded or context.Canceled when the
//     caller's context ended first;
//   - an error wrapping [ErrUnreachable] when the peer could not be dialled or
//     the connection broke while the call was in flight (the request may or
//     may not have been executed by the peer);
//   - a [*RemoteError] (errors.Is(err, [ErrRemote])) carrying the message of
//     the error the remote handler returned;
//   - an error wrapping [ErrFrameTooLarge] when the request or its reply
//     exceeds a side's [Options].MaxFrameSize;
//   - an error wrapping [ErrClosed] after the transport was closed.
//
// Errors of a call whose request was certainly never sent (the dial failed,
// or the context ended while waiting for a connection) also wrap
// [ErrNotSent]: only then may a caller send a non-idempotent request to
// another peer without risking that both act on it.
//
// # Deadlines
//
// A call never waits forever: if ctx carries no deadline, Call applies
// [Options].CallTimeout (default 30 s; the in-memory network has the same
// default, see [Network.SetDefaultTimeout]). A lost message therefore shows up
// as context.DeadlineExceeded, exactly as on a real network. The remaining
// time is sent with the request, and the server runs the handler under a
// context with that deadline, so a handler does not keep working for a caller
// that has given up. When the caller's context ends early the client also
// sends a cancel frame, which cancels the handler's context.
//
// # Wire protocol (TCP)
//
// Everything is a frame; integers are big-endian:
//
//	offset size field
//	0      4    length     bytes that follow this field: 14 + len(payload)
//	4      8    request ID chosen by the client, unique per connection
//	12     1    frame type 1 hello, 2 request, 3 response, 4 error, 5 cancel
//	13     1    kind       request/response: the caller's message kind;
//	                       hello: protocol version (1);
//	                       error: error code (0 handler error, 1 reply
//	                       too large, 2 request too large: the server
//	                       closes the connection after this frame)
//	14     4    timeout    request: remaining deadline in ms, rounded up
//	                       (0 = none); 0 in every other frame
//	18     n    payload    request/response: opaque bytes;
//	                       hello: the client's advertised node address;
//	                       error: the error message (UTF-8); cancel: empty
//
// The client opens a connection and sends a hello frame first; the server
// drops a connection whose first frame is not a hello of version 1. After
// that the client sends request and cancel frames, and the server sends
// response and error frames carrying the request's ID. Many requests are in
// flight on one connection at once and replies come back in any order.
//
// Limits and malformed input: a frame whose length exceeds MaxFrameSize
// (default 16 MiB, counted as the length field, so the largest payload is
// MaxFrameSize-14 bytes) is refused. A sender refuses to send one (the call
// fails with [ErrFrameTooLarge] and the connection stays up). A receiver that
// gets one anyway (the two sides were configured with different limits)
// answers the offending request ID with an error frame of code 2 when it is
// the server, logs the reason, and closes the connection. A server whose
// handler returns a reply too large for its own limit answers with an error
// frame of code 1 instead and keeps the connection. A frame shorter
// than the 14-byte header, an unknown frame type or a frame type that is not
// valid in that direction also closes the connection with a logged reason;
// nothing a peer sends can make this package panic.
//
// # Concurrency inside a connection
//
// The server runs each request's handler in its own goroutine, at most
// [Options].MaxConcurrentHandlers (default 256) at once per connection. When
// that many are running the server stops reading from that connection until
// one finishes: TCP flow control then pushes back on the client instead of
// the server buffering an unbounded number of requests.
//
// Writes to a connection are serialized by a writer goroutine that owns the
// socket. Senders append whole frames to a shared buffer; the writer swaps it
// out and writes it with one system call, so while one write is in progress
// the next frames accumulate and go out together. Pipelined small requests
// and replies thus batch into few syscalls without any timer-based flushing
// (a lone request is written immediately). Buffered bytes are bounded; a
// sender that would exceed the bound waits for the writer (or for its
// context).
//
// # Connection lifecycle
//
// The client dials lazily on the first call to an address, keeps one
// connection per address, and redials on the next call after a connection
// broke. A broken connection fails all of its in-flight calls at once with an
// error wrapping ErrUnreachable. Idle client connections are closed after
// [Options].IdleTimeout. The client owns the lifecycle: the server closes a
// connection on its own only when it misbehaves or is abandoned — silent,
// with no handler running, for [Options].ServerIdleTimeout (default 10 min,
// well past the client's IdleTimeout), or stalling in the middle of a frame
// for [Options].FrameTimeout (default 30 s, counted from the first wait for
// the frame's rest, so trickling bytes does not extend it) — and in
// [Server.Close], which closes the listener and all connections, cancels
// running handlers' contexts and waits for them to return. Connections over
// [Options].MaxConnections (default 1024) are closed as they are accepted.
//
// A frame's length is checked against MaxFrameSize before anything is
// allocated for it, and a large payload's buffer grows as its bytes arrive
// (from 64 KiB), so a peer declaring a large frame and sending little holds
// little memory.
package transport
