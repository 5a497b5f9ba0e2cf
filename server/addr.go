package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file turns a node's peer flags into the addresses it listens on and
// the ones it advertises.
//
// --peer-addr is the address other nodes dial for RPCs, published in the
// node's record as given: an IP, or a DNS name such as rk1:7000 (a
// container's service name, a pod's stable name), so that a node that
// comes back at another IP is still found by its name. --peer-bind is where
// the RPC listener binds; by default the peer address's host when that is
// an IP, else every interface (0.0.0.0), at the peer address's port.
//
// Gossip (memberlist) listens on the next port of --peer-bind's host. It
// needs an IP to advertise, so it advertises the IP --peer-addr's name
// resolves to (the one on this host when there are several), at the next
// port of --peer-addr. --join targets are peer addresses too, and may be
// names: memberlist resolves them on every join attempt (also when a node
// that finds itself alone tries its seeds again).

// peerPlan is what Start needs from the peer flags.
type peerPlan struct {
	// rpcBind is the peer RPC listener's address (--peer-bind).
	rpcBind string
	// gossipBind is memberlist's bind address: rpcBind's host, port+1.
	gossipBind string
	// gossipAdvertise is memberlist's advertised address: the IP the peer
	// address names, its port+1.
	gossipAdvertise string
	// join are the gossip addresses to join (names kept as names), without
	// any that names this node itself.
	join []string
	// notes are facts worth a log line (a join target skipped as this
	// node itself, a name that resolves to an address of another host).
	notes []string
}

// addrEnv is how names are resolved and local addresses listed; tests
// replace it.
type addrEnv struct {
	lookup   func(ctx context.Context, host string) ([]net.IP, error)
	localIPs func() ([]net.IP, error)
	// wait bounds how long the peer address's name is retried when it does
	// not resolve yet (a container's or pod's DNS record may appear a
	// moment after the process starts); joinWait bounds the look-ups of
	// join targets, which are only advisory.
	wait, joinWait time.Duration
	retryEvery     time.Duration
}

var systemAddrEnv = addrEnv{
	lookup: func(ctx context.Context, host string) ([]net.IP, error) {
		addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
		ips := make([]net.IP, len(addrs))
		for i, a := range addrs {
			ips[i] = a.IP
		}
		return ips, err
	},
	localIPs: func() ([]net.IP, error) {
		addrs, err := net.InterfaceAddrs()
		var ips []net.IP
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				ips = append(ips, n.IP)
			}
		}
		return ips, err
	},
	wait:       10 * time.Second,
	joinWait:   3 * time.Second,
	retryEvery: 250 * time.Millisecond,
}

// planPeerAddrs resolves a node's peer flags (see the top of this file).
func planPeerAddrs(peerAddr, peerBind string, join []string) (peerPlan, error) {
	return systemAddrEnv.plan(peerAddr, peerBind, join)
}

func (e addrEnv) plan(peerAddr, peerBind string, join []string) (peerPlan, error) {
	var p peerPlan
	host, port, err := splitPeer(peerAddr)
	if err != nil {
		return p, fmt.Errorf("--peer-addr %q: %w", peerAddr, err)
	}
	if host == "" {
		return p, fmt.Errorf("--peer-addr %q: no host: other nodes dial this address, so give this node's IP or a DNS name that resolves to it (listen on every interface with --peer-bind 0.0.0.0:%d)", peerAddr, port)
	}
	ip := net.ParseIP(host)
	if ip != nil && ip.IsUnspecified() {
		return p, fmt.Errorf("--peer-addr %q: other nodes dial this address, so it cannot be the unspecified address; give this node's IP or a DNS name that resolves to it, and --peer-bind %s to listen on every interface", peerAddr, net.JoinHostPort(host, strconv.Itoa(port)))
	}

	// The RPC listener.
	bindHost, bindPort := "0.0.0.0", port
	if ip != nil {
		bindHost = host
	}
	if peerBind != "" {
		if bindHost, bindPort, err = splitBind(peerBind, port); err != nil {
			return p, fmt.Errorf("--peer-bind %q: %w", peerBind, err)
		}
	}
	p.rpcBind = net.JoinHostPort(bindHost, strconv.Itoa(bindPort))
	p.gossipBind = net.JoinHostPort(bindHost, strconv.Itoa(bindPort+1))

	// The advertised gossip address: an IP, from the peer address's name.
	if ip == nil {
		ips, err := e.resolveSelf(host)
		if err != nil {
			return p, fmt.Errorf("--peer-addr %q: %w", peerAddr, err)
		}
		var note string
		ip, note = e.pickIP(host, ips, net.ParseIP(bindHost))
		if note != "" {
			p.notes = append(p.notes, note)
		}
	}
	p.gossipAdvertise = net.JoinHostPort(ip.String(), strconv.Itoa(port+1))

	// Join targets: the gossip port of each, names kept; this node itself
	// (the same name, or a name or IP that is our advertised IP, at our
	// port) is dropped, so one --join list can be given to every node.
	ctx, cancel := context.WithTimeout(context.Background(), e.joinWait)
	defer cancel()
	for _, j := range join {
		j = strings.TrimSpace(j)
		if j == "" {
			continue
		}
		g, err := GossipAddr(j)
		if err != nil {
			return p, fmt.Errorf("--join: %w", err)
		}
		jh, jp, _ := splitPeer(j)
		if jh == "" {
			return p, fmt.Errorf("--join %q: no host: give a peer address (IP or DNS name) with its port", j)
		}
		self := jp == port && strings.EqualFold(jh, host)
		if !self && net.ParseIP(jh) == nil {
			ips, err := e.lookup(ctx, jh)
			if err != nil || len(ips) == 0 {
				p.notes = append(p.notes, fmt.Sprintf("--join %q: %s does not resolve now (%v); gossip keeps trying it by name", j, jh, lookupErr(err)))
			}
			self = jp == port && slices.ContainsFunc(ips, ip.Equal)
		} else if !self {
			self = jp == port && net.ParseIP(jh).Equal(ip)
		}
		if self {
			p.notes = append(p.notes, fmt.Sprintf("--join %q is this node (its --peer-addr %s); not joining itself", j, peerAddr))
			continue
		}
		p.join = append(p.join, g)
	}
	return p, nil
}

