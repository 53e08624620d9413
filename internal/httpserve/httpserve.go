// Package httpserve runs the HTTPS servers of cluster-proxy's HTTP-side
// commands (service-proxy, user-server) the same way: a health server with
// /healthz and /readyz, a graceful drain (not ready, then a minimum wait,
// then a bounded shutdown), and errors as Kubernetes Status objects, which
// kubectl and client-go show to the user.
package httpserve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// Drain is how a server stops: it reports not ready for MinDuration, then
// lets open requests finish for at most Timeout.
type Drain struct {
	MinDuration, Timeout time.Duration
}

// Serve serves server on listener and a health server on healthAddr until
// ctx is done, then drains. /readyz answers 200 while serving and 503 while
// starting and draining; the health server stays up until the drain is over.
// server.TLSConfig set means HTTPS.
func Serve(ctx context.Context, server *http.Server, listener net.Listener, healthAddr string, drain Drain) error {
	log := klog.FromContext(ctx)
	health := newHealth(healthAddr)
	g, gctx := errgroup.WithContext(ctx)
	healthCtx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHealth()
	g.Go(func() error { return health.run(healthCtx) })
	g.Go(func() error {
		log.Info("serving", "address", listener.Addr().String())
		var err error
		if server.TLSConfig != nil {
			err = server.ServeTLS(listener, "", "")
		} else {
			err = server.Serve(listener)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("the server on %s failed: %w", listener.Addr(), err)
		}
		return nil
	})
	g.Go(func() error {
		defer stopHealth()
		<-gctx.Done()
		health.ready.Store(false)
		log.Info("draining", "minDrainDuration", drain.MinDuration, "drainTimeout", drain.Timeout)
		select {
		case <-time.After(drain.MinDuration):
		case <-healthCtx.Done(): // the health server failed
		}
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), drain.Timeout)
		defer cancel()
		if err := server.Shutdown(shutdownCtx); err != nil {
			return fmt.Errorf("failed to drain the server on %s within %s: %w", listener.Addr(), drain.Timeout, err)
		}
		return nil
	})
	health.ready.Store(true)
	return g.Wait()
}

// health serves /healthz (the process runs) and /readyz (it takes requests).
type health struct {
	server *http.Server
	ready  atomic.Bool
}

func newHealth(addr string) *health {
	h := &health{}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !h.ready.Load() {
			http.Error(w, "not ready: starting or draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	h.server = &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return h
}

// run serves until ctx is done.
func (h *health) run(ctx context.Context) error {
	errs := make(chan error, 1)
	go func() { errs <- h.server.ListenAndServe() }()
	select {
	case err := <-errs:
		return fmt.Errorf("the health server on %s failed: %w", h.server.Addr, err)
	case <-ctx.Done():
	}
	// A short grace covers the probes in flight.
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	if err := h.server.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("failed to shut the health server down: %w", err)
	}
	return nil
}

// WriteStatus answers with a Kubernetes Status object carrying msg, which
// kubectl and client-go show as the error.
func WriteStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	status := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  msg,
		Reason:   reason,
		Code:     int32(code),
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(status)
}
