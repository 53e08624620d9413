package workload

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Labels and names of the Prometheus stand-in's series.
const (
	// PrometheusJob is the job label of its scrape of itself, as a real
	// Prometheus names its own default scrape job.
	PrometheusJob = "prometheus"
	// PrometheusClusterLabel is the label every series of the stand-in
	// carries, naming the cluster it runs in (as a scrape configuration's
	// static labels would).
	PrometheusClusterLabel = "cluster"
	// PrometheusRequestsMetric counts the stand-in's HTTP requests by
	// handler and code (the name a real Prometheus uses for its own).
	PrometheusRequestsMetric = "prometheus_http_requests_total"
)

// PrometheusInstance is the instance label of the stand-in's scrape of
// itself when it listens on port, as a real Prometheus labels its own.
func PrometheusInstance(port int) string {
	return net.JoinHostPort("localhost", strconv.Itoa(port))
}

// lookbackDelta is how far back from the evaluation time a sample still
// counts, Prometheus's default.
const lookbackDelta = 5 * time.Minute

// prometheusAPI is the program prometheus-api: a stand-in for a Prometheus
// server, since a real one cannot run in the local environment. It counts
// its own HTTP requests (PrometheusRequestsMetric), serves them on /metrics
// in the text exposition format, scrapes that endpoint over HTTP every
// --interval as a Prometheus server scrapes itself (recording up,
// scrape_duration_seconds and scrape_samples_scraped as Prometheus does),
// and answers instant queries on /api/v1/query (GET or POST, as the
// Prometheus HTTP API) for vector selectors over the last scrape, such as
// `up` or `prometheus_http_requests_total{handler="/api/v1/query"}`. Every
// series carries PrometheusClusterLabel=--cluster. /-/ready answers 200
// once the first scrape is stored.
func prometheusAPI(args []string) error {
	fs := flag.NewFlagSet("prometheus-api", flag.ContinueOnError)
	cluster := fs.String("cluster", "", "the cluster the series are labelled with (required)")
	port := fs.Int("port", 9090, "the HTTP port")
	interval := fs.Duration("interval", 5*time.Second, "time between scrapes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cluster == "" {
		return errors.New("--cluster is required")
	}
	if *interval <= 0 {
		return fmt.Errorf("--interval %s must be positive", *interval)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(*port)))
	if err != nil {
		return fmt.Errorf("failed to listen: %w", err)
	}
	p := newPrometheusStandIn(*cluster, PrometheusInstance(*port))
	s := &http.Server{Handler: p.handler(), ReadHeaderTimeout: 10 * time.Second}
	errs := make(chan error, 1)
	go func() { errs <- s.Serve(l) }()
	fmt.Printf("serving the Prometheus API stand-in for %s on port %d\n", *cluster, *port)

	target := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)) + "/metrics"
	scraper := &http.Client{Timeout: *interval}
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	for {
		if err := p.scrape(ctx, scraper, target, time.Now()); err != nil {
			fmt.Printf("scrape of %s failed: %v\n", target, err)
		}
		select {
		case err := <-errs:
			return err
		case <-ctx.Done():
			return s.Close()
		case <-ticker.C:
		}
	}
}

// prometheusStandIn holds the stand-in's own metrics and its last scrape.
type prometheusStandIn struct {
	cluster  string
	instance string
	registry *prometheus.Registry
	requests *prometheus.CounterVec

	mu sync.Mutex
	// series is the last scrape, up and the scrape's own series included;
	// nil before the first.
	series model.Vector
}

func newPrometheusStandIn(cluster, instance string) *prometheusStandIn {
	p := &prometheusStandIn{
		cluster:  cluster,
		instance: instance,
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: PrometheusRequestsMetric,
			Help: "HTTP requests the Prometheus API stand-in served, by handler and code.",
		}, []string{"handler", "code"}),
	}
	p.registry.MustRegister(p.requests)
	return p
}

// handler routes the stand-in's endpoints, each counted by
// PrometheusRequestsMetric.
func (p *prometheusStandIn) handler() http.Handler {
	mux := http.NewServeMux()
	count := func(path string, h http.Handler) {
		mux.Handle(path, promhttp.InstrumentHandlerCounter(p.requests.MustCurryWith(prometheus.Labels{"handler": path}), h))
	}
	count("/metrics", promhttp.HandlerFor(p.registry, promhttp.HandlerOpts{}))
	count("/api/v1/query", http.HandlerFunc(p.query))
	count("/-/ready", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		ready := p.series != nil
		p.mu.Unlock()
		if !ready {
			http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "Prometheus Server is Ready.\n")
	}))
	count("/-/healthy", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "Prometheus Server is Healthy.\n")
	}))
	return mux
}

