package autoscale

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The labels by which Docker finds the containers it manages.
const (
	// LabelGroup holds the Docker orchestrator's Prefix.
	LabelGroup = "io.ringkv.autoscale.group"
	// LabelNode holds the node ID (also the container's name).
	LabelNode = "io.ringkv.node-id"
)

// dockerAPIVersion is the Engine API version this client is written for;
// it speaks an older one when the daemon is older.
const dockerAPIVersion = "1.41"

// The ports of the image (deploy/docker/Dockerfile).
const (
	dockerPeerPort = "7000"
	dockerRESPPort = "6379/tcp"
	dockerHTTPPort = "8080/tcp"
)

// Docker is an Orchestrator over the Docker Engine API: a node is a
// container of the ringkv image named Prefix-<n>, labelled with
// LabelGroup=Prefix and LabelNode=<its ID>, running
//
//	ringkv server ... --node-id <name> --peer-addr <addr>:7000 --join <Join> <Args>
//
// on Network. It talks to the daemon over its unix socket with the
// standard library's HTTP client.
type Docker struct {
	// Socket is the daemon's unix socket. Default /var/run/docker.sock.
	Socket string
	// Image is the ringkv image (it must be present: nothing is pulled).
	Image string
	// Network is the network the nodes reach each other on. Unless
	// PeerByName, each new node gets a fixed address on it (the highest
	// one free in its subnet), which needs a network created with a
	// subnet of your choosing (docker network create --subnet).
	Network string
	// ExtraNetworks are joined too, after Network (e.g. the one whose
	// published ports clients use when Network is internal).
	ExtraNetworks []string
	// Prefix names the containers and groups them: this orchestrator
	// lists and removes only containers with LabelGroup=Prefix.
	Prefix string
	// Join is the peer addresses a new node joins through (--join).
	Join []string
	// Args are more `ringkv server` flags for every new node (the same
	// --replicas and --partitions as the cluster's, for instance).
	Args []string
	// PublishHost, when set, publishes each new node's Redis and HTTP
	// ports on that host address (ports chosen by Docker; see Node).
	PublishHost string
	// PeerByName gives --peer-addr <container name>:7000 (resolved by
	// Docker's DNS on a user-defined network; the address may change when
	// the container restarts) instead of a fixed address. Keep the fixed
	// address when the containers share more than one network: the name
	// may resolve to an address on the other one.
	PeerByName bool
	// Reserved returns node IDs that must not be given again: the
	// cluster's members, left ones included (a left ID cannot join
	// again). Nil: only this orchestrator's containers are avoided.
	Reserved func(ctx context.Context) ([]string, error)
	// StopTimeout is how long a node has to shut down cleanly before
	// Docker kills it. Default 30 s.
	StopTimeout time.Duration

	once    sync.Once
	hc      *http.Client
	mu      sync.Mutex
	version string // negotiated, "" until then
}

// dockerError is an error answer of the Engine API.
type dockerError struct {
	Status  int
	Message string
	Call    string
}

func (e *dockerError) Error() string {
	return fmt.Sprintf("docker: %s: %d %s", e.Call, e.Status, e.Message)
}

func isStatus(err error, code int) bool {
	var de *dockerError
	return errors.As(err, &de) && de.Status == code
}

func (d *Docker) client() *http.Client {
	d.once.Do(func() {
		sock := d.Socket
		if sock == "" {
			sock = "/var/run/docker.sock"
		}
		d.hc = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var dl net.Dialer
				return dl.DialContext(ctx, "unix", sock)
			},
			MaxIdleConns: 4,
		}}
	})
	return d.hc
}

