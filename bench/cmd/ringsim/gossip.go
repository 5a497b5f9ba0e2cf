package main

import (
	"bytes"
	"compress/lzw"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"time"
)

// The gossip settings a ringkv node runs with. ringkv sets the first five
// (membership/config.go defaults, passed to memberlist in
// membership/membership.go); the others are memberlist's
// DefaultLocalConfig (memberlist v0.7.0 config.go), which ringkv starts
// from and does not change. ringkv's own queue of gossiped records
// (SetMemberState) retransmits with multiplier 4 (membership.go).
const (
	probeInterval    = 500 * time.Millisecond
	probeTimeout     = 250 * time.Millisecond
	suspicionMult    = 3
	gossipInterval   = 100 * time.Millisecond
	pushPullInterval = 5 * time.Second

	gossipNodes             = 3
	retransmitMult          = 2
	suspicionMaxTimeoutMult = 6
	udpBufferSize           = 1400

	ringkvRetransmitMult = 4
)

// memberlist's formulas (util.go, v0.7.0).

func suspicionTimeout(mult, n int, interval time.Duration) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(n))))
	return time.Duration(mult) * time.Duration(scale*1000) * interval / 1000
}

func retransmitLimit(mult, n int) int {
	return mult * int(math.Ceil(math.Log10(float64(n+1))))
}

func pushPullScale(interval time.Duration, n int) time.Duration {
	if n <= 32 {
		return interval
	}
	return time.Duration(math.Ceil(math.Log2(float64(n))-math.Log2(32))+1) * interval
}

// wireRecord, metaMsg and stateMsg are package membership's gossip
// encoding (membership/record.go), repeated field for field: node metadata
// is a metaMsg, the push/pull state a stateMsg.
type wireRecord struct {
	ID       string `json:"id"`
	Weight   int    `json:"weight,omitempty"`
	DC       string `json:"dc,omitempty"`
	Rack     string `json:"rack,omitempty"`
	State    string `json:"state"`
	PeerAddr string `json:"peer,omitempty"`
	RespAddr string `json:"resp,omitempty"`
	HTTPAddr string `json:"http,omitempty"`
	Gossip   string `json:"gossip"`
	Version  uint64 `json:"version"`
}

type metaMsg struct {
	Cfg string     `json:"cfg"`
	Rec wireRecord `json:"rec"`
}

type stateMsg struct {
	Format  int          `json:"format"`
	Cfg     string       `json:"cfg"`
	Records []wireRecord `json:"records"`
}

// fingerprint is membership's ring-config fingerprint for a config
// without ReplicasPerDC.
func fingerprint(q, n, v int) string {
	h := fnv.New64a()
	fmt.Fprintf(h, "partitions=%d replicas=%d vnodes=%d per_dc=[%s]", q, n, v, "")
	return strconv.FormatUint(h.Sum64(), 16)
}

// gossipNode is one member as memberlist and membership see it.
type gossipNode struct {
	rec  wireRecord
	ip   []byte
	port uint16
	meta []byte
	inc  uint32
}

// gossipCluster makes n members with realistic records: private IPv4
// addresses, the server's default ports, a rack, and versions taken from
// a wall clock within a month.
func gossipCluster(o options, n int) ([]gossipNode, string) {
	rng := rand.New(rand.NewPCG(o.seed, 0x90551b))
	fp := fingerprint(o.partitions, o.replicas, o.vnodes)
	ms := cluster(o, n)
	out := make([]gossipNode, n)
	for i, m := range ms {
		ip := []byte{10, byte(rng.IntN(16)), byte(rng.IntN(256)), byte(1 + rng.IntN(254))}
		host := fmt.Sprintf("%d.%d.%d.%d", ip[0], ip[1], ip[2], ip[3])
		rec := wireRecord{
			ID: m.ID, Weight: m.Weight, DC: m.DC, Rack: fmt.Sprintf("rack-%02d", i%40), State: "normal",
			PeerAddr: host + ":7000", RespAddr: host + ":6379", HTTPAddr: host + ":8080", Gossip: host + ":7001",
			Version: 1_767_225_600_000_000_000 + uint64(rng.Int64N(int64(30*24*time.Hour))),
		}
		meta, err := json.Marshal(metaMsg{Cfg: fp, Rec: rec})
		if err != nil {
			log.Fatal(err)
		}
		out[i] = gossipNode{rec: rec, ip: ip, port: 7001, meta: meta, inc: uint32(1 + rng.IntN(4))}
	}
	return out, fp
}

