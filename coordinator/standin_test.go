package coordinator_test

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringkv/ringkv/version"
)

// handoffMessage is a kindHandoff request (peer message kind 6) naming
// primary, with one entry per key: uvarint len(primary) | primary | uvarint
// count | count × (uvarint len(key) | key | uvarint len(object) | object).
func handoffMessage(primary string, keys [][]byte, obj *version.Object) []byte {
	b := binary.AppendUvarint(nil, uint64(len(primary)))
	b = append(b, primary...)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	enc := obj.Encode(nil)
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(enc)))
		b = append(b, enc...)
	}
	return b
}

const kindHandoff = 6

// A fallback stands in only for a valid node that is a primary of every
// key of the message in its ring; anything else is refused whole, before
// anything is kept or stored. (Before: an invalid or unrelated primary got
// a hint that could never go anywhere useful, and a message naming the
// fallback itself was applied with no hint at all.)
func TestStandInRefusesABadPrimary(t *testing.T) {
	c := newSloppyCluster(t, time.Hour)
	ctx := ctxT(t)
	key := []byte("standin-check")
	pref := c.Ring.PreferenceForKey(key)
	var outsiders []string
	for _, id := range c.IDs() {
		if !slices.Contains(pref, id) {
			outsiders = append(outsiders, id)
		}
	}
	fb, other := outsiders[0], outsiders[1]
	// A second key of which pref[0] is not a primary.
	var foreign []byte
	for i := 0; foreign == nil; i++ {
		k := []byte("foreign-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26))
		if !slices.Contains(c.Ring.PreferenceForKey(k), pref[0]) && !slices.Contains(c.Ring.PreferenceForKey(k), fb) {
			foreign = k
		}
	}
	obj := &version.Object{}
	if _, err := obj.WriteBlind(version.Actor(pref[0], 1), []byte("v"), false, 1); err != nil {
		t.Fatal(err)
	}
	co := c.Node(fb).Coord
	for _, bad := range []struct {
		name, primary string
		keys          [][]byte
		want          string
	}{
		{"actor separator", "n1~x", [][]byte{key}, "node ID"},
		{"too long", strings.Repeat("n", 244), [][]byte{key}, "node ID"},
		{"self, not a primary", fb, [][]byte{key}, "not a primary"},
		{"not a primary", other, [][]byte{key}, "not a primary"},
		{"not a primary of every key", pref[0], [][]byte{key, foreign}, "not a primary"},
	} {
		_, err := co.Handle(ctx, pref[1], kindHandoff, handoffMessage(bad.primary, bad.keys, obj))
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Fatalf("%s: stand in for %.20q: %v, want a refusal naming %q", bad.name, bad.primary, err, bad.want)
		}
		for _, k := range bad.keys {
			if got := storedValues(t, c, fb, k); got != nil {
				t.Fatalf("%s: refused, yet %s holds %q of %q", bad.name, fb, got, k)
			}
		}
		for target, st := range c.Node(fb).Hints.Stats() {
			if st.Pending != 0 {
				t.Fatalf("%s: refused, yet %s keeps %d hints for %.20q", bad.name, fb, st.Pending, target)
			}
		}
	}
	// A primary named in its own ring's list, and self when a primary of
	// every key: accepted.
	if _, err := co.Handle(ctx, pref[1], kindHandoff, handoffMessage(pref[0], [][]byte{key}, obj)); err != nil {
		t.Fatalf("stand in for %s: %v", pref[0], err)
	}
	if st := c.Node(fb).Hints.Stats()[pref[0]]; st.Pending != 1 {
		t.Fatalf("stand in for %s: %d hints kept, want 1", pref[0], st.Pending)
	}
	if _, err := c.Node(pref[2]).Coord.Handle(ctx, pref[1], kindHandoff, handoffMessage(pref[2], [][]byte{key}, obj)); err != nil {
		t.Fatalf("a handoff naming a primary of the key to itself: %v", err)
	}
	if got := storedValues(t, c, pref[2], key); !slices.Equal(got, []string{"v"}) {
		t.Fatalf("a handoff naming itself was not applied: %q", got)
	}
}
