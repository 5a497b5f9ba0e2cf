package metrics

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ringkv/ringkv/antientropy"
	"github.com/ringkv/ringkv/api/resp"
	"github.com/ringkv/ringkv/coordinator"
	"github.com/ringkv/ringkv/handoff"
	"github.com/ringkv/ringkv/rebalance"
	"github.com/ringkv/ringkv/storage"
)

// Member is one ring member as gossip sees it.
type Member struct {
	ID    string
	State string // joining, normal, leaving, left
	Alive bool
}

// MemberStates are the ring states every node reports a gauge for, so
// that a state with no member reads 0 rather than vanishing.
var MemberStates = []string{"joining", "normal", "leaving", "left"}

// Sources are the functions the metrics are read from when scraped. A nil
// function leaves its metrics out (a component that is off).
type Sources struct {
	// Node describes this node for ringkv_node_info.
	NodeID, DC, Rack string

	Coordinator func() coordinator.Stats
	Engine      func() storage.Metrics
	Hints       func() map[string]handoff.Stats
	// AntiEntropy returns the service's rounds and what it knows of each
	// peer.
	AntiEntropy func() (antientropy.Status, map[string]antientropy.PeerStatus)
	Members     func() []Member
	RESP        func() resp.Stats
	Transfers   func() []rebalance.Transfer
	// HandingOver is the partitions this node holds but neither
	// replicates nor gains (rebalance.Service.HandingOver).
	HandingOver func() int
}

// Registry holds a node's metrics.
type Registry struct {
	reg      *prometheus.Registry
	requests *requests
	handler  http.Handler
}

// New returns the metrics of a node reading src, with Go runtime and
// process metrics beside them.
func New(src Sources) *Registry {
	r := &Registry{reg: prometheus.NewRegistry(), requests: newRequests()}
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		r.requests.duration, r.requests.failed,
		newCollector(src),
	)
	r.handler = promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return r
}

// Observer is the coordinator.Observer that feeds the request metrics.
func (r *Registry) Observer() coordinator.Observer { return r.requests }

// Handler serves the metrics in Prometheus' text format (or OpenMetrics
// when the scraper asks for it).
func (r *Registry) Handler() http.Handler { return r.handler }

// Parse reads metrics in the text format into a map from series,
// written name{label="value",...} with the labels sorted by name, to
// value; a histogram gives its _count and _sum series.
func Parse(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := make(map[string]float64)
	for name, f := range families {
		for _, m := range f.GetMetric() {
			labels := m.GetLabel()
			sort.Slice(labels, func(i, j int) bool { return labels[i].GetName() < labels[j].GetName() })
			var ls []string
			for _, l := range labels {
				ls = append(ls, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			suffix := ""
			if len(ls) > 0 {
				suffix = "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[name+suffix] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name+suffix] = m.Gauge.GetValue()
			case m.Untyped != nil:
				out[name+suffix] = m.Untyped.GetValue()
			case m.Histogram != nil:
				out[name+"_count"+suffix] = float64(m.Histogram.GetSampleCount())
				out[name+"_sum"+suffix] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out, nil
}
