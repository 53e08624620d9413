package main

import (
	"errors"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"open-cluster-management.io/cluster-proxy/examples/internal/example"
)

// Options are the example's flags.
type Options struct {
	// UserServerService holds --kubeconfig (a kubeconfig that reaches one
	// managed cluster through the user-server, as `cluster-proxy
	// kubeconfig` writes it), --namespace, --service, --port and --scheme,
	// which name the Prometheus Service on the managed cluster, and
	// --timeout, which bounds the query.
	example.UserServerService
	// Query is the PromQL expression evaluated at the current time.
	Query string
}

// NewOptions returns the defaults: the local environment's Prometheus
// API stand-in, asked for up.
func NewOptions() *Options {
	return &Options{
		UserServerService: example.UserServerService{
			Namespace: "cpx-test", Service: "prometheus", Port: 9090, Scheme: "http", Timeout: 30 * time.Second,
		},
		Query: "up",
	}
}

// AddFlags binds the options to flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.UserServerService.AddFlags(fs, "Prometheus Service", "query")
	fs.StringVar(&o.Query, "query", o.Query, "The PromQL expression to evaluate now.")
}

// Validate reports every invalid option, each naming its flag.
func (o *Options) Validate() error {
	var queryErr error
	if strings.TrimSpace(o.Query) == "" {
		queryErr = errors.New("--query is required")
	}
	return o.UserServerService.Validate(queryErr)
}
