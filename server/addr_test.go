package server

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// fakeAddrEnv resolves names from a table and lists local as this host's
// addresses; names missing from the table do not resolve.
func fakeAddrEnv(names map[string][]string, local ...string) addrEnv {
	ips := func(ss []string) []net.IP {
		var out []net.IP
		for _, s := range ss {
			out = append(out, net.ParseIP(s))
		}
		return out
	}
	return addrEnv{
		lookup: func(ctx context.Context, host string) ([]net.IP, error) {
			if a, ok := names[host]; ok {
				return ips(a), nil
			}
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		},
		localIPs:   func() ([]net.IP, error) { return ips(local), nil },
		wait:       50 * time.Millisecond,
		joinWait:   50 * time.Millisecond,
		retryEvery: 10 * time.Millisecond,
	}
}

func TestPlanPeerAddrs(t *testing.T) {
	env := fakeAddrEnv(map[string][]string{
		"rk1":   {"172.20.0.2"},
		"rk2":   {"172.20.0.3"},
		"multi": {"2001:db8::5", "10.1.1.1", "172.20.0.3"},
		"far":   {"203.0.113.7"},
	}, "127.0.0.1", "172.20.0.2", "172.20.0.3", "2001:db8::5")
	for _, tc := range []struct {
		name                    string
		peer, bind              string
		join                    []string
		rpc, gBind, gAdv        string
		wantJoin                []string
		wantNote                string
		wantErr                 string
		wantErrNot, wantErrAlso string
	}{
		{name: "an IP, as before", peer: "127.0.0.2:7000", join: []string{"127.0.0.3:7000"},
			rpc: "127.0.0.2:7000", gBind: "127.0.0.2:7001", gAdv: "127.0.0.2:7001", wantJoin: []string{"127.0.0.3:7001"}},
		{name: "a name binds every interface and advertises its IP", peer: "rk2:7000", join: []string{"rk1:7000"},
			rpc: "0.0.0.0:7000", gBind: "0.0.0.0:7001", gAdv: "172.20.0.3:7001", wantJoin: []string{"rk1:7001"}},
		{name: "explicit bind", peer: "rk2:7000", bind: "172.20.0.3:7100",
			rpc: "172.20.0.3:7100", gBind: "172.20.0.3:7101", gAdv: "172.20.0.3:7001"},
		{name: "bind without port takes the peer port", peer: "rk2:7000", bind: "127.0.0.1",
			rpc: "127.0.0.1:7000", gBind: "127.0.0.1:7001", gAdv: "172.20.0.3:7001"},
		{name: "bind with port only", peer: "rk2:7000", bind: ":9000",
			rpc: "0.0.0.0:9000", gBind: "0.0.0.0:9001", gAdv: "172.20.0.3:7001"},
		{name: "bracketed IPv6 bind", peer: "rk2:7000", bind: "[::1]",
			rpc: "[::1]:7000", gBind: "[::1]:7001", gAdv: "172.20.0.3:7001"},
		{name: "several IPs: a local one, IPv4 first", peer: "multi:7000",
			rpc: "0.0.0.0:7000", gBind: "0.0.0.0:7001", gAdv: "172.20.0.3:7001"},
		{name: "several IPs: the bind IP wins", peer: "multi:7000", bind: "10.1.1.1",
			rpc: "10.1.1.1:7000", gBind: "10.1.1.1:7001", gAdv: "10.1.1.1:7001"},
		{name: "a name of another host is advertised with a note", peer: "far:7000",
			rpc: "0.0.0.0:7000", gBind: "0.0.0.0:7001", gAdv: "203.0.113.7:7001", wantNote: "none an address of this host"},
		{name: "own name in --join is skipped", peer: "rk1:7000", join: []string{"rk1:7000", "rk2:7000"},
			rpc: "0.0.0.0:7000", gBind: "0.0.0.0:7001", gAdv: "172.20.0.2:7001", wantJoin: []string{"rk2:7001"}, wantNote: "is this node"},
		{name: "own IP in --join is skipped", peer: "rk1:7000", join: []string{"172.20.0.2:7000"},
			rpc: "0.0.0.0:7000", gBind: "0.0.0.0:7001", gAdv: "172.20.0.2:7001", wantNote: "is this node"},
		{name: "another name for own IP in --join is skipped", peer: "172.20.0.3:7000", join: []string{" rk2:7000 ", ""},
			rpc: "172.20.0.3:7000", gBind: "172.20.0.3:7001", gAdv: "172.20.0.3:7001", wantNote: "is this node"},
		{name: "own IP at another port is another node", peer: "rk1:7000", join: []string{"rk1:7002"},
			rpc: "0.0.0.0:7000", gBind: "0.0.0.0:7001", gAdv: "172.20.0.2:7001", wantJoin: []string{"rk1:7003"}},
		{name: "an unresolvable join target is kept, with a note", peer: "rk1:7000", join: []string{"rk9:7000"},
			rpc: "0.0.0.0:7000", gBind: "0.0.0.0:7001", gAdv: "172.20.0.2:7001", wantJoin: []string{"rk9:7001"}, wantNote: "does not resolve now"},

		{name: "unresolvable own name", peer: "nosuch:7000",
			wantErr: `--peer-addr "nosuch:7000": the name "nosuch" does not resolve`, wantErrAlso: "no such host"},
		{name: "unspecified peer address", peer: "0.0.0.0:7000",
			wantErr: `cannot be the unspecified address`, wantErrAlso: "--peer-bind 0.0.0.0:7000"},
		{name: "no host", peer: ":7000", wantErr: `--peer-addr ":7000": no host`},
		{name: "no port", peer: "rk1", wantErr: `--peer-addr "rk1": want HOST:PORT`},
		{name: "last port", peer: "rk1:65535", wantErr: `bad port "65535"`},
		{name: "name as bind", peer: "rk1:7000", bind: "rk1:7000", wantErr: `--peer-bind "rk1:7000": the host must be an IP`},
		{name: "bad bind port", peer: "rk1:7000", bind: "0.0.0.0:x", wantErr: `--peer-bind "0.0.0.0:x": bad port`},
		{name: "bad join", peer: "rk1:7000", join: []string{"rk2"}, wantErr: `--join`, wantErrNot: "does not resolve"},
		{name: "join without host", peer: "rk1:7000", join: []string{":7000"}, wantErr: `--join ":7000": no host`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := env.plan(tc.peer, tc.bind, tc.join)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), tc.wantErrAlso) ||
					(tc.wantErrNot != "" && strings.Contains(err.Error(), tc.wantErrNot)) {
					t.Fatalf("err = %v, want one containing %q and %q", err, tc.wantErr, tc.wantErrAlso)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.rpcBind != tc.rpc || p.gossipBind != tc.gBind || p.gossipAdvertise != tc.gAdv {
				t.Errorf("rpc bind %s, gossip bind %s, gossip advertised %s; want %s, %s, %s",
					p.rpcBind, p.gossipBind, p.gossipAdvertise, tc.rpc, tc.gBind, tc.gAdv)
			}
			if strings.Join(p.join, ",") != strings.Join(tc.wantJoin, ",") {
				t.Errorf("join %q, want %q", p.join, tc.wantJoin)
			}
			notes := strings.Join(p.notes, "\n")
			if (tc.wantNote == "") != (notes == "") || !strings.Contains(notes, tc.wantNote) {
				t.Errorf("notes %q, want one containing %q", notes, tc.wantNote)
			}
		})
	}
}

