package resp

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// MapBackend is an in-memory Backend for tests and demos. It models
// siblings the way the cluster does, in miniature: each write is a sibling
// with a sequence number; a causal context names the siblings it saw; a
// write with a context replaces exactly those and keeps the others; a write
// without context (Set) replaces them all. Get returns the newest sibling.
type MapBackend struct {
	mu   sync.RWMutex
	m    map[string][]memSibling
	next uint64
}

type memSibling struct {
	seq   uint64
	value []byte
}

// NewMapBackend returns an empty MapBackend.
func NewMapBackend() *MapBackend {
	return &MapBackend{m: make(map[string][]memSibling)}
}

var _ Backend = (*MapBackend)(nil)
var _ DBSizer = (*MapBackend)(nil)

// Get returns the newest sibling's value.
func (b *MapBackend) Get(_ context.Context, key []byte) ([]byte, bool, error) {
	b.mu.RLock()
	sibs := b.m[string(key)]
	b.mu.RUnlock()
	if len(sibs) == 0 {
		return nil, false, nil
	}
	return sibs[len(sibs)-1].value, true, nil // kept in seq order
}

// Set replaces every sibling of key with value.
func (b *MapBackend) Set(_ context.Context, key, value []byte) error {
	b.mu.Lock()
	b.next++
	b.m[string(key)] = []memSibling{{seq: b.next, value: value}}
	b.mu.Unlock()
	return nil
}

// Delete removes key.
func (b *MapBackend) Delete(_ context.Context, key []byte) (bool, error) {
	b.mu.Lock()
	_, ok := b.m[string(key)]
	delete(b.m, string(key))
	b.mu.Unlock()
	return ok, nil
}

// Siblings returns every sibling of key, oldest first, and a context
// ("m:" and their sequence numbers) covering them.
func (b *MapBackend) Siblings(_ context.Context, key []byte) (string, [][]byte, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	sibs := b.m[string(key)]
	if len(sibs) == 0 {
		return "", nil, nil
	}
	var tok strings.Builder
	tok.WriteString("m:")
	values := make([][]byte, len(sibs))
	for i, s := range sibs {
		if i > 0 {
			tok.WriteByte('.')
		}
		tok.WriteString(strconv.FormatUint(s.seq, 10))
		values[i] = s.value
	}
	return tok.String(), values, nil
}

// ErrBadContext is returned by MapBackend.PutWithContext for a context it did not issue.
var ErrBadContext = errors.New("invalid causal context")

// PutWithContext replaces the siblings that context saw with value and
// keeps the rest, which become value's siblings.
func (b *MapBackend) PutWithContext(_ context.Context, key []byte, cctx string, value []byte) error {
	var seen []uint64
	if cctx != "" {
		rest, ok := strings.CutPrefix(cctx, "m:")
		if !ok {
			return ErrBadContext
		}
		for _, f := range strings.Split(rest, ".") {
			n, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return ErrBadContext
			}
			seen = append(seen, n)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.m[string(key)]
	sibs := make([]memSibling, 0, len(old)+1)
	for _, s := range old {
		if !slices.Contains(seen, s.seq) {
			sibs = append(sibs, s)
		}
	}
	b.next++
	b.m[string(key)] = append(sibs, memSibling{seq: b.next, value: value})
	return nil
}

// DBSize returns the number of keys.
func (b *MapBackend) DBSize(context.Context) (int64, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return int64(len(b.m)), nil
}

// Info reports the backend's kind and key count.
func (b *MapBackend) Info() []InfoSection {
	b.mu.RLock()
	n := len(b.m)
	b.mu.RUnlock()
	return []InfoSection{{Name: "Backend", Fields: [][2]string{
		{"backend", "memory"},
		{"keys", strconv.Itoa(n)},
	}}}
}
