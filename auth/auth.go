package auth

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Iterations is the PBKDF2 work factor of passwords written by
// HashPassword.
const Iterations = 100_000

const (
	saltSize  = 16
	hashSize  = 32
	tokenSize = 32
	// cacheSize bounds the remembered successful password checks.
	cacheSize = 4096
	// maxIterations bounds the work factor a file may ask for, so a
	// corrupt or hostile file cannot make each check take minutes.
	maxIterations = 10_000_000
)

var b64 = base64.RawStdEncoding

// ErrBadCredentials: the user is unknown, or the password or token is
// wrong (one error for all, so a caller cannot tell which).
var ErrBadCredentials = errors.New("invalid user name or password")

// Entry is one line of the file.
type Entry struct {
	Kind string // "password" or "token"
	User string
	Hash string // the encoded hash, as in the file
}

// Users is a set of credentials, safe for concurrent use.
type Users struct {
	entries []Entry
	// passwords and tokens index the parsed entries.
	passwords map[string]passwordHash
	tokens    map[[32]byte]string // sha256 of the token -> user

	cacheKey [32]byte
	mu       sync.Mutex
	cache    map[[32]byte]struct{}
}

type passwordHash struct {
	iter       int
	salt, hash []byte
}

// Load reads an auth file. An empty file (no user) is refused: a node
// started with --auth-file must be reachable by someone.
func Load(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	u, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	if len(u.entries) == 0 {
		return nil, fmt.Errorf("auth file %s: no users (add one with `ringkv user add NAME --auth-file %s`)", path, path)
	}
	return u, nil
}

// Parse reads the file's format.
func Parse(r io.Reader) (*Users, error) {
	u := &Users{passwords: map[string]passwordHash{}, tokens: map[[32]byte]string{}, cache: map[[32]byte]struct{}{}}
	if _, err := rand.Read(u.cacheKey[:]); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			return nil, fmt.Errorf("line %d: want KIND NAME HASH, got %d fields", n, len(fields))
		}
		e := Entry{Kind: fields[0], User: fields[1], Hash: fields[2]}
		if err := validName(e.User); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		switch e.Kind {
		case "password":
			ph, err := parsePasswordHash(e.Hash)
			if err != nil {
				return nil, fmt.Errorf("line %d (user %s): %w", n, e.User, err)
			}
			if _, dup := u.passwords[e.User]; dup {
				return nil, fmt.Errorf("line %d: a second password for user %s", n, e.User)
			}
			u.passwords[e.User] = ph
		case "token":
			h, ok := strings.CutPrefix(e.Hash, "sha256$")
			sum, err := b64.DecodeString(h)
			if !ok || err != nil || len(sum) != sha256.Size {
				return nil, fmt.Errorf("line %d (user %s): token hash must be sha256$ and 32 bytes of base64", n, e.User)
			}
			u.tokens[[32]byte(sum)] = e.User
		default:
			return nil, fmt.Errorf("line %d: unknown kind %q (want password or token)", n, e.Kind)
		}
		u.entries = append(u.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return u, nil
}

func validName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("user name %q: 1 to 64 characters", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.@", r)) {
			return fmt.Errorf("user name %q: only letters, digits and - _ . @", name)
		}
	}
	return nil
}

func parsePasswordHash(s string) (passwordHash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 4 || parts[0] != "pbkdf2-sha256" {
		return passwordHash{}, errors.New("password hash must be pbkdf2-sha256$ITERATIONS$SALT$HASH")
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > maxIterations {
		return passwordHash{}, fmt.Errorf("password hash: iterations %q must be 1 to %d", parts[1], maxIterations)
	}
	salt, err1 := b64.DecodeString(parts[2])
	hash, err2 := b64.DecodeString(parts[3])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(hash) != hashSize {
		return passwordHash{}, errors.New("password hash: salt or hash is not valid base64 of the right length")
	}
	return passwordHash{iter: iter, salt: salt, hash: hash}, nil
}

// HashPassword returns the file encoding of password, with a new salt.
func HashPassword(password string) (string, error) {
	salt := make([]byte, saltSize)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	h, err := pbkdf2.Key(sha256.New, password, salt, Iterations, hashSize)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("pbkdf2-sha256$%d$%s$%s", Iterations, b64.EncodeToString(salt), b64.EncodeToString(h)), nil
}

// NewToken returns a new random bearer token and its file encoding.
func NewToken() (token, hash string, err error) {
	raw := make([]byte, tokenSize)
	if _, err := rand.Read(raw); err != nil {
		return "", "", err
	}
	token = "rk_" + base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(token))
	return token, "sha256$" + b64.EncodeToString(sum[:]), nil
}