// scrape fetches target as Prometheus does and replaces the stored series
// with what it returned, labelled with the job, instance and cluster, plus
// up, scrape_duration_seconds and scrape_samples_scraped; a failed scrape
// stores up 0 alone.
func (p *prometheusStandIn) scrape(ctx context.Context, client *http.Client, target string, now time.Time) error {
	targetLabels := model.LabelSet{
		model.JobLabel:                          PrometheusJob,
		model.InstanceLabel:                     model.LabelValue(p.instance),
		model.LabelName(PrometheusClusterLabel): model.LabelValue(p.cluster),
	}
	families, err := fetchMetrics(ctx, client, target)
	took := time.Since(now)
	ts := model.TimeFromUnixNano(now.UnixNano())
	var series model.Vector
	add := func(name string, labels model.LabelSet, value float64) {
		m := model.Metric{model.MetricNameLabel: model.LabelValue(name)}
		for k, v := range labels {
			m[k] = v
		}
		for k, v := range targetLabels {
			m[k] = v
		}
		series = append(series, &model.Sample{Metric: m, Value: model.SampleValue(value), Timestamp: ts})
	}
	up := 1.0
	if err != nil {
		up = 0
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			value, ok := simpleValue(f.GetType(), m)
			if !ok {
				continue // histograms and summaries: not needed by the stand-in
			}
			labels := model.LabelSet{}
			for _, l := range m.GetLabel() {
				labels[model.LabelName(l.GetName())] = model.LabelValue(l.GetValue())
			}
			add(f.GetName(), labels, value)
		}
	}
	scraped := len(series)
	add("up", nil, up)
	add("scrape_duration_seconds", nil, took.Seconds())
	add("scrape_samples_scraped", nil, float64(scraped))
	p.mu.Lock()
	p.series = series
	p.mu.Unlock()
	return err
}

// fetchMetrics GETs target and parses its text exposition format.
func fetchMetrics(ctx context.Context, client *http.Client, target string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("server returned HTTP status %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("failed to parse the metrics: %w", err)
	}
	return families, nil
}

// simpleValue is the value of a counter, gauge or untyped metric.
func simpleValue(t dto.MetricType, m *dto.Metric) (float64, bool) {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue(), true
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue(), true
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue(), true
	default:
		return 0, false
	}
}

// apiResponse is the envelope of every Prometheus HTTP API answer.
type apiResponse struct {
	Status    string     `json:"status"`
	Data      *queryData `json:"data,omitempty"`
	ErrorType string     `json:"errorType,omitempty"`
	Error     string     `json:"error,omitempty"`
}

// queryData is the data of an instant query's answer.
type queryData struct {
	ResultType string       `json:"resultType"`
	Result     model.Vector `json:"result"`
}

// query answers GET or POST /api/v1/query: query (a vector selector) at
// time (RFC 3339 or Unix seconds; default now), as the Prometheus HTTP API.
func (p *prometheusStandIn) query(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeAPI(w, http.StatusMethodNotAllowed, apiResponse{Status: "error", ErrorType: "bad_data", Error: "method not allowed"})
		return
	}
	if err := r.ParseForm(); err != nil {
		writeAPI(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: "invalid form: " + err.Error()})
		return
	}
	at := time.Now()
	if t := r.Form.Get("time"); t != "" {
		var err error
		if at, err = parseTime(t); err != nil {
			writeAPI(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: fmt.Sprintf("invalid parameter \"time\": %v", err)})
			return
		}
	}
	sel, err := parseSelector(r.Form.Get("query"))
	if err != nil {
		writeAPI(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: fmt.Sprintf("invalid parameter \"query\": %v", err)})
		return
	}
	p.mu.Lock()
	result := sel.evaluate(p.series, at)
	p.mu.Unlock()
	writeAPI(w, http.StatusOK, apiResponse{Status: "success", Data: &queryData{ResultType: model.ValVector.String(), Result: result}})
}

// writeAPI writes resp as JSON with code.
func writeAPI(w http.ResponseWriter, code int, resp apiResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(resp)
}

// parseTime parses a Prometheus API time: Unix seconds (with a fraction)
// or RFC 3339.
func parseTime(s string) (time.Time, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("cannot parse %q to a valid timestamp", s)
	}
	return t, nil
}

// evaluate returns the series of stored that sel matches with a sample in
// the lookback window ending at at, stamped with at as Prometheus stamps
// an instant vector.
func (sel selector) evaluate(stored model.Vector, at time.Time) model.Vector {
	result := model.Vector{}
	end := model.TimeFromUnixNano(at.UnixNano())
	start := end.Add(-lookbackDelta)
	for _, s := range stored {
		if s.Timestamp.After(end) || !s.Timestamp.After(start) || !sel.matches(s.Metric) {
			continue
		}
		result = append(result, &model.Sample{Metric: s.Metric.Clone(), Value: s.Value, Timestamp: end})
	}
	slices.SortFunc(result, func(a, b *model.Sample) int {
		switch {
		case a.Metric.Before(b.Metric):
			return -1
		case b.Metric.Before(a.Metric):
			return 1
		}
		return 0
	})
	return result
}
