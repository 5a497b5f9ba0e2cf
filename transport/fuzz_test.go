package transport

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

// FuzzFrames reads a byte stream the way a connection does — header,
// length check against the max frame size, payload — and checks that
// nothing panics, no frame over the limit is accepted, the frames accepted
// re-encode to exactly the bytes they were read from, and a frame refused
// for its length is refused before its payload is read.
func FuzzFrames(f *testing.F) {
	const max = 1 << 18
	var seed []byte
	seed = appendFrame(seed, 0, frameHello, protocolVersion, 0, []byte("n1:7000"))
	seed = appendFrame(seed, 1, frameRequest, 3, 250, []byte("payload"))
	seed = appendFrame(seed, 1, frameCancel, 0, 0, nil)
	f.Add(seed)
	f.Add(append(appendFrame(nil, 9, frameResponse, 1, 0, nil), 0xff, 0xff, 0xff, 0xff))
	f.Add([]byte{0, 0, 0, 3})
	f.Fuzz(func(t *testing.T, stream []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(stream), 64<<10)
		hbuf := make([]byte, headerLen)
		consumed := 0
		for range 1000 {
			h, err := readHeader(br, hbuf)
			if err != nil {
				return
			}
			if err := checkLength(h, max); err != nil {
				if h.length >= frameOverhead && int64(h.length) <= max {
					t.Fatalf("length %d refused: %v", h.length, err)
				}
				if int64(h.length) > max && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("oversize frame refused with %v", err)
				}
				return
			}
			payload, err := readPayload(br, h.payloadLen())
			if err != nil {
				if consumed+headerLen+h.payloadLen() <= len(stream) {
					t.Fatalf("payload of %d bytes not read from a long enough stream: %v", h.payloadLen(), err)
				}
				return
			}
			frame := appendFrame(nil, h.id, h.typ, h.kind, h.timeout, payload)
			if !bytes.Equal(frame, stream[consumed:consumed+len(frame)]) {
				t.Fatalf("frame at %d re-encodes differently", consumed)
			}
			consumed += len(frame)
		}
	})
}
