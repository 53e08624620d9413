// Package endpoints serves the HTTP endpoints apiserver-network-proxy's
// proxy-server and proxy-agent have, for ours: on the health port
// /healthz, /readyz (and /ready, its older name) and /metrics; on the admin
// port /metrics and, when enabled, /debug/pprof.
package endpoints

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
)

// Config says what to serve where.
type Config struct {
	// HealthAddress and AdminAddress are the listen addresses.
	HealthAddress, AdminAddress string
	// Ready reports readiness for /readyz, with the reason when not ready.
	Ready func() (bool, string)
	// Collectors are exported on /metrics, beside Go's and the process's.
	Collectors []prometheus.Collector
	// EnableProfiling serves /debug/pprof on the admin port;
	// EnableContentionProfiling also records blocking events.
	EnableProfiling, EnableContentionProfiling bool
}

// Start listens on both addresses and serves until stop is called, which
// waits for the servers to end. It fails, listening on nothing, when an
// address cannot be listened on.
func Start(ctx context.Context, c Config) (stop func(), err error) {
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registry.MustRegister(c.Collectors...)
	metrics := promhttp.HandlerFor(registry, promhttp.HandlerOpts{})

	health := http.NewServeMux()
	health.Handle("/metrics", metrics)
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	ready := func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := c.Ready(); !ok {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, why)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}
	health.HandleFunc("/readyz", ready)
	health.HandleFunc("/ready", ready)

	admin := http.NewServeMux()
	admin.Handle("/metrics", metrics)
	if c.EnableProfiling {
		admin.HandleFunc("/debug/pprof/", pprof.Index)
		admin.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		admin.HandleFunc("/debug/pprof/profile", pprof.Profile)
		admin.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		admin.HandleFunc("/debug/pprof/trace", pprof.Trace)
		if c.EnableContentionProfiling {
			runtime.SetBlockProfileRate(1)
		}
	}

	var listeners []net.Listener
	for _, addr := range []string{c.HealthAddress, c.AdminAddress} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, other := range listeners {
				_ = other.Close()
			}
			return nil, fmt.Errorf("failed to listen on %s: %w", addr, err)
		}
		listeners = append(listeners, l)
	}
	var wg sync.WaitGroup
	var servers []*http.Server
	for i, handler := range []http.Handler{health, admin} {
		s := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 1 << 20}
		servers = append(servers, s)
		l := listeners[i]
		wg.Go(func() {
			if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				klog.FromContext(ctx).Error(err, "An HTTP endpoint stopped", "address", l.Addr().String())
			}
		})
	}
	return func() {
		for _, s := range servers {
			_ = s.Close()
		}
		wg.Wait()
	}, nil
}
