package coordinator

import (
	"context"
	"fmt"
	"testing"

	"github.com/ringkv/ringkv/transport"
	"github.com/ringkv/ringkv/version"
)

// A replica that answers that it refuses a version (too large to merge
// with what it holds, malformed) gets no hint: it would refuse it on every
// delivery and hold up its other hints. Every other failure — no answer,
// unreachable, any other remote error — is a missed write and gets one.
func TestMissedTellsRefusalsFromMissedWrites(t *testing.T) {
	refused := func(err error) error {
		return &transport.RemoteError{Addr: "n3", Kind: kindReplicate, Message: fmt.Errorf("replicate %q: %w", "k", err).Error()}
	}
	for _, tc := range []struct {
		err    error
		missed bool
	}{
		{nil, false},
		{refused(fmt.Errorf("replica apply: %w: 2 siblings", version.ErrObjectTooLarge)), false},
		{refused(fmt.Errorf("%w: bad dot", version.ErrMalformed)), false},
		{fmt.Errorf("wrapped: %w", refused(version.ErrObjectTooLarge)), false},
		{refused(fmt.Errorf("node is starting")), true},
		{fmt.Errorf("call: %w", transport.ErrUnreachable), true},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), true},
	} {
		if got := missed(tc.err); got != tc.missed {
			t.Errorf("missed(%v) = %v, want %v", tc.err, got, tc.missed)
		}
	}
}
