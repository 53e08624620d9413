package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// Run evaluates o.Query now with client_golang's Prometheus API client,
// through the user-server, and writes each resulting sample to out.
func (o *Options) Run(ctx context.Context, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	// The client's address is the Service's URL under the kubeconfig's
	// server,
	// https://<user-server>/<cluster>/api/v1/namespaces/<namespace>/services/<scheme>:<service>:<port>/proxy-service,
	// under which it adds /api/v1/query and the other API paths; its HTTP
	// client has the kubeconfig's CA and bearer token.
	address, httpClient, err := o.Client()
	if err != nil {
		return err
	}
	defer httpClient.CloseIdleConnections()

	client, err := api.NewClient(api.Config{Address: address, Client: httpClient})
	if err != nil {
		return fmt.Errorf("failed to create the Prometheus API client: %w", err)
	}
	at := time.Now()
	value, warnings, err := promv1.NewAPI(client).Query(ctx, o.Query, at)
	if err != nil {
		return fmt.Errorf("failed to query %s at %s: %w", o.Query, address, err)
	}
	if _, err := fmt.Fprintf(out, "query %s at %s (%s)\n", o.Query, at.UTC().Format(time.RFC3339), address); err != nil {
		return err
	}
	for _, w := range warnings {
		if _, err := fmt.Fprintf(out, "warning: %s\n", w); err != nil {
			return err
		}
	}
	if vector, ok := value.(model.Vector); ok && len(vector) == 0 {
		_, err = fmt.Fprintln(out, "no series matched")
		return err
	}
	// A vector prints one "<series> => <value> @[<time>]" line a sample.
	_, err = fmt.Fprintln(out, value.String())
	return err
}
