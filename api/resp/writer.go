package resp

import (
	"io"
	"strconv"
	"strings"
)

// replySink is where a replyWriter encodes: the connection's *bufio.Writer
// for commands run on the connection's goroutine, or a command's own
// *bytes.Buffer when it runs concurrently with others of its pipeline and its
// reply must wait for theirs (see pipeline.go).
type replySink interface {
	io.Writer
	io.ByteWriter
	io.StringWriter
	AvailableBuffer() []byte
}

// replyWriter encodes replies into a buffered writer, in RESP2 or RESP3
// depending on what the client negotiated with HELLO.
type replyWriter struct {
	w     replySink
	proto int // 2 or 3
	// errs counts error replies written; the server uses it for per-command stats.
	errs int
}

func (rw *replyWriter) header(prefix byte, n int64) {
	b := rw.w.AvailableBuffer()
	b = append(b, prefix)
	b = strconv.AppendInt(b, n, 10)
	b = append(b, '\r', '\n')
	rw.w.Write(b)
}

// Simple writes a simple string (+OK). s must not contain CR or LF.
func (rw *replyWriter) Simple(s string) {
	rw.w.WriteByte('+')
	rw.w.WriteString(s)
	rw.w.WriteString("\r\n")
}

func (rw *replyWriter) OK() { rw.w.WriteString("+OK\r\n") }

// Error writes an error reply. msg must start with an error code ("ERR ...",
// "WRONGTYPE ..."); CR and LF are replaced by spaces.
func (rw *replyWriter) Error(msg string) {
	rw.errs++
	if strings.ContainsAny(msg, "\r\n") {
		msg = strings.NewReplacer("\r", " ", "\n", " ").Replace(msg)
	}
	rw.w.WriteByte('-')
	rw.w.WriteString(msg)
	rw.w.WriteString("\r\n")
}

func (rw *replyWriter) Int(n int64) { rw.header(':', n) }

func (rw *replyWriter) Bulk(b []byte) {
	rw.header('$', int64(len(b)))
	rw.w.Write(b)
	rw.w.WriteString("\r\n")
}

func (rw *replyWriter) BulkString(s string) {
	rw.header('$', int64(len(s)))
	rw.w.WriteString(s)
	rw.w.WriteString("\r\n")
}

// Null writes a missing value: $-1 in RESP2, _ in RESP3.
func (rw *replyWriter) Null() {
	if rw.proto == 3 {
		rw.w.WriteString("_\r\n")
	} else {
		rw.w.WriteString("$-1\r\n")
	}
}

func (rw *replyWriter) Array(n int) { rw.header('*', int64(n)) }

// Map writes the header of a map of n pairs: %n in RESP3, an array of 2n in RESP2.
func (rw *replyWriter) Map(n int) {
	if rw.proto == 3 {
		rw.header('%', int64(n))
	} else {
		rw.header('*', int64(2*n))
	}
}

// Set writes the header of a set of n elements: ~n in RESP3, an array in RESP2.
func (rw *replyWriter) Set(n int) {
	if rw.proto == 3 {
		rw.header('~', int64(n))
	} else {
		rw.header('*', int64(n))
	}
}
