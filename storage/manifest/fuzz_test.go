package manifest

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/ringkv/ringkv/storage/base"
)

// FuzzDecodeVersionEdit: Decode never panics, fails only with corruption
// errors, and whatever it accepts re-encodes to bytes that decode to an
// equal edit and re-encode identically.
func FuzzDecodeVersionEdit(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var e VersionEdit
		if err := e.Decode(data); err != nil {
			if !errors.Is(err, base.ErrCorruption) {
				t.Fatalf("error %v does not wrap base.ErrCorruption", err)
			}
			if !reflect.DeepEqual(e, VersionEdit{}) {
				t.Fatalf("failed Decode left %+v", e)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("decoded edit fails Validate: %v", err)
		}
		enc := e.Encode(nil)
		var e2 VersionEdit
		if err := e2.Decode(enc); err != nil {
			t.Fatalf("re-encoded edit does not decode: %v", err)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the edit\nfirst  %+v\nsecond %+v", e, e2)
		}
		if enc2 := e2.Encode(nil); !bytes.Equal(enc, enc2) {
			t.Fatal("encoding is not stable")
		}
	})
}
