package workload

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/common/model"
)

func TestParseSelector(t *testing.T) {
	up := model.Metric{model.MetricNameLabel: "up", "job": "prometheus", "cluster": "cluster1"}
	requests := model.Metric{model.MetricNameLabel: PrometheusRequestsMetric, "handler": "/api/v1/query", "code": "200"}
	for _, tc := range []struct {
		query   string
		matches []model.Metric
		misses  []model.Metric
		err     string
	}{
		{query: "up", matches: []model.Metric{up}, misses: []model.Metric{requests}},
		{query: ` up { job = "prometheus" , cluster='cluster1', } `, matches: []model.Metric{up}},
		{query: `up{cluster!="cluster1"}`, misses: []model.Metric{up}},
		{query: `{__name__=~"up|prometheus_.*"}`, matches: []model.Metric{up, requests}},
		{query: `prometheus_http_requests_total{handler!~"/api/.*"}`, misses: []model.Metric{requests}},
		{query: "{handler=`/api/v1/query`}", matches: []model.Metric{requests}, misses: []model.Metric{up}},
		{query: `{job="pro\"metheus"}`, misses: []model.Metric{up}},
		{query: `{job='it\'s'}`, misses: []model.Metric{up}},
		{query: "", err: "empty query"},
		{query: "sum(up)", err: "only instant vector selectors"},
		{query: "up[5m]", err: "only instant vector selectors"},
		{query: "up + 1", err: "only instant vector selectors"},
		{query: `up{job}`, err: "expected =, !=, =~ or !~"},
		{query: `up{job="x"`, err: "expected , or }"},
		{query: `up{,}`, err: "expected a label name"},
		{query: `up{job=x}`, err: "expected a quoted string"},
		{query: `up{job="x}`, err: "unterminated string"},
		{query: `{job=""}`, err: "at least one non-empty matcher"},
		{query: `{job=~"("}`, err: "invalid regular expression"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			g := NewWithT(t)
			sel, err := parseSelector(tc.query)
			if tc.err != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			for _, m := range tc.matches {
				g.Expect(sel.matches(m)).To(BeTrue(), "%v", m)
			}
			for _, m := range tc.misses {
				g.Expect(sel.matches(m)).To(BeFalse(), "%v", m)
			}
		})
	}
}

func TestParseTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
		err  bool
	}{
		{in: "1700000000", want: time.Unix(1700000000, 0)},
		{in: "1700000000.5", want: time.Unix(1700000000, 5e8)},
		{in: "2023-11-14T22:13:20Z", want: time.Unix(1700000000, 0)},
		{in: "yesterday", err: true},
		{in: "NaN", err: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			g := NewWithT(t)
			got, err := parseTime(tc.in)
			if tc.err {
				g.Expect(err).To(HaveOccurred())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.Equal(tc.want)).To(BeTrue(), "%s", got)
		})
	}
}

// queryResponse is the stand-in's answer as a client decodes it.
type queryResponse struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string       `json:"resultType"`
		Result     model.Vector `json:"result"`
	} `json:"data"`
}

