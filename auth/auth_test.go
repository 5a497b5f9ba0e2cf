package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPasswordsAndTokensThroughTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	h, err := HashPassword("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	token, th, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := Update(path, SetPassword("alice", h)); err != nil {
		t.Fatal(err)
	}
	if err := Update(path, AddToken("ci-bot", th)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("auth file mode: %v %v, want 0600", fi.Mode(), err)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), "correct horse") || strings.Contains(string(data), token) {
		t.Fatalf("the file holds a secret in the clear:\n%s", data)
	}
	u, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.CheckPassword("alice", "correct horse"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	for _, c := range [][2]string{{"alice", "correct horsE"}, {"alice", ""}, {"bob", "correct horse"}, {"ci-bot", token}} {
		if err := u.CheckPassword(c[0], c[1]); err != ErrBadCredentials {
			t.Fatalf("CheckPassword(%q, %q) = %v, want ErrBadCredentials", c[0], c[1], err)
		}
	}
	if user, err := u.CheckToken(token); err != nil || user != "ci-bot" {
		t.Fatalf("CheckToken: %q %v", user, err)
	}
	if _, err := u.CheckToken(token + "x"); err != ErrBadCredentials {
		t.Fatalf("wrong token: %v", err)
	}
	if got := strings.Join(u.Names(), ","); got != "alice,ci-bot" {
		t.Fatalf("Names = %s", got)
	}
	// A new password replaces the old one.
	h2, _ := HashPassword("battery staple")
	if err := Update(path, SetPassword("alice", h2)); err != nil {
		t.Fatal(err)
	}
	u, _ = Load(path)
	if u.CheckPassword("alice", "correct horse") == nil || u.CheckPassword("alice", "battery staple") != nil {
		t.Fatalf("the password was not replaced")
	}
	if err := Update(path, Remove("alice")); err != nil {
		t.Fatal(err)
	}
	u, _ = Load(path)
	if u.CheckPassword("alice", "battery staple") == nil {
		t.Fatalf("a removed user still authenticates")
	}
	if err := Update(path, Remove("nobody")); err == nil {
		t.Fatalf("removing an unknown user succeeded")
	}
}

// The cache makes a repeated check cheap, and remembers only successes.
func TestSuccessfulChecksAreRemembered(t *testing.T) {
	h, _ := HashPassword("pw")
	u, err := Parse(strings.NewReader("password alice " + h + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := u.CheckPassword("alice", "pw"); err != nil {
		t.Fatal(err)
	}
	first := time.Since(start)
	start = time.Now()
	for range 100 {
		if err := u.CheckPassword("alice", "pw"); err != nil {
			t.Fatal(err)
		}
	}
	again := time.Since(start) / 100
	t.Logf("first check %v, cached %v", first, again)
	if again*10 > first {
		t.Fatalf("a cached check took %v, the first %v: not cached", again, first)
	}
	if len(u.cache) != 1 {
		t.Fatalf("cache holds %d entries, want 1", len(u.cache))
	}
	u.CheckPassword("alice", "wrong")
	if len(u.cache) != 1 {
		t.Fatalf("a failed check was cached")
	}
}

func TestParseRefusesBadFiles(t *testing.T) {
	h, _ := HashPassword("pw")
	for _, bad := range []string{
		"password alice",
		"secret alice " + h,
		"password al:ice " + h,
		"password alice pbkdf2-sha256$0$AAAAAAAAAAA$AAAA",
		"password alice pbkdf2-sha256$999999999$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"token bob sha256$short",
		"password alice " + h + "\npassword alice " + h,
	} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	path := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(path, []byte("# nobody\n"), 0o600)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "no users") {
		t.Fatalf("Load of an empty file: %v", err)
	}
}
