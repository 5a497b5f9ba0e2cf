package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"
)

// credentials are the global flags a command talking to a node's HTTP
// port uses: a user and password (or a bearer token), and the CA that
// signed the node's certificate (then the command speaks HTTPS).
var credentials struct {
	user, password, token, cacert string
}

// addCredentialFlags registers the global connection flags on root.
func addCredentialFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&credentials.user, "user", envOr("RINGKV_USER", ""), "user name for nodes started with --auth-file (env RINGKV_USER)")
	f.StringVar(&credentials.password, "password", "", "that user's password (better: env RINGKV_PASSWORD, which other users of this host cannot read from the process list)")
	f.StringVar(&credentials.token, "token", "", "a bearer token instead of a user and password (or env RINGKV_TOKEN)")
	f.StringVar(&credentials.cacert, "cacert", envOr("RINGKV_CACERT", ""), "PEM file of the CA that signed the nodes' --tls-cert: connect over HTTPS (env RINGKV_CACERT)")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

var (
	cliClientOnce sync.Once
	cliClient     *http.Client
	cliClientErr  error
)

// httpClient returns the HTTP client of the connection flags: it carries
// the credentials on every request and trusts --cacert.
func httpClient() (*http.Client, error) {
	cliClientOnce.Do(func() {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if credentials.cacert != "" {
			pem, err := os.ReadFile(credentials.cacert)
			if err != nil {
				cliClientErr = fmt.Errorf("--cacert: %w", err)
				return
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				cliClientErr = fmt.Errorf("--cacert %s: no PEM certificate in it", credentials.cacert)
				return
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		password := credentials.password
		if password == "" {
			password = os.Getenv("RINGKV_PASSWORD")
		}
		token := credentials.token
		if token == "" {
			token = os.Getenv("RINGKV_TOKEN")
		}
		cliClient = &http.Client{Transport: authTransport{next: tr, user: credentials.user, password: password, token: token}}
	})
	return cliClient, cliClientErr
}

// nodeURL is the URL of path on the node at addr: addr as given when it
// names its scheme, else HTTPS when --cacert is set, HTTP otherwise.
func nodeURL(addr, path string) string {
	if strings.Contains(addr, "://") {
		return strings.TrimRight(addr, "/") + path
	}
	if credentials.cacert != "" {
		return "https://" + addr + path
	}
	return "http://" + addr + path
}

// authTransport adds the credentials to each request.
type authTransport struct {
	next                  http.RoundTripper
	user, password, token string
}

func (t authTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case t.token != "":
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+t.token)
	case t.user != "" || t.password != "":
		r = r.Clone(r.Context())
		user := t.user
		if user == "" {
			user = "default"
		}
		r.SetBasicAuth(user, t.password)
	}
	return t.next.RoundTrip(r)
}