// resolveSelf resolves the peer address's name, retrying for e.wait while
// it does not resolve.
func (e addrEnv) resolveSelf(host string) ([]net.IP, error) {
	deadline := time.Now().Add(e.wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), max(time.Until(deadline), e.retryEvery))
		ips, err := e.lookup(ctx, host)
		cancel()
		if err == nil && len(ips) > 0 {
			return ips, nil
		}
		if time.Now().Add(e.retryEvery).After(deadline) {
			return nil, fmt.Errorf("the name %q does not resolve (tried for %v: %v); other nodes dial this name, so it must resolve to this node (a DNS name of its own, e.g. a container's service name, or its IP)", host, e.wait, lookupErr(err))
		}
		time.Sleep(e.retryEvery)
	}
}

func lookupErr(err error) error {
	if err == nil {
		return errors.New("no addresses")
	}
	return err
}

// pickIP chooses the IP to advertise among those host resolves to: the
// bind IP when it is one of them; else one of this host's own addresses
// (IPv4 first); else the first IPv4 (a name that points elsewhere, e.g. at
// an address translated to this host, with a note for the log).
func (e addrEnv) pickIP(host string, ips []net.IP, bind net.IP) (net.IP, string) {
	if bind != nil && !bind.IsUnspecified() && slices.ContainsFunc(ips, bind.Equal) {
		return bind, ""
	}
	ordered := slices.Clone(ips)
	slices.SortStableFunc(ordered, func(a, b net.IP) int {
		return boolRank(a.To4() == nil) - boolRank(b.To4() == nil)
	})
	local, _ := e.localIPs()
	for _, ip := range ordered {
		if slices.ContainsFunc(local, ip.Equal) {
			return ip, ""
		}
	}
	return ordered[0], fmt.Sprintf("--peer-addr: %s resolves to %v, none an address of this host; gossip advertises %s (right only if that address reaches this host, e.g. through address translation)",
		host, ips, ordered[0])
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// splitPeer splits a peer address and checks its port leaves room for the
// gossip port after it.
func splitPeer(addr string) (string, int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("want HOST:PORT (an IP or a DNS name, and a port): %w", err)
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p <= 0 || p >= 65535 {
		return "", 0, fmt.Errorf("bad port %q (want 1-65534: gossip uses the next port)", ps)
	}
	return host, p, nil
}

// splitBind parses --peer-bind: IP:PORT, IP alone or :PORT (the missing
// part from the defaults). The host must be an IP: names go in --peer-addr.
func splitBind(bind string, defPort int) (string, int, error) {
	host, port := bind, defPort
	if strings.HasPrefix(bind, "[") && strings.HasSuffix(bind, "]") {
		host = bind[1 : len(bind)-1]
	} else if net.ParseIP(bind) == nil {
		h, ps, err := net.SplitHostPort(bind)
		if err != nil {
			return "", 0, fmt.Errorf("want IP:PORT, IP or :PORT: %w", err)
		}
		p, err := strconv.Atoi(ps)
		if err != nil || p <= 0 || p >= 65535 {
			return "", 0, fmt.Errorf("bad port %q (want 1-65534: gossip uses the next port)", ps)
		}
		host, port = h, p
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("the host must be an IP address of this host (or 0.0.0.0 for every interface), not a name: the name other nodes dial goes in --peer-addr")
	}
	return host, port, nil
}
