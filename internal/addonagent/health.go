package addonagent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"k8s.io/klog/v2"
)

// FilesUnchanged returns a health check that fails once any of files
// differs from what it held when the check was created, so the kubelet
// restarts the pod onto rotated certificates.
func FilesUnchanged(files ...string) (func(ctx context.Context) error, error) {
	initial := make(map[string][]byte, len(files))
	for _, f := range files {
		sum, err := fileSum(f)
		if err != nil {
			return nil, err
		}
		initial[f] = sum
	}
	return func(context.Context) error {
		for _, f := range files {
			sum, err := fileSum(f)
			if err != nil {
				return err
			}
			if !bytes.Equal(sum, initial[f]) {
				return fmt.Errorf("%s changed since the agent started", f)
			}
		}
		return nil
	}, nil
}

func fileSum(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	return sum[:], nil
}

// HealthServer serves /healthz: 200 while every check passes, 500 with the
// failures otherwise.
type HealthServer struct {
	// Addr is the listen address, e.g. ":8888".
	Addr string
	// Checks are named health checks.
	Checks map[string]func(ctx context.Context) error
}

// ServeHTTP answers /healthz.
func (s *HealthServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var failed []error
	for name, check := range s.Checks {
		if err := check(r.Context()); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", name, err))
		}
	}
	if len(failed) > 0 {
		http.Error(w, errors.Join(failed...).Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

// Run serves until ctx is done.
func (s *HealthServer) Run(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("/healthz", s)
	srv := &http.Server{Addr: s.Addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil {
			klog.FromContext(ctx).Error(err, "failed to shut the health server down")
		}
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("health server on %s failed: %w", s.Addr, err)
	}
	return nil
}
