package metrics

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringkv/ringkv/coordinator"
)

// requestBuckets are the request-latency histogram's upper bounds, in
// seconds: 100 µs to 10 s.
var requestBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// requests is the coordinator.Observer behind the request metrics.
type requests struct {
	duration *prometheus.HistogramVec
	failed   *prometheus.CounterVec
	// series caches the children by label set: the vectors' lookups hash
	// the label strings on every call.
	series sync.Map // requestLabels -> *requestSeries
}

// Numeric levels above maxLevelLabel (refused unless N is that large) and
// unknown negative ones share the label "other", so that clients cannot
// grow the series without bound.
const (
	maxLevelLabel = 16
	minLevelLabel = -16
	otherLevel    = 1 << 30
)

type requestLabels struct {
	api   string
	op    coordinator.Op
	level int
}

type requestSeries struct {
	duration prometheus.Observer
	failed   prometheus.Counter
}

func newRequests() *requests {
	return &requests{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ringkv_request_duration_seconds",
			Help:    "Client requests this node coordinated, by client interface, operation and consistency level (R for reads, W for writes), failed ones included.",
			Buckets: requestBuckets,
		}, []string{"api", "op", "level"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ringkv_request_failures_total",
			Help: "Client requests this node coordinated that failed, by client interface, operation and consistency level.",
		}, []string{"api", "op", "level"}),
	}
}

// ObserveRequest implements coordinator.Observer.
func (r *requests) ObserveRequest(api string, op coordinator.Op, level int, d time.Duration, err error) {
	s := r.seriesOf(api, op, level)
	s.duration.Observe(d.Seconds())
	if err != nil {
		s.failed.Inc()
	}
}

// ObserveRequests implements coordinator.BatchObserver: the labels are
// resolved once for the batch's n requests.
func (r *requests) ObserveRequests(api string, op coordinator.Op, level int, d time.Duration, n, failed int) {
	s := r.seriesOf(api, op, level)
	secs := d.Seconds()
	for i := 0; i < n; i++ {
		s.duration.Observe(secs)
	}
	if failed > 0 {
		s.failed.Add(float64(failed))
	}
}

func (r *requests) seriesOf(api string, op coordinator.Op, level int) *requestSeries {
	if level > maxLevelLabel || level < minLevelLabel {
		level = otherLevel // a client's number: bound the series
	}
	key := requestLabels{api, op, level}
	v, ok := r.series.Load(key)
	if !ok {
		lv := "other"
		if level != otherLevel {
			lv = strings.ToLower(coordinator.FormatLevel(level))
		}
		v, _ = r.series.LoadOrStore(key, &requestSeries{
			duration: r.duration.WithLabelValues(api, op.String(), lv),
			failed:   r.failed.WithLabelValues(api, op.String(), lv),
		})
	}
	return v.(*requestSeries)
}