// negotiate settles the API version once: the daemon's (GET /_ping,
// API-Version header) if older than ours, else ours.
func (d *Docker) negotiate(ctx context.Context) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.version != "" {
		return d.version, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return "", err
	}
	resp, err := d.client().Do(req)
	if err != nil {
		return "", fmt.Errorf("docker: reach the daemon: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	server := resp.Header.Get("API-Version")
	if resp.StatusCode != http.StatusOK || server == "" {
		return "", fmt.Errorf("docker: GET /_ping: %s, API-Version %q", resp.Status, server)
	}
	v := dockerAPIVersion
	if versionLess(server, v) {
		v = server
	}
	if versionLess(v, "1.25") {
		return "", fmt.Errorf("docker: the daemon speaks Engine API %s, older than 1.25", server)
	}
	d.version = v
	return v, nil
}

// versionLess compares API versions "major.minor".
func versionLess(a, b string) bool {
	pa, pb := strings.SplitN(a, ".", 2), strings.SplitN(b, ".", 2)
	for i := 0; i < 2; i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// call makes one API call; in (if not nil) is sent as JSON, the answer
// decoded into out (if not nil). Statuses of 300 and above are errors,
// 304 (already started or stopped) excepted.
func (d *Docker) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	v, err := d.negotiate(ctx)
	if err != nil {
		return err
	}
	u := "http://docker/v" + v + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.client().Do(req)
	if err != nil {
		return fmt.Errorf("docker: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("docker: %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotModified {
		var m struct{ Message string }
		if json.Unmarshal(data, &m) != nil || m.Message == "" {
			m.Message = strings.TrimSpace(string(data))
		}
		return &dockerError{Status: resp.StatusCode, Message: m.Message, Call: method + " " + path}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("docker: %s %s: %w", method, path, err)
		}
	}
	return nil
}

// dockerContainer is an entry of GET /containers/json.
type dockerContainer struct {
	ID      string `json:"Id"`
	Names   []string
	Labels  map[string]string
	Created int64
	State   string
	Ports   []struct {
		IP          string
		PrivatePort int
		PublicPort  int
		Type        string
	}
}

// containers lists this orchestrator's containers, running or not,
// with extra label filters ("key=value").
func (d *Docker) containers(ctx context.Context, labels ...string) ([]dockerContainer, error) {
	if d.Prefix == "" {
		return nil, errors.New("docker: no prefix: it names the containers and finds them again")
	}
	f, _ := json.Marshal(map[string][]string{"label": append([]string{LabelGroup + "=" + d.Prefix}, labels...)})
	var cs []dockerContainer
	err := d.call(ctx, http.MethodGet, "/containers/json", url.Values{"all": {"1"}, "filters": {string(f)}}, nil, &cs)
	return cs, err
}

// List returns the nodes this orchestrator runs (its containers).
func (d *Docker) List(ctx context.Context) ([]Node, error) {
	cs, err := d.containers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(cs))
	for _, c := range cs {
		n := Node{ID: c.Labels[LabelNode], Created: time.Unix(c.Created, 0), Running: c.State == "running"}
		for _, p := range c.Ports {
			if p.PublicPort == 0 || p.Type != "tcp" || strings.Contains(p.IP, ":") {
				continue
			}
			addr := net.JoinHostPort(p.IP, strconv.Itoa(p.PublicPort))
			switch strconv.Itoa(p.PrivatePort) + "/tcp" {
			case dockerHTTPPort:
				n.HTTPAddr = addr
			case dockerRESPPort:
				n.RESPAddr = addr
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// AddNode creates and starts the next node's container.
func (d *Docker) AddNode(ctx context.Context) (string, error) {
	if d.Image == "" || d.Network == "" || len(d.Join) == 0 {
		return "", errors.New("docker: a new node needs the image, the network and a peer address to join through")
	}
	n, err := d.nextIndex(ctx)
	if err != nil {
		return "", err
	}
	var tried []string
	for attempt := 0; attempt < 5; attempt++ {
		name := fmt.Sprintf("%s-%d", d.Prefix, n)
		host := name
		if !d.PeerByName {
			if host, err = d.freeAddress(ctx, tried); err != nil {
				return "", err
			}
		}
		err = d.start(ctx, name, host)
		switch {
		case err == nil:
			return name, nil
		case isStatus(err, http.StatusConflict): // the name is taken: next one
			n++
		case strings.Contains(err.Error(), "ddress already in use"): // taken since we looked
			tried = append(tried, host)
		default:
			return "", err
		}
	}
	return "", fmt.Errorf("docker: no node started after 5 attempts: %w", err)
}

// nextIndex returns the n of the next name: above every name of this
// prefix in use or reserved.
func (d *Docker) nextIndex(ctx context.Context) (int, error) {
	nodes, err := d.List(ctx)
	if err != nil {
		return 0, err
	}
	var ids []string
	for _, nd := range nodes {
		ids = append(ids, nd.ID)
	}
	if d.Reserved != nil {
		r, err := d.Reserved(ctx)
		if err != nil {
			return 0, fmt.Errorf("docker: the node IDs in use: %w", err)
		}
		ids = append(ids, r...)
	}
	top := 0
	for _, id := range ids {
		if s, ok := strings.CutPrefix(id, d.Prefix+"-"); ok {
			if i, err := strconv.Atoi(s); err == nil && i > top {
				top = i
			}
		}
	}
	return top + 1, nil
}

// start creates container name with peer address host:7000, joins the
// extra networks and starts it; on failure it removes what it made.
func (d *Docker) start(ctx context.Context, name, host string) (err error) {
	args := append([]string{"--node-id", name, "--peer-addr", net.JoinHostPort(host, dockerPeerPort),
		"--join", strings.Join(d.Join, ",")}, d.Args...)
	endpoint := map[string]any{"Aliases": []string{name}}
	if !d.PeerByName {
		endpoint["IPAMConfig"] = map[string]string{"IPv4Address": host}
	}
	hostCfg := map[string]any{}
	exposed := map[string]struct{}{}
	if d.PublishHost != "" {
		bind := []map[string]string{{"HostIp": d.PublishHost, "HostPort": ""}}
		hostCfg["PortBindings"] = map[string]any{dockerRESPPort: bind, dockerHTTPPort: bind}
		exposed[dockerRESPPort], exposed[dockerHTTPPort] = struct{}{}, struct{}{}
	}
	body := map[string]any{
		"Image":            d.Image,
		"Cmd":              args,
		"Labels":           map[string]string{LabelGroup: d.Prefix, LabelNode: name},
		"ExposedPorts":     exposed,
		"HostConfig":       hostCfg,
		"NetworkingConfig": map[string]any{"EndpointsConfig": map[string]any{d.Network: endpoint}},
	}
	var created struct {
		ID string `json:"Id"`
	}
	if err := d.call(ctx, http.MethodPost, "/containers/create", url.Values{"name": {name}}, body, &created); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			d.remove(context.WithoutCancel(ctx), created.ID)
		}
	}()
	for _, nw := range d.ExtraNetworks {
		if err := d.call(ctx, http.MethodPost, "/networks/"+url.PathEscape(nw)+"/connect", nil,
			map[string]any{"Container": created.ID}, nil); err != nil {
			return err
		}
	}
	return d.call(ctx, http.MethodPost, "/containers/"+created.ID+"/start", nil, nil, nil)
}

// freeAddress returns the highest address of Network's IPv4 subnet that
// no container, the gateway or avoid holds (Docker hands out addresses
// from the bottom, so the top is the least likely to be taken next).
func (d *Docker) freeAddress(ctx context.Context, avoid []string) (string, error) {
	var nw struct {
		IPAM struct {
			Config []struct{ Subnet, Gateway string }
		}
		Containers map[string]struct{ IPv4Address string }
	}
	if err := d.call(ctx, http.MethodGet, "/networks/"+url.PathEscape(d.Network), nil, nil, &nw); err != nil {
		return "", err
	}
	used := map[string]bool{}
	for _, a := range avoid {
		used[a] = true
	}
	for _, c := range nw.Containers {
		used[strings.Split(c.IPv4Address, "/")[0]] = true
	}
	for _, cfg := range nw.IPAM.Config {
		_, subnet, err := net.ParseCIDR(cfg.Subnet)
		if err != nil || subnet.IP.To4() == nil {
			continue
		}
		used[cfg.Gateway] = true
		ones, bits := subnet.Mask.Size()
		if bits-ones < 2 {
			continue
		}
		base := binary.BigEndian.Uint32(subnet.IP.To4())
		size := uint32(1) << (bits - ones)
		for off := size - 2; off >= 1; off-- { // not the broadcast, not the network
			ip := make(net.IP, 4)
			binary.BigEndian.PutUint32(ip, base+off)
			if !used[ip.String()] {
				return ip.String(), nil
			}
		}
	}
	return "", fmt.Errorf("docker: network %s has no IPv4 subnet with a free address (create it with --subnet, or set PeerByName)", d.Network)
}

// RemoveNode stops the node's container (a clean shutdown first) and
// removes it with its anonymous volumes.
func (d *Docker) RemoveNode(ctx context.Context, id string) error {
	cs, err := d.containers(ctx, LabelNode+"="+id)
	if err != nil {
		return err
	}
	for _, c := range cs {
		t := d.StopTimeout
		if t <= 0 {
			t = 30 * time.Second
		}
		q := url.Values{"t": {strconv.Itoa(int(t / time.Second))}}
		if err := d.call(ctx, http.MethodPost, "/containers/"+c.ID+"/stop", q, nil, nil); err != nil && !isStatus(err, http.StatusNotFound) {
			return err
		}
		if err := d.remove(ctx, c.ID); err != nil {
			return err
		}
	}
	return nil
}

func (d *Docker) remove(ctx context.Context, id string) error {
	err := d.call(ctx, http.MethodDelete, "/containers/"+id, url.Values{"v": {"1"}, "force": {"1"}}, nil, nil)
	if isStatus(err, http.StatusNotFound) {
		return nil
	}
	return err
}
