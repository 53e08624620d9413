package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Run GETs o.Path from the Service through the user-server and writes the
// status and the body to out. An answer other than 2xx is an error
// carrying the body (403 when exposedServices do not list the Service).
func (o *Options) Run(ctx context.Context, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	// The Service's URL under the kubeconfig's server,
	// https://<user-server>/<cluster>/api/v1/namespaces/<namespace>/services/<scheme>:<service>:<port>/proxy-service,
	// and an HTTP client with the kubeconfig's CA and bearer token.
	serviceURL, httpClient, err := o.Client()
	if err != nil {
		return err
	}
	defer httpClient.CloseIdleConnections()

	url := serviceURL + o.Path
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