// CheckPassword reports whether password is user's.
func (u *Users) CheckPassword(user, password string) error {
	ph, ok := u.passwords[user]
	if !ok {
		// As slow as a known user's check, so that the time taken does
		// not tell which users exist.
		stretch(password, dummyHash)
		return ErrBadCredentials
	}
	mac := hmac.New(sha256.New, u.cacheKey[:])
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var key [32]byte
	mac.Sum(key[:0])
	u.mu.Lock()
	_, hit := u.cache[key]
	u.mu.Unlock()
	if hit {
		return nil
	}
	h, err := stretch(password, ph)
	if err != nil || subtle.ConstantTimeCompare(h, ph.hash) != 1 {
		return ErrBadCredentials
	}
	u.mu.Lock()
	if len(u.cache) >= cacheSize {
		for k := range u.cache { // evict one, any
			delete(u.cache, k)
			break
		}
	}
	u.cache[key] = struct{}{}
	u.mu.Unlock()
	return nil
}

// stretching bounds the PBKDF2 computations running at once, so a flood
// of wrong passwords costs this node at most that many cores (it delays
// other logins, not the connections already authenticated).
var stretching = make(chan struct{}, 2)

// dummyHash is checked against for unknown users.
var dummyHash = passwordHash{iter: Iterations, salt: make([]byte, saltSize), hash: make([]byte, hashSize)}

// errBusy: too many password checks waiting (a flood of attempts).
var errBusy = errors.New("auth: too many password checks at once")

func stretch(password string, ph passwordHash) ([]byte, error) {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case stretching <- struct{}{}:
	case <-t.C:
		return nil, errBusy // fails the check: better than queueing without bound
	}
	defer func() { <-stretching }()
	return pbkdf2.Key(sha256.New, password, ph.salt, ph.iter, len(ph.hash))
}

// CheckToken returns the user a bearer token belongs to.
func (u *Users) CheckToken(token string) (string, error) {
	sum := sha256.Sum256([]byte(token))
	user, ok := u.tokens[sum]
	if !ok {
		return "", ErrBadCredentials
	}
	return user, nil
}

// Names lists the users, sorted.
func (u *Users) Names() []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range u.entries {
		if !seen[e.User] {
			seen[e.User] = true
			out = append(out, e.User)
		}
	}
	sort.Strings(out)
	return out
}

// Update rewrites the file at path (created if absent, mode 0600) with
// change applied to its entries: it is given the current entries and
// returns the new ones. The file is replaced atomically.
func Update(path string, change func([]Entry) ([]Entry, error)) error {
	var entries []Entry
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		u, err := Parse(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("auth file %s: %w", path, err)
		}
		entries = u.entries
	case errors.Is(err, os.ErrNotExist):
	default:
		return fmt.Errorf("auth file: %w", err)
	}
	entries, err = change(entries)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString("# ringkv users: written by `ringkv user`; one KIND NAME HASH per line\n")
	for _, e := range entries {
		if err := validName(e.User); err != nil {
			return err
		}
		fmt.Fprintf(&buf, "%s %s %s\n", e.Kind, e.User, e.Hash)
	}
	if _, err := Parse(bytes.NewReader(buf.Bytes())); err != nil {
		return fmt.Errorf("auth file %s: the new contents do not parse: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ringkv-auth-*")
	if err != nil {
		return fmt.Errorf("auth file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("auth file: %w", err)
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("auth file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("auth file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("auth file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("auth file: %w", err)
	}
	return nil
}

// SetPassword is an Update change that gives user the password hash
// (replacing an earlier one).
func SetPassword(user, hash string) func([]Entry) ([]Entry, error) {
	return func(entries []Entry) ([]Entry, error) {
		if err := validName(user); err != nil {
			return nil, err
		}
		out := entries[:0:0]
		for _, e := range entries {
			if !(e.Kind == "password" && e.User == user) {
				out = append(out, e)
			}
		}
		return append(out, Entry{Kind: "password", User: user, Hash: hash}), nil
	}
}

// AddToken is an Update change that adds a token hash for user.
func AddToken(user, hash string) func([]Entry) ([]Entry, error) {
	return func(entries []Entry) ([]Entry, error) {
		if err := validName(user); err != nil {
			return nil, err
		}
		return append(entries, Entry{Kind: "token", User: user, Hash: hash}), nil
	}
}

// Remove is an Update change that removes every entry of user.
func Remove(user string) func([]Entry) ([]Entry, error) {
	return func(entries []Entry) ([]Entry, error) {
		out := entries[:0:0]
		for _, e := range entries {
			if e.User != user {
				out = append(out, e)
			}
		}
		if len(out) == len(entries) {
			return nil, fmt.Errorf("no user %s", user)
		}
		return out, nil
	}
}
