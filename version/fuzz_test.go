package version

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"testing"
)

// FuzzDecodeObject checks that DecodeObject never panics, fails only with
// the documented errors, and accepts only canonical encodings: whatever it
// accepts is a valid object that re-encodes to the same bytes.
// Seeds: testdata/fuzz/FuzzDecodeObject plus the ones added below.
func FuzzDecodeObject(f *testing.F) {
	var a, b Object
	a.Write("a", nil, []byte("hello"), false, 1)
	b.Write(Actor("b", 12345), nil, nil, true, -1)
	f.Add(Merge(&a, &b).Encode(nil))
	f.Add((*Object)(nil).Encode(nil))
	var named Object // siblings with write IDs, two of them sharing one
	named.WriteOnce("a", nil, false, 5, []byte("x"), false, 1)
	named.WriteOnce("b", nil, false, 5, []byte("y"), false, 2)
	named.WriteOnce("c", nil, false, 6, nil, true, 3)
	f.Add(named.Encode(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := DecodeObject(data)
		if _, _, _, werr := DecodeWinner(data); (werr == nil) != (err == nil) {
			t.Fatalf("DecodeObject error %v but DecodeWinner error %v", err, werr)
		}
		ctx, cerr := DecodeContext(data)
		if fmt.Sprint(cerr) != fmt.Sprint(err) {
			t.Fatalf("DecodeObject error %v but DecodeContext error %v", err, cerr)
		}
		if err == nil && !maps.Equal(ctx, o.Context) {
			t.Fatalf("DecodeContext = %v, DecodeObject's context %v", ctx, o.Context)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownFormat) {
				t.Fatalf("undocumented error: %v", err)
			}
			return
		}
		requireWinner(t, data, o)
		if err := o.Validate(); err != nil {
			t.Fatalf("decoded invalid object %v: %v", o, err)
		}
		if enc := o.Encode(nil); !bytes.Equal(enc, data) {
			t.Fatalf("not canonical: %x re-encodes to %x", data, enc)
		}
		// Decoded objects are usable: merging and writing keep them valid.
		m := Merge(o, o)
		if !m.Equal(o) {
			t.Fatalf("merge with itself changed %v to %v", o, m)
		}
		for _, actor := range append(o.Context.Nodes(), "fuzz", Actor("fuzz", 1)) {
			w := o.Clone()
			if _, err := w.WriteBlind(actor, []byte("v"), false, 0); err != nil {
				// Only an actor at MaxCounter cannot write (objects this
				// small cannot reach MaxObjectSize).
				if !errors.Is(err, ErrCounterExhausted) || o.Context[actor] != MaxCounter {
					t.Fatalf("WriteBlind by %q on %v: %v", actor, o, err)
				}
				if !w.Equal(o) {
					t.Fatal("a failed write changed the object")
				}
				continue
			}
			if err := w.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeObject(w.Encode(nil)); err != nil {
				t.Fatalf("written object does not decode: %v", err)
			}
		}
	})
}
