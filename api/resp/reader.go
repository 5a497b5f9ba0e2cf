package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Limits of the request reader. The inline limit matches Redis' PROTO_INLINE_MAX_SIZE.
const (
	readBufSize     = 64 * 1024 // largest read buffer; also the longest accepted line (inline command, '*' or '$' header)
	initialReadBuf  = 4 * 1024  // a connection's first read buffer; it grows to readBufSize for long lines or deep pipelines
	scratchKeepSize = 256 * 1024
)

// ProtocolError is a malformed request. The server answers it with
// "-ERR Protocol error: <msg>" and closes the connection, as Redis does.
type ProtocolError struct{ Msg string }

func (e *ProtocolError) Error() string { return "Protocol error: " + e.Msg }

func protoErr(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// request is one decoded command.
type request struct {
	// Args are the command's arguments, Args[0] being the name. Each element is
	// freshly allocated for this request (a Backend may keep it); the outer slice
	// is reused by the next request.
	Args [][]byte
	// Oversize is non-zero when an argument was larger than the per-argument limit
	// (or the request larger than the per-request limit): such arguments were
	// read off the wire and discarded, Args holds an empty slice in their place,
	// and the command must be answered with an error. OversizeLen is the size of
	// the first offending argument.
	Oversize    bool
	OversizeLen int64
	// OversizeIndex is the index of the first offending argument.
	OversizeIndex int
}

// reader decodes RESP requests (arrays of bulk strings) and inline commands
// from a byte stream. It never allocates in proportion to a declared length
// before the bytes have arrived, and the memory it holds for one request is
// bounded by maxArg and maxRequest.
type reader struct {
	rd   io.Reader
	buf  []byte
	r, w int

	maxMultiBulk int   // most elements in one array
	maxBulk      int64 // largest declared bulk length that is not a protocol error
	maxArg       int   // largest argument kept; bigger ones are skipped (Oversize)
	maxRequest   int   // largest total of argument bytes kept in one request

	// beforeBlock, if set, is called before every read that may block;
	// idle is true when no byte of the next request has been read yet,
	// first when the request has started and this is the first read that
	// waits for more of it. An error it returns ends the read with that
	// error.
	beforeBlock func(idle, first bool) error

	scratch []byte
	ends    []int
	req     request
	idle    bool
	blocked bool // a read has waited in the middle of the current request
	grow    bool // the last read filled the buffer: the next fill doubles it
}

func newReader(rd io.Reader, maxMultiBulk int, maxBulk int64, maxArg, maxRequest int) *reader {
	return &reader{
		rd:           rd,
		buf:          make([]byte, initialReadBuf),
		maxMultiBulk: maxMultiBulk,
		maxBulk:      maxBulk,
		maxArg:       maxArg,
		maxRequest:   maxRequest,
	}
}

// Buffered returns the number of bytes read from the connection but not yet decoded.
func (p *reader) Buffered() int { return p.w - p.r }

// fill reads more bytes into the buffer, compacting it first. It returns an
// error if the buffer is full (the caller's line is too long) or the read fails.
func (p *reader) fill() error {
	if p.r > 0 {
		if p.r == p.w {
			p.r, p.w = 0, 0
		} else {
			n := copy(p.buf, p.buf[p.r:p.w])
			p.r, p.w = 0, n
		}
	}
	if (p.w == len(p.buf) || p.grow) && len(p.buf) < readBufSize {
		// A line longer than the buffer, or a client sending faster
		// than one buffer per read: grow, up to readBufSize. A quiet
		// connection keeps its small buffer.
		grown := make([]byte, min(2*len(p.buf), readBufSize))
		copy(grown, p.buf[:p.w])
		p.buf = grown
	}
	p.grow = false
	if p.w == len(p.buf) {
		return errBufferFull
	}
	if err := p.block(p.idle && p.r == p.w); err != nil {
		return err
	}
	for tries := 0; ; tries++ {
		n, err := p.rd.Read(p.buf[p.w:])
		p.w += n
		if n > 0 {
			p.grow = p.w == len(p.buf)
			return nil
		}
		if err != nil {
			return err
		}
		if tries > 100 {
			return io.ErrNoProgress
		}
	}
}

var errBufferFull = errors.New("resp: line too long")

// block calls beforeBlock before a read that may wait.
func (p *reader) block(idle bool) error {
	first := !idle && !p.blocked
	if !idle {
		p.blocked = true
	}
	if p.beforeBlock != nil {
		return p.beforeBlock(idle, first)
	}
	return nil
}

// readLine returns the next line up to, not including, its '\n' (a trailing
// '\r' is left for the caller). The slice aliases the read buffer and is valid
// until the next read.
func (p *reader) readLine(tooLong string) ([]byte, error) {
	start := 0
	for {
		if i := bytes.IndexByte(p.buf[p.r+start:p.w], '\n'); i >= 0 {
			end := p.r + start + i
			line := p.buf[p.r:end]
			p.r = end + 1
			return line, nil
		}
		start = p.w - p.r
		if err := p.fill(); err != nil {
			if err == errBufferFull {
				return nil, protoErr("%s", tooLong)
			}
			return nil, err
		}
	}
}

// ReadRequest decodes the next request. Empty requests ("*0", blank inline
// lines) are skipped. A *ProtocolError means the stream is unusable; any other
// error comes from the connection.
func (p *reader) ReadRequest() (*request, error) {
	for {
		p.idle, p.blocked = true, false
		p.scratch = p.scratch[:0]
		p.ends = p.ends[:0]
		p.req = request{Args: p.req.Args[:0]}
		if p.r == p.w {
			if err := p.fill(); err != nil {
				return nil, err
			}
		}
		p.idle = false
		var err error
		if p.buf[p.r] == '*' {
			err = p.readMultiBulk()
		} else {
			err = p.readInline()
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(p.ends) == 0 {
			continue
		}
		// Move the arguments into one fresh allocation owned by the request.
		data := make([]byte, len(p.scratch))
		copy(data, p.scratch)
		begin := 0
		for _, end := range p.ends {
			p.req.Args = append(p.req.Args, data[begin:end:end])
			begin = end
		}
		if cap(p.scratch) > scratchKeepSize {
			p.scratch = nil
		}
		return &p.req, nil
	}
}

func (p *reader) markOversize(size int64) {
	if !p.req.Oversize {
		p.req.Oversize = true
		p.req.OversizeLen = size
		p.req.OversizeIndex = len(p.ends)
	}
	p.ends = append(p.ends, len(p.scratch))
}

func (p *reader) readMultiBulk() error {
	line, err := p.readLine("too big mbulk count string")
	if err != nil {
		return err
	}
	line = trimCR(line)
	n, ok := parseInt(line[1:])
	if !ok || n > int64(p.maxMultiBulk) {
		return protoErr("invalid multibulk length")
	}
	for i := int64(0); i < n; i++ {
		if p.r == p.w {
			if err := p.fill(); err != nil {
				return err
			}
		}
		if c := p.buf[p.r]; c != '$' {
			return protoErr("expected '$', got '%s'", printable(c))
		}
		line, err := p.readLine("too big bulk count string")
		if err != nil {
			return err
		}
		line = trimCR(line)
		size, ok := parseInt(line[1:])
		if !ok || size < 0 || size > p.maxBulk {
			return protoErr("invalid bulk length")
		}
		if size > int64(p.maxArg) || int64(len(p.scratch))+size > int64(p.maxRequest) {
			if err := p.discard(size); err != nil {
				return err
			}
			p.markOversize(size)
		} else {
			if err := p.readBulk(int(size)); err != nil {
				return err
			}
			p.ends = append(p.ends, len(p.scratch))
		}
		if err := p.readCRLF(); err != nil {
			return err
		}
	}
	return nil
}

// readBulk appends the next n bytes to scratch. Memory grows with the bytes
// that actually arrive, not with the declared length.
func (p *reader) readBulk(n int) error {
	for n > 0 {
		if p.r < p.w {
			k := min(n, p.w-p.r)
			p.scratch = append(p.scratch, p.buf[p.r:p.r+k]...)
			p.r += k
			n -= k
			continue
		}
		if n < len(p.buf) {
			if err := p.fill(); err != nil {
				return err
			}
			continue
		}
		// Large remainder: read straight into scratch, growing it (at most
		// doubling) only as the bytes arrive.
		if len(p.scratch) == cap(p.scratch) {
			step := min(n, max(len(p.buf), len(p.scratch)))
			grown := make([]byte, len(p.scratch), len(p.scratch)+step)
			copy(grown, p.scratch)
			p.scratch = grown
		}
		if err := p.block(false); err != nil {
			return err
		}
		l := len(p.scratch)
		k, err := p.rd.Read(p.scratch[l:min(cap(p.scratch), l+n)])
		p.scratch = p.scratch[:l+k]
		n -= k
		if k == 0 && err != nil {
			return err
		}
	}
	return nil
}

// discard skips the next n bytes without keeping them.
func (p *reader) discard(n int64) error {
	for n > 0 {
		if p.r == p.w {
			if err := p.fill(); err != nil {
				return err
			}
		}
		k := min(n, int64(p.w-p.r))
		p.r += int(k)
		n -= k
	}
	return nil
}

func (p *reader) readCRLF() error {
	for p.w-p.r < 2 {
		if err := p.fill(); err != nil {
			return err
		}
	}
	if p.buf[p.r] != '\r' || p.buf[p.r+1] != '\n' {
		return protoErr("expected CRLF after bulk data")
	}
	p.r += 2
	return nil
}

func (p *reader) readInline() error {
	line, err := p.readLine("too big inline request")
	if err != nil {
		return err
	}
	line = trimCR(line)
	return p.splitInline(line)
}

// splitInline splits an inline command into arguments the way redis-cli and
// Redis do: whitespace separates arguments; "double quotes" understand the
// escapes \n \r \t \b \a \\ \" and \xHH; 'single quotes' understand \'.
// A closing quote must be followed by whitespace or the end of the line.
func (p *reader) splitInline(line []byte) error {
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i == len(line) {
			return nil
		}
		inDouble, inSingle := false, false
	arg:
		for {
			if i == len(line) {
				if inDouble || inSingle {
					return protoErr("unbalanced quotes in request")
				}
				break
			}
			c := line[i]
			switch {
			case inDouble:
				switch {
				case c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]):
					p.scratch = append(p.scratch, unhex(line[i+2])<<4|unhex(line[i+3]))
					i += 4
				case c == '\\' && i+1 < len(line):
					i++
					switch e := line[i]; e {
					case 'n':
						p.scratch = append(p.scratch, '\n')
					case 'r':
						p.scratch = append(p.scratch, '\r')
					case 't':
						p.scratch = append(p.scratch, '\t')
					case 'b':
						p.scratch = append(p.scratch, '\b')
					case 'a':
						p.scratch = append(p.scratch, '\a')
					default:
						p.scratch = append(p.scratch, e)
					}
					i++
				case c == '"':
					i++
					if i < len(line) && !isSpace(line[i]) {
						return protoErr("unbalanced quotes in request")
					}
					break arg
				default:
					p.scratch = append(p.scratch, c)
					i++
				}
			case inSingle:
				switch {
				case c == '\\' && i+1 < len(line) && line[i+1] == '\'':
					p.scratch = append(p.scratch, '\'')
					i += 2
				case c == '\'':
					i++
					if i < len(line) && !isSpace(line[i]) {
						return protoErr("unbalanced quotes in request")
					}
					break arg
				default:
					p.scratch = append(p.scratch, c)
					i++
				}
			default:
				switch {
				case isSpace(c):
					break arg
				case c == '"':
					inDouble = true
				case c == '\'':
					inSingle = true
				default:
					p.scratch = append(p.scratch, c)
				}
				i++
			}
		}
		if len(p.ends) >= p.maxMultiBulk {
			return protoErr("invalid multibulk length")
		}
		p.ends = append(p.ends, len(p.scratch))
	}
}

func trimCR(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\r' {
		return b[:n-1]
	}
	return b
}

// parseInt parses a decimal integer as Redis does for length headers: an
// optional '-' and 1 to 18 digits, nothing else.
func parseInt(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg = true
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

func printable(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return string(rune(c))
	}
	return "\\x" + strconv.FormatUint(uint64(c), 16)
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