// The peer address's name is looked up again while it does not resolve:
// a container's or pod's DNS record may appear a moment after it starts.
func TestPlanPeerAddrsWaitsForOwnName(t *testing.T) {
	env := fakeAddrEnv(nil)
	env.wait = 2 * time.Second
	calls := 0
	env.lookup = func(ctx context.Context, host string) ([]net.IP, error) {
		if calls++; calls < 3 {
			return nil, errors.New("no such host")
		}
		return []net.IP{net.ParseIP("10.0.0.9")}, nil
	}
	p, err := env.plan("late:7000", "", nil)
	if err != nil || p.gossipAdvertise != "10.0.0.9:7001" || calls != 3 {
		t.Fatalf("plan = %+v, %v after %d look-ups; want 10.0.0.9:7001 after 3", p, err, calls)
	}
}

// Two real nodes addressed by name: the first is started with its own name
// in --join (skipped), the second joins the first by name; each record
// keeps the name, and a write at W=ALL through the second reaches the first
// over an RPC dialled by name.
func TestNodesAddressedByName(t *testing.T) {
	ips, err := net.LookupIP("localhost")
	if err != nil || len(ips) == 0 {
		t.Skipf("skipped: localhost does not resolve here: %v", err)
	}
	name := func(addr string) string {
		_, port, _ := net.SplitHostPort(addr)
		return "localhost:" + port
	}
	start := func(id, bind string, join ...string) *Server {
		cfg := Config{NodeID: id, DataDir: t.TempDir(), PeerAddr: name(bind), PeerBind: bind,
			RespAddr: "127.0.0.1:0", Replicas: 2, Partitions: 64, Join: join, W: "ALL", R: "ALL",
			Logf: func(f string, args ...any) { t.Logf(id+": "+f, args...) }}
		s, err := Start(cfg)
		if err != nil {
			t.Fatalf("start %s: %v", id, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	b1, b2 := freePeerAddr(t), freePeerAddr(t)
	n1 := start("n1", b1, name(b1))
	n2 := start("n2", b2, name(b1))
	deadline := time.Now().Add(10 * time.Second)
	for !(n1.Membership().Alive("n2") && n2.Membership().Alive("n1")) {
		if time.Now().After(deadline) {
			t.Fatalf("n1 and n2 never saw each other alive")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, m := range n1.Membership().Members() {
		want := name(b1)
		if m.ID == "n2" {
			want = name(b2)
		}
		if m.PeerAddr != want {
			t.Errorf("%s's record has peer address %q, want the name %q", m.ID, m.PeerAddr, want)
		}
		if host, _, _ := net.SplitHostPort(m.GossipAddr); net.ParseIP(host) == nil {
			t.Errorf("%s's gossip address %q is not an IP", m.ID, m.GossipAddr)
		}
	}
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: n2.RespAddr(), MaxRetries: -1})
	defer rc.Close()
	if err := rc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET at W=ALL through n2: %v", err)
	}
	rc1 := redis.NewClient(&redis.Options{Addr: n1.RespAddr(), MaxRetries: -1})
	defer rc1.Close()
	if got, err := rc1.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET at R=ALL through n1: %q %v", got, err)
	}
}
