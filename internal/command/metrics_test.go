package command

import (
	"io"
	"net"
	"net/http"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestServeMetrics(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	g := NewWithT(t)
	counter := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_things_total", Help: "Things."})
	counter.Add(3)
	e, err := ServeMetrics(t.Context(), "127.0.0.1:0", counter)
	g.Expect(err).NotTo(HaveOccurred())

	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + e.Addr() + "/metrics")
	g.Expect(err).NotTo(HaveOccurred())
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.Body.Close()).To(Succeed())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(string(body)).To(ContainSubstring("\ntest_things_total 3\n"))
	g.Expect(string(body)).To(ContainSubstring("\ngo_goroutines "), "Go's metrics")
	g.Expect(string(body)).To(ContainSubstring("\nprocess_start_time_seconds "), "the process's metrics")

	_, err = ServeMetrics(t.Context(), e.Addr())
	g.Expect(err).To(MatchError(ContainSubstring("address already in use")), "an address in use fails at once")

	e.Stop()
	_, err = net.Dial("tcp", e.Addr())
	g.Expect(err).To(HaveOccurred(), "nothing listens after Stop")
}

func TestServeMetricsDisabled(t *testing.T) {
	g := NewWithT(t)
	e, err := ServeMetrics(t.Context(), MetricsDisabled, prometheus.NewCounter(prometheus.CounterOpts{Name: "unused_total", Help: "Unused."}))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(e).To(BeNil())
	e.Stop() // a nil endpoint stops as nothing
}

func TestServeMetricsRefusesDuplicates(t *testing.T) {
	g := NewWithT(t)
	opts := prometheus.CounterOpts{Name: "twice_total", Help: "Registered twice."}
	_, err := ServeMetrics(t.Context(), "127.0.0.1:0", prometheus.NewCounter(opts), prometheus.NewCounter(opts))
	g.Expect(err).To(MatchError(ContainSubstring("failed to register a metric")))
}

func TestValidateMetricsAddress(t *testing.T) {
	for _, tt := range []struct {
		addr, wantErr string
	}{
		{addr: "0"},
		{addr: ":8001"},
		{addr: "127.0.0.1:9000"},
		{addr: "8001", wantErr: `invalid --metrics-bind-address "8001"`},
		{addr: "", wantErr: `invalid --metrics-bind-address ""`},
	} {
		t.Run(tt.addr, func(t *testing.T) {
			g := NewWithT(t)
			err := ValidateMetricsAddress("--metrics-bind-address", tt.addr)
			if tt.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
			g.Expect(err).To(MatchError(ContainSubstring("use 0 to turn metrics off")))
		})
	}
}
