package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// serviceURL is the user-server's URL of path on a Service of the managed
// cluster that clusterURL (https://<user-server>/<cluster>) names:
// <clusterURL>/api/v1/namespaces/<namespace>/services/<scheme>:<service>:<port>/proxy-service<path>.
func serviceURL(clusterURL, namespace, service, scheme string, port int, path string) string {
	return strings.TrimSuffix(clusterURL, "/") + "/api/v1/namespaces/" + namespace + "/services/" +
		scheme + ":" + service + ":" + strconv.Itoa(port) + "/proxy-service" + path
}

// run GETs o.Path from the Service through the user-server and writes the
// status and the body to out. An answer other than 2xx is an error
// carrying the body (403 when exposedServices do not list the Service).
func run(ctx context.Context, o *Options, out io.Writer) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return fmt.Errorf("failed to load --kubeconfig: %w", err)
	}
	// The kubeconfig's CA (the cluster-proxy CA, which signs the
	// user-server's certificate) and bearer token, as client-go uses them.
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return fmt.Errorf("failed to build the HTTP client: %w", err)
	}
	defer httpClient.CloseIdleConnections()

	url := serviceURL(cfg.Host, o.Namespace, o.Service, o.Scheme, o.Port, o.Path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("failed to build the request: %w", err)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("failed to GET %s: %w", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("failed to read the answer of %s: %w", url, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	_, err = fmt.Fprintf(out, "GET %s\n%s\n%s", url, resp.Status, body)
	return err
}
