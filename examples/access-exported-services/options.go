package main

import (
	"fmt"
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
	// which name the Service on the managed cluster, and --timeout, which
	// bounds the request.
	example.UserServerService
	// Path is the path requested from the Service.
	Path string
}

// NewOptions returns the defaults: GET / from the local environment's test
// Service hello over HTTPS.
func NewOptions() *Options {
	return &Options{
		UserServerService: example.UserServerService{
			Namespace: "cpx-test", Service: "hello", Port: 8443, Scheme: "https", Timeout: 30 * time.Second,
		},
		Path: "/",
	}
}

// AddFlags binds the options to flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.UserServerService.AddFlags(fs, "Service", "request")
	fs.StringVar(&o.Path, "path", o.Path, "The path to request from the Service.")
}

// Validate reports every invalid option, each naming its flag.
func (o *Options) Validate() error {
	var pathErr error
	if !strings.HasPrefix(o.Path, "/") {
		pathErr = fmt.Errorf("invalid --path %q: must start with /", o.Path)
	}
	return o.UserServerService.Validate(pathErr)
}
