// Command testserver is the program the kubelet stand-in's tests run as a
// container: an HTTP server that reports what the container sees (its
// arguments, environment, user, hostname and files) and exits 0 on SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "address to serve on")
	printFile := flag.String("print-file", "", "a file whose content is printed at start")
	write := flag.String("write", "", "path=content: write a file, then exit (an init container)")
	flag.Parse()
	if path, content, ok := strings.Cut(*write, "="); ok {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "testserver:", err)
			os.Exit(1)
		}
		fmt.Printf("wrote %s\n", path)
		return
	}

	env := os.Environ()
	sort.Strings(env)
	fmt.Printf("testserver starting: args=%q\n", os.Args)
	fmt.Printf("environment:\n%s\n", strings.Join(env, "\n"))
	if *printFile != "" {
		data, err := os.ReadFile(*printFile)
		fmt.Printf("%s: %q (err %v)\n", *printFile, data, err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/args", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, strings.Join(os.Args, "\n")) })
	mux.HandleFunc("/env", func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, strings.Join(env, "\n")) })
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, _ *http.Request) {
		groups, _ := os.Getgroups()
		host, _ := os.Hostname()
		_, _ = fmt.Fprintf(w, "uid=%d gid=%d groups=%v hostname=%s", os.Getuid(), os.Getgid(), groups, host)
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		data, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		_, _ = w.Write(data)
	})
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		if err := os.WriteFile(r.URL.Query().Get("path"), []byte("written"), 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
		}
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		fmt.Println("testserver: SIGTERM, shutting down")
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "testserver:", err)
		os.Exit(1)
	}
}