// mp writes msgpack as memberlist's codec (hashicorp/go-msgpack v2,
// MsgpackHandle with its defaults) does for the messages below: structs
// as maps with their fields in name order, strings and byte slices as raw
// strings (fixstr, str16, str32; no str8, no bin; a nil slice as nil),
// unsigned integers in the smallest unsigned form, signed ones in the
// smallest signed form.
type mp struct{ b []byte }

func (w *mp) mapHeader(n int) {
	switch {
	case n < 16:
		w.b = append(w.b, 0x80|byte(n))
	default:
		w.b = append(w.b, 0xde, byte(n>>8), byte(n))
	}
}

func (w *mp) raw(s []byte) {
	if s == nil {
		w.b = append(w.b, 0xc0) // nil
		return
	}
	switch l := len(s); {
	case l < 32:
		w.b = append(w.b, 0xa0|byte(l))
	case l < 1<<16:
		w.b = append(w.b, 0xda, byte(l>>8), byte(l))
	default:
		w.b = append(w.b, 0xdb, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
	}
	w.b = append(w.b, s...)
}

func (w *mp) str(s string) { w.raw([]byte(s)) }

func (w *mp) uint(v uint64) {
	switch {
	case v <= 0x7f:
		w.b = append(w.b, byte(v))
	case v <= 0xff:
		w.b = append(w.b, 0xcc, byte(v))
	case v <= 0xffff:
		w.b = append(w.b, 0xcd, byte(v>>8), byte(v))
	case v <= 0xffffffff:
		w.b = append(w.b, 0xce, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		w.b = append(w.b, 0xcf)
		for s := 56; s >= 0; s -= 8 {
			w.b = append(w.b, byte(v>>s))
		}
	}
}

func (w *mp) int(v int64) {
	switch {
	case v >= 0 && v <= 0x7f:
		w.b = append(w.b, byte(v))
	case v >= -32 && v < 0:
		w.b = append(w.b, byte(v))
	case v >= math.MinInt8 && v <= math.MaxInt8:
		w.b = append(w.b, 0xd0, byte(v))
	case v >= math.MinInt16 && v <= math.MaxInt16:
		w.b = append(w.b, 0xd1, byte(v>>8), byte(v))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		w.b = append(w.b, 0xd2, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	default:
		w.b = append(w.b, 0xd3)
		for s := 56; s >= 0; s -= 8 {
			w.b = append(w.b, byte(v>>s))
		}
	}
}

func (w *mp) bool(v bool) {
	if v {
		w.b = append(w.b, 0xc3)
	} else {
		w.b = append(w.b, 0xc2)
	}
}

// memberlist's message types (net.go) and the protocol versions a node
// advertises (Vsn: protocol min, max, current; delegate min, max,
// current, which ringkv leaves 0).
const (
	pingMsg     = 0
	ackRespMsg  = 2
	aliveMsg    = 4
	pushPullMsg = 6
	compressMsg = 9
)

var vsn = []byte{1, 5, 2, 0, 0, 0}

// pushPull returns one push/pull message of memberlist as a node of this
// cluster sends it (net.go sendLocalState): the header, every node's
// state with its metadata, then the delegate's state (membership's whole
// record table), uncompressed.
func pushPull(nodes []gossipNode, fp string) (msg []byte, userState int) {
	recs := make([]wireRecord, len(nodes))
	for i, n := range nodes {
		recs[i] = n.rec
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	user, err := json.Marshal(stateMsg{Format: 1, Cfg: fp, Records: recs})
	if err != nil {
		log.Fatal(err)
	}
	w := &mp{b: []byte{pushPullMsg}}
	w.mapHeader(3) // pushPullHeader
	w.str("Join")
	w.bool(false)
	w.str("Nodes")
	w.int(int64(len(nodes)))
	w.str("UserStateLen")
	w.int(int64(len(user)))
	for _, n := range nodes { // pushNodeState
		w.mapHeader(7)
		w.str("Addr")
		w.raw(n.ip)
		w.str("Incarnation")
		w.uint(uint64(n.inc))
		w.str("Meta")
		w.raw(n.meta)
		w.str("Name")
		w.str(n.rec.ID)
		w.str("Port")
		w.uint(uint64(n.port))
		w.str("State")
		w.int(0) // alive
		w.str("Vsn")
		w.raw(vsn)
	}
	return append(w.b, user...), len(user)
}

// compressed is memberlist's compressPayload: LZW (LSB, 8-bit literals)
// wrapped in a compress message.
func compressed(msg []byte) []byte {
	var buf bytes.Buffer
	zw := lzw.NewWriter(&buf, lzw.LSB, 8)
	if _, err := zw.Write(msg); err != nil {
		log.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		log.Fatal(err)
	}
	w := &mp{b: []byte{compressMsg}}
	w.mapHeader(2)
	w.str("Algo")
	w.uint(0) // lzw
	w.str("Buf")
	w.raw(buf.Bytes())
	return w.b
}

// alive is the message that carries a node's changed metadata (its
// record) through gossip.
func alive(n gossipNode) []byte {
	w := &mp{b: []byte{aliveMsg}}
	w.mapHeader(6)
	w.str("Addr")
	w.raw(n.ip)
	w.str("Incarnation")
	w.uint(uint64(n.inc))
	w.str("Meta")
	w.raw(n.meta)
	w.str("Node")
	w.str(n.rec.ID)
	w.str("Port")
	w.uint(uint64(n.port))
	w.str("Vsn")
	w.raw(vsn)
	return w.b
}

// probe returns the ping and the ack of one probe (net.go ping, ackResp).
func probe(from, to gossipNode) (ping, ack []byte) {
	w := &mp{b: []byte{pingMsg}}
	w.mapHeader(5)
	w.str("Node")
	w.str(to.rec.ID)
	w.str("SeqNo")
	w.uint(1 << 20)
	w.str("SourceAddr")
	w.raw(from.ip)
	w.str("SourceNode")
	w.str(from.rec.ID)
	w.str("SourcePort")
	w.uint(uint64(from.port))
	ping = w.b
	w = &mp{b: []byte{ackRespMsg}}
	w.mapHeader(2)
	w.str("Payload")
	w.raw(nil)
	w.str("SeqNo")
	w.uint(1 << 20)
	return ping, w.b
}

const ipUDPHeaders = 28 // IPv4 + UDP

func gossipTables(o options) {
	fmt.Println("### memberlist at each size (computed)")
	fmt.Println()
	fmt.Printf("Timers from memberlist's formulas with ringkv's settings (probe every %v, SuspicionMult %d, gossip every %v to %d nodes, push/pull every %v before scaling; memberlist's own broadcasts retransmit ×%d, ringkv's records ×%d). ",
		probeInterval, suspicionMult, gossipInterval, gossipNodes, pushPullInterval, retransmitMult, ringkvRetransmitMult)
	fmt.Println("Push/pull: one message of the exchange as memberlist encodes it (every node's state with its metadata, then membership's record table as JSON), and after memberlist's LZW compression; each node starts one exchange per interval and answers one on average, so it sends two messages and receives two per interval. Decode: json.Unmarshal of the record table, measured here.")
	fmt.Println()
	fmt.Println("| nodes | suspicion timeout (min / max) | retransmits (memberlist / ringkv) | metadata (one record) | push/pull message | of it, record table | compressed | push/pull interval | push/pull sent per node | probes sent per node | decode of the table |")
	fmt.Println("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, n := range o.sizes {
		nodes, fp := gossipCluster(o, n)
		msg, user := pushPull(nodes, fp)
		comp := compressed(msg)
		iv := pushPullScale(pushPullInterval, n)
		meta := 0
		for _, g := range nodes {
			meta += len(g.meta)
		}
		ping, ack := probe(nodes[0], nodes[1])
		probeRate := float64(len(ping)+len(ack)+2*ipUDPHeaders) / probeInterval.Seconds()
		dec := decodeTime(msg[len(msg)-user:])
		smin := suspicionTimeout(suspicionMult, n, probeInterval)
		fmt.Printf("| %d | %.1f s / %.1f s | %d / %d | %d B | %s | %s | %s | %v | %s/s | %.0f B/s | %s |\n",
			n, smin.Seconds(), (suspicionMaxTimeoutMult * smin).Seconds(),
			retransmitLimit(retransmitMult, n), retransmitLimit(ringkvRetransmitMult, n),
			meta/n, size(float64(len(msg))), size(float64(user)), size(float64(len(comp))), iv,
			size(2*float64(len(comp))/iv.Seconds()), probeRate, ms3(dec))
	}
	nodes, _ := gossipCluster(o, 2)
	a := alive(nodes[0])
	fmt.Printf("\nOne alive message (a record change) is %d bytes before compression; a gossip packet holds at most %d bytes, so %d of them per packet.\n\n",
		len(a), udpBufferSize, udpBufferSize/len(a))

	fmt.Println("### Dissemination of one broadcast (simulated)")
	fmt.Println()
	fmt.Printf("memberlist's gossip as a model: every %v, at its own phase, each node that holds the message and has transmitted it fewer times than the retransmit limit sends it to %d distinct random other nodes (one transmission each); a node that receives it for the first time does the same from its next tick. Probes and acks also carry broadcasts in memberlist, drawing on the same retransmit budget; the model leaves them out, as it leaves out push/pull. One-way latency 0.5 ms. %d runs per row. ",
		gossipInterval, gossipNodes, o.trials)
	fmt.Println("Serf's model: the closed form of Serf's convergence simulator for the same interval and fanout (time until 99.99% of nodes).")
	fmt.Println()
	fmt.Println("| nodes | retransmit limit | packet loss | 99% reached: median | p99 | all reached: median | p99 | runs where a node never got it | Serf's model, 99.99% |")
	fmt.Println("|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	rng := rand.New(rand.NewPCG(o.seed, 0xd155))
	largest := slices.Max(o.sizes)
	for _, n := range o.sizes {
		losses := []float64{0}
		if n == largest {
			losses = o.loss
		}
		for _, loss := range losses {
			for _, mult := range []int{retransmitMult, ringkvRetransmitMult} {
				limit := retransmitLimit(mult, n)
				var t99, tall []float64
				missed := 0
				for range o.trials {
					a, b := disseminate(rng, n, gossipNodes, limit, gossipInterval.Seconds(), loss)
					t99 = append(t99, a)
					if math.IsInf(b, 1) {
						missed++
					} else {
						tall = append(tall, b)
					}
				}
				fmt.Printf("| %d | %d | %.0f%% | %s | %s | %s | %s | %d of %d | %.2f s |\n",
					n, limit, 100*loss, secs(quantile(t99, 0.5)), secs(quantile(t99, 0.99)),
					secs(quantile(tall, 0.5)), secs(quantile(tall, 0.99)), missed, o.trials,
					serfTime(n, gossipNodes, gossipInterval.Seconds(), loss))
			}
		}
	}
	fmt.Println()
}

// disseminate runs one broadcast from node 0 and returns when 99% of the
// nodes and when all of them held it (+Inf if some never did).
func disseminate(rng *rand.Rand, n, fanout, limit int, interval, loss float64) (t99, tall float64) {
	phase := make([]float64, n)
	for i := range phase {
		phase[i] = rng.Float64() * interval
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmpFloat(phase[a], phase[b]) })
	got := make([]float64, n)
	for i := range got {
		got[i] = math.Inf(1)
	}
	sent := make([]int, n)
	got[0] = 0
	active, have := 1, 1
	var times []float64
	times = append(times, 0)
	const latency = 0.0005 // seconds, one way
	picked := make([]int, 0, fanout)
	for k := 0; active > 0; k++ {
		for _, i := range order {
			t := phase[i] + float64(k)*interval
			if !(got[i] < t) || sent[i] >= limit {
				continue
			}
			picked = picked[:0]
			for len(picked) < min(fanout, n-1) {
				j := rng.IntN(n)
				if j != i && !slices.Contains(picked, j) {
					picked = append(picked, j)
				}
			}
			for _, j := range picked {
				sent[i]++
				if rng.Float64() >= loss && math.IsInf(got[j], 1) {
					got[j] = t + latency
					times = append(times, got[j])
					active++
					have++
				}
				if sent[i] >= limit {
					active--
					break
				}
			}
		}
	}
	slices.Sort(times)
	t99 = times[min(len(times)-1, int(math.Ceil(0.99*float64(n)))-1)]
	if int(math.Ceil(0.99*float64(n))) > len(times) {
		t99 = math.Inf(1)
	}
	tall = math.Inf(1)
	if have == n {
		tall = times[n-1]
	}
	return t99, tall
}

// serfTime is the time at which Serf's convergence simulator
// (website/source/assets/javascripts/_simulator.js in hashicorp/serf)
// reaches 99.99%: infected(x) = n / (1 + (n+1) e^(-c n x)) after x
// rounds, c = fanout/n × (1-loss) × 0.5.
func serfTime(n, fanout int, interval, loss float64) float64 {
	c := float64(fanout) / float64(n) * (1 - loss) * 0.5
	x := math.Log((float64(n)+1)/(1/0.9999-1)) / (c * float64(n))
	return x * interval
}

func decodeTime(table []byte) time.Duration {
	var best time.Duration
	for range 5 {
		var s stateMsg
		start := time.Now()
		if err := json.Unmarshal(table, &s); err != nil {
			log.Fatal(err)
		}
		if d := time.Since(start); best == 0 || d < best {
			best = d
		}
	}
	return best
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.Inf(1)
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func secs(s float64) string {
	if math.IsInf(s, 1) {
		return "never"
	}
	return fmt.Sprintf("%.2f s", s)
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
