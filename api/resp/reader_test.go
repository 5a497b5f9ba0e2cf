package resp

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

func testReader(in io.Reader) *reader {
	return newReader(in, 1<<20, 512<<20, 1<<20, 64<<20)
}

// readAll decodes every request in the stream, returning the arguments as
// strings and the error that ended the stream.
func readAll(p *reader) ([][]string, error) {
	var out [][]string
	for {
		req, err := p.ReadRequest()
		if err != nil {
			return out, err
		}
		var args []string
		for _, a := range req.Args {
			args = append(args, string(a))
		}
		if req.Oversize {
			args = append(args, "<oversize>")
		}
		out = append(out, args)
	}
}

func equalReqs(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], "\x00") != strings.Join(b[i], "\x00") || len(a[i]) != len(b[i]) {
			return false
		}
	}
	return true
}

func TestReaderParses(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want [][]string
	}{
		{"array", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n", [][]string{{"SET", "k", "hello"}}},
		{"binary", "*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n", [][]string{{"GET", "a\r\nb"}}},
		{"empty bulk", "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", [][]string{{"ECHO", ""}}},
		{"pipeline", "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n", [][]string{{"PING"}, {"GET", "a"}}},
		{"empty arrays skipped", "*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", [][]string{{"PING"}}},
		{"inline", "SET key value\r\n", [][]string{{"SET", "key", "value"}}},
		{"inline lf only", "PING\nGET a\n", [][]string{{"PING"}, {"GET", "a"}}},
		{"inline spaces", "  GET \t  a  \r\n", [][]string{{"GET", "a"}}},
		{"inline blank lines skipped", "\r\n\r\n   \r\nPING\r\n", [][]string{{"PING"}}},
		{"inline double quotes", `SET "a key" "x\x41\n\"y\\"` + "\r\n", [][]string{{"SET", "a key", "xA\n\"y\\"}}},
		{"inline single quotes", `SET 'it\'s' 'a "b"'` + "\r\n", [][]string{{"SET", "it's", `a "b"`}}},
		{"inline empty quoted", `ECHO ""` + "\r\n", [][]string{{"ECHO", ""}}},
		{"mixed", "PING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nECHO yo\r\n", [][]string{{"PING"}, {"ECHO", "hi"}, {"ECHO", "yo"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(testReader(strings.NewReader(tc.in)))
			if err != io.EOF {
				t.Fatalf("ended with %v, want EOF", err)
			}
			if !equalReqs(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReaderPartialReads(t *testing.T) {
	var in bytes.Buffer
	var want [][]string
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		val := strings.Repeat(string(rune('a'+i%26)), rng.IntN(3000))
		if i%3 == 0 {
			in.WriteString("ECHO " + "v" + val + "\r\n")
			want = append(want, []string{"ECHO", "v" + val})
			continue
		}
		in.WriteString("*3\r\n$3\r\nSET\r\n")
		in.WriteString("$" + strconv.Itoa(len(val)) + "\r\n" + val + "\r\n")
		in.WriteString("$2\r\nNX\r\n")
		want = append(want, []string{"SET", val, "NX"})
	}
	// Big values that span many buffer fills (read straight into scratch).
	big := strings.Repeat("xyz", 100_000)
	in.WriteString("*2\r\n$4\r\nECHO\r\n$" + strconv.Itoa(len(big)) + "\r\n" + big + "\r\n")
	want = append(want, []string{"ECHO", big})
	data := in.Bytes()

	readers := map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(data) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
		"half":     func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
		"random":   func() io.Reader { return &chunkReader{data: data, rng: rand.New(rand.NewPCG(3, 4))} },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			got, err := readAll(testReader(mk()))
			if err != io.EOF {
				t.Fatalf("ended with %v", err)
			}
			if !equalReqs(got, want) {
				t.Fatalf("got %d requests, want %d (or contents differ)", len(got), len(want))
			}
		})
	}
}

// chunkReader returns data in random-sized pieces.
type chunkReader struct {
	data []byte
	rng  *rand.Rand
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.rng.IntN(200))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func TestReaderMalformed(t *testing.T) {
	cases := []struct {
		name, in, msg string
	}{
		{"bad count", "*abc\r\n", "invalid multibulk length"},
		{"count too big", "*2000000\r\n", "invalid multibulk length"},
		{"not a bulk", "*1\r\n:1\r\n", "expected '$', got ':'"},
		{"bad bulk length", "*1\r\n$x\r\n", "invalid bulk length"},
		{"negative bulk length", "*1\r\n$-1\r\n", "invalid bulk length"},
		{"bulk too big", "*1\r\n$600000000\r\n", "invalid bulk length"},
		{"overlong digits", "*1\r\n$1234567890123456789012\r\n", "invalid bulk length"},
		{"no CRLF after data", "*1\r\n$3\r\nabcde\r\n", "expected CRLF after bulk data"},
		{"unbalanced double", `GET "abc` + "\r\n", "unbalanced quotes in request"},
		{"unbalanced single", "GET 'abc\r\n", "unbalanced quotes in request"},
		{"text after quote", `GET "a"b` + "\r\n", "unbalanced quotes in request"},
		{"inline too long", strings.Repeat("a", 70_000), "too big inline request"},
		{"bulk header too long", "*1\r\n$" + strings.Repeat("1", 70_000), "too big bulk count string"},
		{"count header too long", "*" + strings.Repeat("1", 70_000), "too big mbulk count string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(testReader(strings.NewReader(tc.in)))
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("got %v, want protocol error %q", err, tc.msg)
			}
			if pe.Msg != tc.msg {
				t.Fatalf("got %q, want %q", pe.Msg, tc.msg)
			}
		})
	}
}

