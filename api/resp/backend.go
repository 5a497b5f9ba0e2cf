package resp

import (
	"context"
	"errors"
)

// Backend is what the RESP server calls for data. The cluster's coordinator
// implements it. Every key and value slice passed to a Backend is freshly
// allocated for that call: the Backend may keep it. Slices a Backend returns
// are only read by the server, never modified or kept after the reply is
// written.
type Backend interface {
	// Get returns the value of key (with several siblings, the Backend picks
	// one: the highest timestamp, ties broken by dot).
	Get(ctx context.Context, key []byte) (value []byte, found bool, err error)
	// Set writes value without causal context.
	Set(ctx context.Context, key, value []byte) error
	// Delete removes key and reports whether it held a live value.
	Delete(ctx context.Context, key []byte) (existed bool, err error)
	// Siblings returns every live sibling of key and the opaque causal
	// context token that covers them ("" and nil when there is none).
	Siblings(ctx context.Context, key []byte) (context string, values [][]byte, err error)
	// PutWithContext writes value as the successor of exactly the versions
	// context saw. An empty context saw nothing.
	PutWithContext(ctx context.Context, key []byte, context string, value []byte) error
	// Info returns extra sections for the INFO command.
	Info() []InfoSection
}

// SetBatcher is optionally implemented by a Backend that can apply several
// SETs at once more cheaply than one by one (one commit-log write and one
// fsync for all of them, say). The server then hands it each run of plain
// pipelined SETs (SET key value, no options) of a connection.
type SetBatcher interface {
	// SetBatch has the effect of Set(keys[i], values[i]) for each i in
	// order (a key may appear more than once: the later value wins), and
	// returns one error per key, nil where the write succeeded.
	SetBatch(ctx context.Context, keys, values [][]byte) []error
}

// GetBatcher is optionally implemented by a Backend that can answer several
// GETs at once more cheaply than one by one (one message per other replica
// for all of them, say). The server hands it runs of plain pipelined GETs
// (GET key) while GETs take long enough to be worth it.
type GetBatcher interface {
	// GetBatch answers Get(keys[i]) for each i: values[i] and found[i], or
	// errs[i] (all three slices as long as keys; errs may be nil when all
	// succeeded).
	GetBatch(ctx context.Context, keys [][]byte) (values [][]byte, found []bool, errs []error)
}

// InfoSection is one "# Name" section of the INFO reply.
type InfoSection struct {
	Name   string
	Fields [][2]string // name, value; neither may contain CR, LF or ':' in the name
}

// DBSizer is optionally implemented by a Backend that can count its keys;
// without it DBSIZE answers an error.
type DBSizer interface {
	DBSize(ctx context.Context) (int64, error)
}

// Error is a Backend error with its own RESP error code: it is sent to the
// client as "<Code> <Msg>", e.g. "QUORUM not enough replicas answered (1 of 2)".
// Backends that do not want to import this package can instead return any
// error with a method RESPCode() string.
type Error struct {
	Code string // one upper-case word, e.g. "QUORUM", "TIMEOUT", "ERR"
	Msg  string
}

func (e *Error) Error() string    { return e.Code + " " + e.Msg }
func (e *Error) RESPCode() string { return e.Code }

// errorReply renders a Backend error as the text of a RESP error reply.
func errorReply(err error) string {
	var coded interface{ RESPCode() string }
	if errors.As(err, &coded) {
		code := coded.RESPCode()
		if e, ok := coded.(*Error); ok {
			return code + " " + e.Msg
		}
		msg := err.Error()
		if len(msg) > len(code) && msg[:len(code)] == code && msg[len(code)] == ' ' {
			return msg // already "CODE message"
		}
		return code + " " + msg
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "TIMEOUT " + err.Error()
	}
	return "ERR " + err.Error()
}

// ConnConfigurer is optionally implemented by a Backend with per-connection
// settings: RINGKV.CONFIG SET name value changes one for the connection,
// RINGKV.CONFIG GET name reads it, RESET forgets them. The settings a
// connection has set reach the Backend in the context of every call made
// for it (ConnSettings). ringkv's are the levels r, w, pr and pw.
type ConnConfigurer interface {
	// CheckConnSetting validates value for the setting name and returns
	// the form to keep; it returns "" to reset the setting to its default.
	// Its error is sent to the client as the reply.
	CheckConnSetting(name, value string) (string, error)
	// ConnSettingDefault returns what RINGKV.CONFIG GET reports for a
	// setting the connection has not set, and whether name is a setting.
	ConnSettingDefault(name string) (string, bool)
}

type connSettingsKey struct{}

// ConnSettings returns the settings the connection of a Backend call has
// set (name to value, as CheckConnSetting returned it), or nil when it
// has set none. The map must not be modified.
func ConnSettings(ctx context.Context) map[string]string {
	m, _ := ctx.Value(connSettingsKey{}).(map[string]string)
	return m
}
