package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// prometheusAddress is the address the Prometheus API client is given for
// a Service of the managed cluster that clusterURL
// (https://<user-server>/<cluster>) names: the service URL
// <clusterURL>/api/v1/namespaces/<namespace>/services/<scheme>:<service>:<port>/proxy-service,
// under which the client adds /api/v1/query and the other API paths.
func prometheusAddress(clusterURL, namespace, service, scheme string, port int) string {
	return strings.TrimSuffix(clusterURL, "/") + "/api/v1/namespaces/" + namespace + "/services/" +
		scheme + ":" + service + ":" + strconv.Itoa(port) + "/proxy-service"
}

// run evaluates o.Query now with client_golang's Prometheus API client,
// through the user-server, and writes each resulting sample to out.
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

	address := prometheusAddress(cfg.Host, o.Namespace, o.Service, o.Scheme, o.Port)
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
