// Package workload is the local environment's test workload: the programs
// of the image the kubelet stand-in runs in each managed cluster's test
// namespace. One binary (localenv) holds them all and runs the one its
// argv[0] names, as a multi-call binary: the image root holds a link per
// program, so a container's command "/hello-server" and `kubectl exec ...
// -- echo hello` find their program there and nothing of the host runs.
//
//   - hello-server serves HTTP and HTTPS, answering every request with a
//     line naming the cluster, the scheme and the request;
//   - prometheus-api is a stand-in for a Prometheus server (a real one
//     cannot run here): it scrapes its own request counter and answers
//     the HTTP API's instant queries for vector selectors;
//   - log-writer writes a numbered line at an interval;
//   - pause waits until it is stopped;
//   - echo, cat and hostname do what their namesakes do.
package workload

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Programs are the programs of the image, by name.
var Programs = []string{"hello-server", "prometheus-api", "log-writer", "pause", "echo", "cat", "hostname"}

// IsProgram reports whether name is one of Programs.
func IsProgram(name string) bool { return slices.Contains(Programs, name) }

// Main runs program name with args (without argv[0]) and returns its exit
// code; errors are written to stderr.
func Main(name string, args []string) int {
	var err error
	switch name {
	case "hello-server":
		err = helloServer(args)
	case "prometheus-api":
		err = prometheusAPI(args)
	case "log-writer":
		err = logWriter(args)
	case "pause":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		<-ctx.Done()
	case "echo":
		_, err = fmt.Println(strings.Join(args, " "))
	case "cat":
		_, err = io.Copy(os.Stdout, os.Stdin)
	case "hostname":
		var h string
		if h, err = os.Hostname(); err == nil {
			_, err = fmt.Println(h)
		}
	default:
		err = fmt.Errorf("unknown program %q (the image has %s)", name, strings.Join(Programs, ", "))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

// Greeting is hello-server's answer to a request, for the name it was
// started with (--name) and the scheme the request came in on.
func Greeting(name, scheme, method, path string) string {
	return fmt.Sprintf("hello from %s over %s: %s %s\n", name, scheme, method, path)
}

// helloServer serves Greeting on --http-port and, with --cert and --key,
// on --https-port, until SIGTERM; it logs each request to stdout.
func helloServer(args []string) error {
	fs := flag.NewFlagSet("hello-server", flag.ContinueOnError)
	name := fs.String("name", "", "the name it answers with (required)")
	httpPort := fs.Int("http-port", 8080, "the HTTP port")
	httpsPort := fs.Int("https-port", 8443, "the HTTPS port (with --cert and --key)")
	certFile := fs.String("cert", "", "the HTTPS serving certificate (PEM)")
	keyFile := fs.String("key", "", "the HTTPS serving key (PEM)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("--name is required")
	}
	if (*certFile == "") != (*keyFile == "") {
		return errors.New("--cert and --key go together")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var mu sync.Mutex // one log line at a time
	handler := func(scheme string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				_, _ = io.WriteString(w, "ok\n")
				return
			}
			mu.Lock()
			fmt.Printf("%s %s %s %s\n", time.Now().UTC().Format(time.RFC3339), scheme, r.Method, r.URL.RequestURI())
			mu.Unlock()
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, Greeting(*name, scheme, r.Method, r.URL.Path))
		})
	}
	type endpoint struct {
		scheme string
		port   int
	}
	endpoints := []endpoint{{"http", *httpPort}}
	var tlsConfig *tls.Config
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return fmt.Errorf("failed to load the serving certificate: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		endpoints = append(endpoints, endpoint{"https", *httpsPort})
	}
	errs := make(chan error, len(endpoints))
	var servers []*http.Server
	for _, e := range endpoints {
		l, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(e.port)))
		if err != nil {
			return fmt.Errorf("failed to listen for %s: %w", e.scheme, err)
		}
		if e.scheme == "https" {
			l = tls.NewListener(l, tlsConfig)
		}
		s := &http.Server{Handler: handler(e.scheme), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, s)
		go func() { errs <- s.Serve(l) }()
		fmt.Printf("serving %s on port %d\n", e.scheme, e.port)
	}
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
	}
	for _, s := range servers {
		_ = s.Close()
	}
	return nil
}

// logWriter writes "<prefix> line <n>" every --interval until SIGTERM.
func logWriter(args []string) error {
	fs := flag.NewFlagSet("log-writer", flag.ContinueOnError)
	prefix := fs.String("prefix", "log-writer", "what each line starts with")
	interval := fs.Duration("interval", time.Second, "time between lines")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *interval <= 0 {
		return fmt.Errorf("--interval %s must be positive", *interval)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	for n := 1; ; n++ {
		if _, err := fmt.Printf("%s line %d\n", *prefix, n); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}
