package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Options are the example's flags.
type Options struct {
	// Kubeconfig reaches one managed cluster through the user-server, as
	// `cluster-proxy kubeconfig` writes it: its server is
	// https://<user-server>/<cluster>, its user a bearer token.
	Kubeconfig string
	// Namespace, Service, Port and Scheme name the Service on the managed
	// cluster; the chart's exposedServices must list it.
	Namespace, Service string
	Port               int
	Scheme             string
	// Path is the path requested from the Service.
	Path string
	// Timeout bounds the request.
	Timeout time.Duration
}

// NewOptions returns the defaults: the local environment's test Service
// hello over HTTPS.
func NewOptions() *Options {
	return &Options{Namespace: "cpx-test", Service: "hello", Port: 8443, Scheme: "https", Path: "/", Timeout: 30 * time.Second}
}

// AddFlags binds the options to flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "A kubeconfig that reaches the managed cluster through the user-server (written by `cluster-proxy kubeconfig`) (required).")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "The Service's namespace on the managed cluster.")
	fs.StringVar(&o.Service, "service", o.Service, "The Service's name.")
	fs.IntVar(&o.Port, "port", o.Port, "The Service's port.")
	fs.StringVar(&o.Scheme, "scheme", o.Scheme, "How the service-proxy talks to the Service: http or https.")
	fs.StringVar(&o.Path, "path", o.Path, "The path to request from the Service.")
	fs.DurationVar(&o.Timeout, "timeout", o.Timeout, "How long the request may take.")
}

// Validate reports every invalid option, each naming its flag.
func (o *Options) Validate() error {
	var errs []error
	if o.Kubeconfig == "" {
		errs = append(errs, errors.New("--kubeconfig is required"))
	}
	for _, f := range []struct{ flag, value string }{{"--namespace", o.Namespace}, {"--service", o.Service}} {
		if msgs := validation.IsDNS1123Label(f.value); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("invalid %s %q: %s", f.flag, f.value, strings.Join(msgs, "; ")))
		}
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("invalid --port %d: must be 1-65535", o.Port))
	}
	if o.Scheme != "http" && o.Scheme != "https" {
		errs = append(errs, fmt.Errorf("invalid --scheme %q: must be http or https", o.Scheme))
	}
	if !strings.HasPrefix(o.Path, "/") {
		errs = append(errs, fmt.Errorf("invalid --path %q: must start with /", o.Path))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("invalid --timeout %s: must be positive", o.Timeout))
	}
	return errors.Join(errs...)
}
