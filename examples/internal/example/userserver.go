package example

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// UserServerService names a Service of a managed cluster and the kubeconfig
// that reaches the cluster through the hub's user-server. The chart's
// exposedServices must list the Service.
type UserServerService struct {
	// Kubeconfig reaches one managed cluster through the user-server, as
	// `cluster-proxy kubeconfig` writes it: its server is
	// https://<user-server>/<cluster>, its user a bearer token.
	Kubeconfig string
	// Namespace, Service, Port and Scheme name the Service on the managed
	// cluster.
	Namespace, Service string
	Port               int
	Scheme             string
	// Timeout bounds the run.
	Timeout time.Duration
}

// AddFlags binds the fields to the flags --kubeconfig, --namespace,
// --service, --port, --scheme and --timeout; what names the Service in
// their help ("Service", "Prometheus Service") and work what the timeout
// bounds ("request", "query").
func (s *UserServerService) AddFlags(fs *pflag.FlagSet, what, work string) {
	fs.StringVar(&s.Kubeconfig, "kubeconfig", s.Kubeconfig, "A kubeconfig that reaches the managed cluster through the user-server (written by `cluster-proxy kubeconfig`) (required).")
	fs.StringVar(&s.Namespace, "namespace", s.Namespace, "The "+what+"'s namespace on the managed cluster.")
	fs.StringVar(&s.Service, "service", s.Service, "The "+what+"'s name.")
	fs.IntVar(&s.Port, "port", s.Port, "The "+what+"'s port.")
	fs.StringVar(&s.Scheme, "scheme", s.Scheme, "How the service-proxy talks to the "+what+": http or https.")
	fs.DurationVar(&s.Timeout, "timeout", s.Timeout, "How long the "+work+" may take.")
}

// Validate reports every invalid field, each naming its flag, and the
// caller's own errors (nil when valid) between --scheme's and --timeout's.
func (s *UserServerService) Validate(more ...error) error {
	var errs []error
	if s.Kubeconfig == "" {
		errs = append(errs, errors.New("--kubeconfig is required"))
	}
	for _, f := range []struct{ flag, value string }{{"--namespace", s.Namespace}, {"--service", s.Service}} {
		if msgs := validation.IsDNS1123Label(f.value); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("invalid %s %q: %s", f.flag, f.value, strings.Join(msgs, "; ")))
		}
	}
	if s.Port < 1 || s.Port > 65535 {
		errs = append(errs, fmt.Errorf("invalid --port %d: must be 1-65535", s.Port))
	}
	if s.Scheme != "http" && s.Scheme != "https" {
		errs = append(errs, fmt.Errorf("invalid --scheme %q: must be http or https", s.Scheme))
	}
	errs = append(errs, more...)
	if s.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("invalid --timeout %s: must be positive", s.Timeout))
	}
	return errors.Join(errs...)
}

// ServiceURL is the user-server's URL of the Service on the managed cluster
// that clusterURL (https://<user-server>/<cluster>) names:
// <clusterURL>/api/v1/namespaces/<namespace>/services/<scheme>:<service>:<port>/proxy-service.
// A path of the Service goes after it.
func (s *UserServerService) ServiceURL(clusterURL string) string {
	return strings.TrimSuffix(clusterURL, "/") + "/api/v1/namespaces/" + s.Namespace + "/services/" +
		s.Scheme + ":" + s.Service + ":" + strconv.Itoa(s.Port) + "/proxy-service"
}

// Client loads the kubeconfig and returns the Service's URL (ServiceURL of
// the kubeconfig's server) and an HTTP client that trusts the kubeconfig's
// CA (the cluster-proxy CA, which signs the user-server's certificate) and
// sends its bearer token, as client-go does. Close its idle connections
// when done.
func (s *UserServerService) Client() (string, *http.Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		return "", nil, fmt.Errorf("failed to load --kubeconfig: %w", err)
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", nil, fmt.Errorf("failed to build the HTTP client: %w", err)
	}
	return s.ServiceURL(cfg.Host), httpClient, nil
}

// WriteKubeconfig writes to dir a kubeconfig like `cluster-proxy
// kubeconfig`'s for server (https://<user-server>/<cluster>) that trusts
// ca and sends token, and returns its path. For the examples' tests.
func WriteKubeconfig(dir, server string, ca *x509.Certificate, token string) (string, error) {
	cfg := clientcmdapi.NewConfig()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["c"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "c"}
	cfg.CurrentContext = "c"
	path := filepath.Join(dir, "kubeconfig")
	return path, clientcmd.WriteToFile(*cfg, path)
}
