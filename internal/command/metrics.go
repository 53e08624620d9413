package command

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
)

// MetricsDisabled is the metrics address that turns the endpoint off, as
// for controller-runtime's --metrics-bind-address.
const MetricsDisabled = "0"

// MetricsEndpoint serves /metrics over plain HTTP.
type MetricsEndpoint struct {
	listener net.Listener
	server   *http.Server
	done     chan struct{}
}

// ServeMetrics serves, on /metrics at addr, the Prometheus metrics of
// collectors beside Go's and the process's, in the text format. It listens
// before it returns, so an address in use fails at once, and serves until
// Stop. With addr MetricsDisabled it serves nothing and returns nil, whose
// Stop does nothing.
func ServeMetrics(ctx context.Context, addr string, metrics ...prometheus.Collector) (*MetricsEndpoint, error) {
	if addr == MetricsDisabled {
		return nil, nil
	}
	registry := prometheus.NewRegistry()
	for _, c := range append([]prometheus.Collector{
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}, metrics...) {
		if err := registry.Register(c); err != nil {
			return nil, fmt.Errorf("failed to register a metric: %w", err)
		}
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("failed to serve metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	e := &MetricsEndpoint{
		listener: listener,
		server:   &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 1 << 20},
		done:     make(chan struct{}),
	}
	log := klog.FromContext(ctx)
	go func() {
		defer close(e.done)
		if err := e.server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "The metrics endpoint stopped", "address", listener.Addr().String())
		}
	}()
	log.Info("serving metrics", "address", listener.Addr().String())
	return e, nil
}

// Addr is the address the endpoint listens on.
func (e *MetricsEndpoint) Addr() string { return e.listener.Addr().String() }

// Stop closes the endpoint and waits until it has stopped serving.
func (e *MetricsEndpoint) Stop() {
	if e == nil {
		return
	}
	_ = e.server.Close()
	<-e.done
}

// ValidateMetricsAddress reports an addr of flag that is neither
// MetricsDisabled nor host:port.
func ValidateMetricsAddress(flag, addr string) error {
	if addr == MetricsDisabled {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("invalid %s %q: %w (use %s to turn metrics off)", flag, addr, err, MetricsDisabled)
	}
	return nil
}
