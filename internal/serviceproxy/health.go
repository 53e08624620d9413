package serviceproxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
)

// health serves /healthz (the process runs) and /readyz (it takes requests;
// false while draining).
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

func (h *health) setReady(ready bool) { h.ready.Store(ready) }

// run serves until ctx is done (the caller ends it after the drain).
func (h *health) run(ctx context.Context) error {
	errs := make(chan error, 1)
	go func() { errs <- h.server.ListenAndServe() }()
	select {
	case err := <-errs:
		return fmt.Errorf("the health server failed: %w", err)
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