func TestPrometheusStandIn(t *testing.T) {
	g := NewWithT(t)
	p := newPrometheusStandIn("cluster1", PrometheusInstance(9090))
	srv := httptest.NewServer(p.handler())
	t.Cleanup(srv.Close)

	do := func(method, query string, extra url.Values) (int, queryResponse) {
		t.Helper()
		form := url.Values{"query": {query}}
		for k, v := range extra {
			form[k] = v
		}
		var req *http.Request
		var err error
		if method == http.MethodPost {
			req, err = http.NewRequestWithContext(t.Context(), method, srv.URL+"/api/v1/query", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, err = http.NewRequestWithContext(t.Context(), method, srv.URL+"/api/v1/query?"+form.Encode(), nil)
		}
		g.Expect(err).NotTo(HaveOccurred())
		resp, err := srv.Client().Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		defer func() { _ = resp.Body.Close() }()
		var out queryResponse
		g.Expect(json.NewDecoder(resp.Body).Decode(&out)).To(Succeed())
		return resp.StatusCode, out
	}
	ready := func() int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/-/ready", nil)
		g.Expect(err).NotTo(HaveOccurred())
		resp, err := srv.Client().Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		return resp.StatusCode
	}

	// Before the first scrape: not ready, and nothing to answer with.
	g.Expect(ready()).To(Equal(http.StatusServiceUnavailable))
	code, resp := do(http.MethodGet, "up", nil)
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(resp.Status).To(Equal("success"))
	g.Expect(resp.Data.ResultType).To(Equal("vector"))
	g.Expect(resp.Data.Result).To(BeEmpty())

	// A scrape of its own /metrics: up 1 and the request counter, labelled.
	scrapedAt := time.Now()
	g.Expect(p.scrape(t.Context(), srv.Client(), srv.URL+"/metrics", scrapedAt)).To(Succeed())
	g.Expect(ready()).To(Equal(http.StatusOK))
	code, resp = do(http.MethodPost, "up", nil)
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(resp.Data.Result).To(HaveLen(1))
	g.Expect(resp.Data.Result[0].Metric).To(Equal(model.Metric{
		model.MetricNameLabel: "up", model.JobLabel: PrometheusJob, model.InstanceLabel: "localhost:9090", PrometheusClusterLabel: "cluster1",
	}))
	g.Expect(resp.Data.Result[0].Value).To(Equal(model.SampleValue(1)))

	// The counter saw the two queries before the scrape (the second is
	// counted once it is answered, so it may or may not be in).
	code, resp = do(http.MethodGet, PrometheusRequestsMetric+`{handler="/api/v1/query",code="200"}`, nil)
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(resp.Data.Result).To(HaveLen(1))
	g.Expect(float64(resp.Data.Result[0].Value)).To(BeNumerically(">=", 1))
	g.Expect(resp.Data.Result[0].Metric).To(HaveKeyWithValue(model.LabelName(PrometheusClusterLabel), model.LabelValue("cluster1")))

	// The evaluation time stamps the answer; outside the lookback window
	// there is nothing.
	at := scrapedAt.Add(time.Minute)
	code, resp = do(http.MethodGet, "up", url.Values{"time": {at.Format(time.RFC3339Nano)}})
	g.Expect(code).To(Equal(http.StatusOK))
	g.Expect(resp.Data.Result).To(HaveLen(1))
	g.Expect(resp.Data.Result[0].Timestamp).To(Equal(model.TimeFromUnixNano(at.UnixNano())))
	for _, outside := range []time.Time{scrapedAt.Add(-time.Second), scrapedAt.Add(lookbackDelta + time.Second)} {
		code, resp = do(http.MethodGet, "up", url.Values{"time": {outside.Format(time.RFC3339Nano)}})
		g.Expect(code).To(Equal(http.StatusOK))
		g.Expect(resp.Data.Result).To(BeEmpty(), "at %s", outside)
	}

	// Errors as the Prometheus API reports them.
	code, resp = do(http.MethodGet, "rate(up[5m])", nil)
	g.Expect(code).To(Equal(http.StatusBadRequest))
	g.Expect(resp.Status).To(Equal("error"))
	g.Expect(resp.ErrorType).To(Equal("bad_data"))
	g.Expect(resp.Error).To(ContainSubstring("only instant vector selectors"))
	code, resp = do(http.MethodGet, "up", url.Values{"time": {"yesterday"}})
	g.Expect(code).To(Equal(http.StatusBadRequest))
	g.Expect(resp.Error).To(ContainSubstring(`invalid parameter "time"`))
	code, _ = do(http.MethodPut, "up", nil)
	g.Expect(code).To(Equal(http.StatusMethodNotAllowed))

	// A failed scrape stores up 0 alone.
	g.Expect(p.scrape(t.Context(), srv.Client(), srv.URL+"/missing", time.Now())).To(MatchError(ContainSubstring("404")))
	code, resp = do(http.MethodGet, `{job="prometheus"}`, nil)
	g.Expect(code).To(Equal(http.StatusOK))
	names := map[model.LabelValue]model.SampleValue{}
	for _, s := range resp.Data.Result {
		names[s.Metric[model.MetricNameLabel]] = s.Value
	}
	g.Expect(names).To(Equal(map[model.LabelValue]model.SampleValue{
		"up": 0, "scrape_duration_seconds": names["scrape_duration_seconds"], "scrape_samples_scraped": 0,
	}))
}
