package version

import "errors"

// The limits of this package, together. They bound what one key can hold
// and what a client's context token can claim, so that every object a
// replica stores can also be sent to its peers and read back:
//
//   - [MaxObjectSize] bounds the encoding of one object (8 MiB). It is
//     below the peer transport's 16 MiB frame with room for the key and the
//     message header, so any object a replica stores can be replicated and
//     read remotely. [Object.Write] refuses a write whose object would
//     exceed it ([ErrObjectTooLarge]). [Merge] never drops a sibling for
//     size (that would lose a write another replica acknowledged);
//     [Object.CheckSize] tells a replica that a merge is over the limit,
//     and the replica refuses to store it.
//   - [MaxSiblings] bounds the siblings of one object (64); see its doc.
//   - [MaxContextEntries] bounds the entries of a clock decoded from a
//     client's token (256), [MaxActorSize] the length of an actor (a dot's
//     node part, see [Actor]) and [MaxCounter] a counter (2^62). A clock
//     or object that breaks them does not decode ([ErrMalformed]).
//
// Object contexts are not bounded by MaxContextEntries when they decode:
// an object's context grows by one entry per actor (node incarnation) that
// ever coordinated a write of the key, and refusing to decode such an
// object would make the key unreadable. A key whose context outgrows
// MaxContextEntries still reads and takes blind writes; its context token
// is then refused by ParseClock.
const (
	// MaxObjectSize is the largest encoded object (Object.Encode) a write
	// may produce and a replica stores.
	MaxObjectSize = 8 << 20
	// MaxContextEntries is the most entries DecodeClock and ParseClock
	// accept in a clock.
	MaxContextEntries = 256
	// MaxActorSize is the longest actor (node ID plus incarnation suffix)
	// accepted anywhere in a clock or object.
	MaxActorSize = 255
)

var (
	// ErrObjectTooLarge is returned (wrapped, with the sibling count and
	// size) by Write and WriteBlind when the new object would exceed
	// MaxObjectSize. The client should resolve the key's siblings (write
	// with the context of a read) or write a smaller value.
	ErrObjectTooLarge = errors.New("version: object too large")
	// ErrUnknownContext is returned (wrapped) by [Object.AdmitContext] for a
	// client context that names writes the key never had.
	ErrUnknownContext = errors.New("context names writes this key never had; read the key again and write with the new context")
	// ErrCounterExhausted is returned by Write and WriteBlind when the
	// actor's counter for the key has reached MaxCounter.
	ErrCounterExhausted = errors.New("version: counter exhausted")
	// ErrBadActor is returned by Write and WriteBlind for an actor that is
	// not well formed (see Actor).
	ErrBadActor = errors.New("version: malformed actor")
)