func TestReaderTruncated(t *testing.T) {
	for _, in := range []string{"*2\r\n$3\r\nGET\r\n", "*1\r\n$5\r\nab", "*1\r\n$2\r\nab", "*1\r", "GET a"} {
		_, err := readAll(testReader(strings.NewReader(in)))
		if err != io.ErrUnexpectedEOF {
			t.Errorf("%q: got %v, want ErrUnexpectedEOF", in, err)
		}
	}
}

// A huge declared length must not allocate before the bytes arrive.
func TestReaderHugeDeclaredLengths(t *testing.T) {
	// Limits wide open so only the incremental growth protects us.
	p := newReader(strings.NewReader("*1\r\n$500000000\r\nabc"), 1<<20, 512<<20, 1<<30, 1<<30)
	if _, err := p.ReadRequest(); err != io.ErrUnexpectedEOF {
		t.Fatalf("got %v", err)
	}
	if c := cap(p.scratch); c > 1<<20 {
		t.Fatalf("scratch grew to %d bytes for 3 bytes of data", c)
	}

	p = testReader(strings.NewReader("*1000000\r\n$1\r\na\r\n"))
	if _, err := p.ReadRequest(); err != io.ErrUnexpectedEOF {
		t.Fatalf("got %v", err)
	}
	if c := cap(p.req.Args); c > 1024 {
		t.Fatalf("args grew to %d for one element", c)
	}
	allocs := testing.AllocsPerRun(20, func() {
		p := testReader(strings.NewReader("*1000000\r\n$400000000\r\nab"))
		p.ReadRequest()
	})
	if allocs > 10 {
		t.Fatalf("%v allocations for a 2-byte request", allocs)
	}
}

func TestReaderOversizeSkipsArgument(t *testing.T) {
	big := strings.Repeat("v", 5000)
	in := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n" + big + "\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
	p := newReader(iotest.OneByteReader(strings.NewReader(in)), 1<<20, 512<<20, 1000, 1<<20)
	req, err := p.ReadRequest()
	if err != nil {
		t.Fatal(err)
	}
	if !req.Oversize || req.OversizeLen != 5000 || req.OversizeIndex != 2 || len(req.Args) != 3 {
		t.Fatalf("got oversize=%v len=%d idx=%d args=%d", req.Oversize, req.OversizeLen, req.OversizeIndex, len(req.Args))
	}
	if cap(p.scratch) > 4096 {
		t.Fatalf("scratch grew to %d while skipping", cap(p.scratch))
	}
	req, err = p.ReadRequest()
	if err != nil || req.Oversize || string(req.Args[0]) != "GET" || string(req.Args[1]) != "k" {
		t.Fatalf("next request: %v %+v", err, req)
	}

	// The per-request total limit.
	in = "*3\r\n$4\r\nMSET\r\n$600\r\n" + strings.Repeat("a", 600) + "\r\n$600\r\n" + strings.Repeat("b", 600) + "\r\n"
	p = newReader(strings.NewReader(in), 1<<20, 512<<20, 1000, 1000)
	req, err = p.ReadRequest()
	if err != nil || !req.Oversize || req.OversizeIndex != 2 || req.OversizeLen != 600 {
		t.Fatalf("got %v %+v", err, req)
	}
}

// Arguments handed out must not change when later requests are read.
func TestReaderArgsAreOwned(t *testing.T) {
	p := testReader(strings.NewReader("*2\r\n$3\r\nSET\r\n$3\r\nabc\r\n*2\r\n$3\r\nSET\r\n$3\r\nxyz\r\n"))
	req, _ := p.ReadRequest()
	first := req.Args[1]
	p.ReadRequest()
	if string(first) != "abc" {
		t.Fatalf("first request's argument became %q", first)
	}
	if cap(first) != len(first) {
		t.Fatalf("argument has spare capacity %d: appends would clobber its neighbour", cap(first))
	}
}

func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n",
		"PING\r\n", `SET "a\x41" 'b'` + "\r\n", "*1\r\n$-1\r\n", "*0\r\n", "*1\r\n$4\r\nab",
		"\r\n\n*", "*2\r\n$1\r\na\r\n$1\r\nb\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := newReader(bytes.NewReader(data), 64, 1<<16, 1024, 4096)
		for range 1000 {
			req, err := p.ReadRequest()
			if err != nil {
				return
			}
			if len(req.Args) == 0 {
				t.Fatal("empty request returned")
			}
		}
	})
}
