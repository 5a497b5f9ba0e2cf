package wal

import (
	"bytes"
	"testing"
)

// copyInOrder copies exactly what copy does, for every length and
// misalignment around its eight-byte steps.
func TestCopyInOrderMatchesCopy(t *testing.T) {
	src := make([]byte, 300)
	for i := range src {
		src[i] = byte(i*7 + 3)
	}
	for off := range 9 {
		for n := range 100 {
			for dstLen := n - 3; dstLen <= n+3; dstLen++ {
				if dstLen < 0 {
					continue
				}
				want := bytes.Repeat([]byte{0xAA}, dstLen+off)
				got := bytes.Clone(want)
				wn := copy(want[off:], src[off:off+n])
				gn := copyInOrder(got[off:], src[off:off+n])
				if wn != gn || !bytes.Equal(want, got) {
					t.Fatalf("off %d n %d dst %d: copied %d (%x), want %d (%x)", off, n, dstLen, gn, got, wn, want)
				}
			}
		}
	}
}
