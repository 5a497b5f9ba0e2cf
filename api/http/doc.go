// Package httpapi serves ringkv over HTTP with JSON bodies. It is a thin
// layer: it decodes a request, calls a [Store] (the node's
// coordinator.Coordinator in production, [MemoryStore] in tests) and encodes
// the answer. It knows nothing of rings or replicas beyond the JSON shape of
// [ClusterStatus], which the server fills in through a [ClusterView].
//
// # Routes
//
//	GET    /v1/kv/{key}[?r=LEVEL][&pr=LEVEL]   read a key
//	HEAD   /v1/kv/{key}[?r=LEVEL][&pr=LEVEL]   same, without a body
//	PUT    /v1/kv/{key}[?w=LEVEL][&pw=LEVEL]   write the request body as the value
//	DELETE /v1/kv/{key}[?w=LEVEL][&pw=LEVEL]   delete (write a tombstone)
//	GET    /v1/cluster              membership and partition ownership
//	GET    /healthz                 "ok"
//
// {key} is the key's bytes, percent-encoded: any byte may appear, "/"
// included (as %2F; an unescaped "/" is part of the key too). Keys are 1 to
// [Options.MaxKeySize] bytes. LEVEL is a positive replica count or ONE,
// QUORUM or ALL (case-insensitive); absent means the coordinator's default.
// r and w also take the datacenter levels LOCAL_ONE, LOCAL_QUORUM (counted
// in the datacenter of the node the request was sent to) and EACH_QUORUM
// (a majority in every datacenter with replicas). r and w count the nodes
// that answer, fallbacks standing in for down primaries included (sloppy
// quorum); pr and pw how many of them must be the key's primaries (absent
// or 0: no requirement; not a datacenter level). An unmet level is a 503
// naming it, with the counts in replicas_needed and replicas_answered
// (those of the datacenter named, for a datacenter level).
//
// # Causal context and siblings
//
// Every version of a key is tagged by the replica that coordinated its
// write. A read returns all live versions the replicas hold that no other
// version supersedes — usually one, several ("siblings") when writes were
// concurrent — plus an opaque causal-context token, in the
// X-Ringkv-Context header and the "context" field, that names exactly what
// the read saw.
//
// A write carrying that token in its X-Ringkv-Context header replaces
// exactly the versions the token covers: a client that read two siblings,
// merged them and writes with the read's context collapses them into one
// value. Versions the client did not see stay as siblings of the new value;
// no concurrent write is silently lost.
//
// A write without a token (header absent or empty) is a blind write: it
// replaces whatever the coordinating replica holds for the key, but stays
// concurrent with writes that replica has not seen yet. A malformed token is
// rejected with 400.
//
// Deletes are writes of a tombstone under the same rules. A deleted key
// reads as 404, but the 404 still carries the context header (and "context"
// in the JSON body) so that a client can write "after" the delete.
//
// # Reads
//
// GET answers 200 with
//
//	{"key": "k", "context": "TOKEN",
//	 "siblings": [{"value": "<base64>", "value_text": "v",
//	               "timestamp": "2024-01-02T03:04:05.123456789Z",
//	               "dot": {"node": "n1", "counter": 3}}]}
//
// value is the standard base64 of the bytes; value_text is the same value
// as a string, present only when the bytes are valid UTF-8. key_base64
// appears only when the key is not valid UTF-8. Siblings are in dot order.
// The response also carries X-Ringkv-Context and X-Ringkv-Siblings (the
// number of siblings).
//
// With "Accept: application/octet-stream" (listed before any JSON type),
// GET answers the raw bytes of the newest sibling (largest timestamp, ties
// by dot: last-write-wins, chosen explicitly by the client) with the same
// two headers; X-Ringkv-Siblings > 1 tells the client it resolved a
// conflict by LWW and may want the JSON form instead.
//
// # Writes
//
// PUT takes the raw value as the body (at most [Options.MaxValueSize]
// bytes, else 413). PUT and DELETE answer 204 No Content, with the new
// context in X-Ringkv-Context, when the key has no live version besides the
// one just written (for DELETE: no live version at all). When concurrent
// live versions remain, they answer 200 with the read JSON body instead, so
// that the client sees every version the returned context covers before it
// writes with it again.
//
// A PUT or DELETE may carry X-Ringkv-Write-Id: 1 to 16 hexadecimal digits,
// not all zero, that the client picks at random for the write and sends
// again with every attempt of it (a retry after a timeout or a 5xx). The
// cluster then applies the write once: a replica that already holds it
// does not store it again, and two attempts stored by two replicas become
// one version when their states meet (coordinator.WithWriteID). A
// malformed ID is refused with 400. The Go client (package client) sends
// one with every write. An ID names one write: never send it with another
// (even of the same value): a replica that holds a version under that ID
// and value, which the write's context does not cover, takes the write for
// a retry of it and stores nothing.
//
// # Errors
//
// Errors are JSON: {"error": "message"} plus, for quorum failures,
// "replicas_answered", "replicas_needed" and "replicas". Statuses: 400 for a
// bad key, level, context token or write ID; 404 not found; 405 wrong method (with
// Allow); 413 value too large; 503 quorum not reached or no replicas; 504
// deadline exceeded; 500 otherwise.
package httpapi
