// Package auth keeps a node's users: names with hashed passwords and
// bearer tokens, in a text file (--auth-file) that `ringkv user add` and
// `ringkv user token` write, and checks credentials against them.
//
// The file has one entry per line, fields separated by spaces; blank
// lines and lines starting with # are ignored:
//
//	password NAME pbkdf2-sha256$ITERATIONS$SALT$HASH
//	token    NAME sha256$HASH
//
// SALT and HASH are unpadded base64 (standard alphabet). A password is
// stretched with PBKDF2-HMAC-SHA256 (so a stolen file does not give the
// passwords away cheaply); a token is 32 random bytes, so a plain SHA-256
// of it is enough. A user may have a password, tokens, or both.
//
// Checking a password costs the PBKDF2 iterations (tens of milliseconds
// on purpose), and a Redis client authenticates every connection it opens,
// so a successful check is remembered: a bounded cache keyed by a keyed
// hash (HMAC with a per-process random key) of the name and password, so
// the plain password is never kept. A failed check is never cached.
package auth
