package ring

import "testing"

// The expected values are XXH64 with seed 0 as published by the reference
// implementation. Changing any of them changes the on-disk key order and
// which node owns which key, so a failure here is never fixed by updating
// the table.
func TestTokenGoldenValuesNeverChange(t *testing.T) {
	golden := []struct {
		key  string
		want uint64
	}{
		{"", 0xef46db3751d8e999},
		{"a", 0xd24ec4f1a98c6e5b},
		{"abc", 0x44bc2cf5ad770999},
		{"hello world", 0x45ab6734b21e6968},
		{"0123456789abcdef0123456789abcdef", 0x642a94958e71e6c5},
		{"The quick brown fox jumps over the lazy dog.", 0x44ad33705751ad73},
		// 67 bytes: stripes, an 8-byte word and a 3-byte tail.
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef012", 0x8986c3bbdc76c903},
	}
	for _, g := range golden {
		if got := Token([]byte(g.key)); got != g.want {
			t.Errorf("Token(%q) = %#016x, want %#016x", g.key, got, g.want)
		}
	}
}

func TestTokenCoversTailLengths(t *testing.T) {
	// Every length from 0 to 40 exercises a different mix of the stripe,
	// 8-byte, 4-byte and 1-byte paths; distinct prefixes must hash apart.
	buf := []byte("abcdefghijklmnopqrstuvwxyz0123456789ABCD")
	seen := map[uint64]int{}
	for n := 0; n <= len(buf); n++ {
		h := Token(buf[:n])
		if m, dup := seen[h]; dup {
			t.Fatalf("Token of prefix %d equals Token of prefix %d", n, m)
		}
		seen[h] = n
	}
}

func BenchmarkToken16(b *testing.B) {
	key := []byte("user:0000001234!")
	b.SetBytes(int64(len(key)))
	for b.Loop() {
		Token(key)
	}
}
