package serviceproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/kubeconfig"
	"open-cluster-management.io/cluster-proxy/internal/serviceproxy/authn"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// Options are the settings of `cluster-proxy service-proxy`, with the
// existing addon's flag names and defaults where it has them.
type Options struct {
	// CertFile and KeyFile are the serving certificate and key.
	CertFile, KeyFile string
	// ClientCAFile holds the cluster-proxy CA: only callers presenting a
	// client certificate it issued are served.
	ClientCAFile string
	// AdditionalServiceCAFile is extra trust for Service targets; a missing
	// file is tolerated.
	AdditionalServiceCAFile string
	// BindAddress serves HTTPS; HealthBindAddress serves /healthz and
	// /readyz.
	BindAddress, HealthBindAddress string
	// Kubeconfig reaches the managed cluster; empty means in-cluster.
	Kubeconfig string
	// HubKubeconfig reaches the hub, for hub TokenReviews.
	HubKubeconfig string
	// EnableImpersonation authenticates hub tokens and forwards their
	// requests impersonating the hub user.
	EnableImpersonation bool
	// TokenReviewCacheTTL caches review results; 0 disables the cache.
	TokenReviewCacheTTL time.Duration
	// MaxIdleConns, IdleConnTimeout, TLSHandshakeTimeout and
	// ExpectContinueTimeout tune the outbound transport.
	MaxIdleConns                                                int
	IdleConnTimeout, TLSHandshakeTimeout, ExpectContinueTimeout time.Duration
	// DrainTimeout bounds the graceful shutdown; MinDrainDuration is how
	// long the service-proxy stays up not ready before it stops accepting.
	DrainTimeout, MinDrainDuration time.Duration
	// KubeAPIQPS and KubeAPIBurst limit the TokenReview clients.
	KubeAPIQPS   float32
	KubeAPIBurst int
}

// NewOptions returns the existing addon's service-proxy defaults.
func NewOptions() *Options {
	return &Options{
		ClientCAFile:          "/etc/ca/ca.crt",
		BindAddress:           fmt.Sprintf(":%d", proxyv1alpha1.ServiceProxyPort),
		HealthBindAddress:     ":8000",
		EnableImpersonation:   true,
		TokenReviewCacheTTL:   10 * time.Second,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DrainTimeout:          30 * time.Second,
		MinDrainDuration:      10 * time.Second,
		KubeAPIQPS:            50,
		KubeAPIBurst:          100,
	}
}

// AddFlags binds the options to flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.CertFile, "cert", o.CertFile, "Serving certificate file.")
	fs.StringVar(&o.KeyFile, "key", o.KeyFile, "Serving key file.")
	fs.StringVar(&o.ClientCAFile, "client-ca", o.ClientCAFile, "The cluster-proxy CA: only callers presenting a client certificate it issued may use the service-proxy.")
	fs.StringVar(&o.AdditionalServiceCAFile, "additional-service-ca", o.AdditionalServiceCAFile, "Additional CA certificates trusted for Service targets (a missing file is ignored).")
	fs.StringVar(&o.BindAddress, "bind-address", o.BindAddress, "Address the HTTPS server listens on.")
	fs.StringVar(&o.HealthBindAddress, "health-bind-address", o.HealthBindAddress, "Address of /healthz and /readyz.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to the managed cluster kubeconfig; empty means in-cluster (or $KUBECONFIG).")
	fs.StringVar(&o.HubKubeconfig, "hub-kubeconfig", o.HubKubeconfig, "Path to the hub kubeconfig, for authenticating hub tokens (needed with --enable-impersonation).")
	fs.BoolVar(&o.EnableImpersonation, "enable-impersonation", o.EnableImpersonation, "Authenticate hub tokens and forward their requests impersonating the hub user (hub service accounts as cluster:hub:<name>).")
	fs.DurationVar(&o.TokenReviewCacheTTL, "token-review-cache-ttl", o.TokenReviewCacheTTL, "How long token review results are cached; 0 disables the cache.")
	fs.IntVar(&o.MaxIdleConns, "max-idle-conns", o.MaxIdleConns, "Idle connections the outbound transport keeps.")
	fs.DurationVar(&o.IdleConnTimeout, "idle-conn-timeout", o.IdleConnTimeout, "How long an idle outbound connection is kept.")
	fs.DurationVar(&o.TLSHandshakeTimeout, "tls-handshake-timeout", o.TLSHandshakeTimeout, "Outbound TLS handshake timeout.")
	fs.DurationVar(&o.ExpectContinueTimeout, "expect-continue-timeout", o.ExpectContinueTimeout, "Outbound Expect: 100-continue timeout.")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", o.DrainTimeout, "How long open requests may take to finish at shutdown.")
	fs.DurationVar(&o.MinDrainDuration, "min-drain-duration", o.MinDrainDuration, "How long the service-proxy reports not ready before it stops accepting requests.")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "QPS of the TokenReview clients.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Burst of the TokenReview clients.")
}

// Complete has nothing to fill in.
func (o *Options) Complete() error { return nil }

// Validate reports every invalid option, each naming its flag.
func (o *Options) Validate() error {
	var errs []error
	for flag, v := range map[string]string{"--cert": o.CertFile, "--key": o.KeyFile, "--client-ca": o.ClientCAFile} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", flag))
		}
	}
	if o.EnableImpersonation && o.HubKubeconfig == "" {
		errs = append(errs, errors.New("--enable-impersonation needs --hub-kubeconfig to authenticate hub tokens"))
	}
	for flag, addr := range map[string]string{"--bind-address": o.BindAddress, "--health-bind-address": o.HealthBindAddress} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("invalid %s %q: %w", flag, addr, err))
		}
	}
	for flag, d := range map[string]time.Duration{
		"--token-review-cache-ttl": o.TokenReviewCacheTTL, "--idle-conn-timeout": o.IdleConnTimeout,
		"--tls-handshake-timeout": o.TLSHandshakeTimeout, "--expect-continue-timeout": o.ExpectContinueTimeout,
		"--drain-timeout": o.DrainTimeout, "--min-drain-duration": o.MinDrainDuration,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("invalid %s %s: must not be negative", flag, d))
		}
	}
	if o.MaxIdleConns < 0 {
		errs = append(errs, fmt.Errorf("invalid --max-idle-conns %d: must not be negative", o.MaxIdleConns))
	}
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst <= 0 {
		errs = append(errs, fmt.Errorf("invalid --kube-api-qps %v / --kube-api-burst %d: both must be positive", o.KubeAPIQPS, o.KubeAPIBurst))
	}
	return errors.Join(errs...)
}

// Log writes the effective options.
func (o *Options) Log(log logr.Logger) {
	log.Info("service-proxy options",
		"cert", o.CertFile, "key", o.KeyFile, "clientCA", o.ClientCAFile, "additionalServiceCA", o.AdditionalServiceCAFile,
		"bindAddress", o.BindAddress, "healthBindAddress", o.HealthBindAddress,
		"kubeconfig", o.Kubeconfig, "hubKubeconfig", o.HubKubeconfig, "enableImpersonation", o.EnableImpersonation,
		"tokenReviewCacheTTL", o.TokenReviewCacheTTL, "maxIdleConns", o.MaxIdleConns, "idleConnTimeout", o.IdleConnTimeout,
		"tlsHandshakeTimeout", o.TLSHandshakeTimeout, "expectContinueTimeout", o.ExpectContinueTimeout,
		"drainTimeout", o.DrainTimeout, "minDrainDuration", o.MinDrainDuration,
		"kubeAPIQPS", o.KubeAPIQPS, "kubeAPIBurst", o.KubeAPIBurst)
}

// Run serves until ctx is done, then drains. The options must be validated.
func Run(ctx context.Context, o *Options) error {
	log := klog.FromContext(ctx)
	server, err := o.newServer()
	if err != nil {
		return err
	}
	serving, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return fmt.Errorf("failed to load --cert %s and --key %s: %w", o.CertFile, o.KeyFile, err)
	}
	clientCAs, err := loadPool(o.ClientCAFile)
	if err != nil {
		return fmt.Errorf("failed to load --client-ca: %w", err)
	}
	https := &http.Server{
		Addr: o.BindAddress,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			server.ServeHTTP(w, r.WithContext(klog.NewContext(r.Context(), log)))
		}),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{serving},
			// Callers without a certificate reach the handler, which tells
			// them why they are refused.
			ClientAuth: tls.VerifyClientCertIfGiven,
			ClientCAs:  clientCAs,
		},
		ReadHeaderTimeout: 32 * time.Second,
		MaxHeaderBytes:    1 << 20,
	}
	health := newHealth(o.HealthBindAddress)

	listener, err := net.Listen("tcp", o.BindAddress)
	if err != nil {
		return fmt.Errorf("failed to listen on --bind-address %s: %w", o.BindAddress, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	// Health answers (not ready) until the drain is over.
	healthCtx, stopHealth := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHealth()
	g.Go(func() error { return health.run(healthCtx) })
	g.Go(func() error {
		log.Info("serving", "address", listener.Addr().String())
		if err := https.ServeTLS(listener, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("the HTTPS server failed: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		defer stopHealth()
		<-gctx.Done()
		health.setReady(false)
		log.Info("draining", "minDrainDuration", o.MinDrainDuration, "drainTimeout", o.DrainTimeout)
		time.Sleep(o.MinDrainDuration)
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(gctx), o.DrainTimeout)
		defer cancel()
		return https.Shutdown(shutdownCtx)
	})
	health.setReady(true)
	return g.Wait()
}

// newServer builds the handler: the kube-apiserver target, the transports
// and the authentication chain.
func (o *Options) newServer() (*Server, error) {
	managed, err := kubeconfig.Load(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	managed.QPS, managed.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	kubeURL, err := url.Parse(managed.Host)
	if err != nil || kubeURL.Host == "" {
		return nil, fmt.Errorf("the managed cluster's configuration has no usable host %q", managed.Host)
	}
	if kubeURL.Scheme == "" {
		kubeURL.Scheme = "https"
	}
	anonymousTLS, err := rest.TLSConfigFor(rest.AnonymousClientConfig(managed))
	if err != nil {
		return nil, fmt.Errorf("failed to build the TLS configuration for the kube-apiserver: %w", err)
	}
	ownTLS, err := rest.TLSConfigFor(managed)
	if err != nil {
		return nil, fmt.Errorf("failed to build the TLS configuration for the kube-apiserver: %w", err)
	}
	own, err := rest.HTTPWrappersForConfig(managed, o.transport(ownTLS))
	if err != nil {
		return nil, fmt.Errorf("failed to build the service-proxy's own kube-apiserver transport: %w", err)
	}

	// Services are trusted with the cluster's CA plus the additional CA.
	serviceTLS := &tls.Config{MinVersion: tls.VersionTLS12}
	if anonymousTLS != nil && anonymousTLS.RootCAs != nil {
		serviceTLS.RootCAs = anonymousTLS.RootCAs.Clone()
	}
	if o.AdditionalServiceCAFile != "" {
		data, err := os.ReadFile(o.AdditionalServiceCAFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// Tolerated: the ConfigMap behind the file is optional.
		case err != nil:
			return nil, fmt.Errorf("failed to read --additional-service-ca %s: %w", o.AdditionalServiceCAFile, err)
		default:
			if serviceTLS.RootCAs == nil {
				serviceTLS.RootCAs = x509.NewCertPool()
			}
			if !serviceTLS.RootCAs.AppendCertsFromPEM(data) {
				return nil, fmt.Errorf("--additional-service-ca %s holds no PEM certificate", o.AdditionalServiceCAFile)
			}
		}
	}

	s := &Server{
		KubeAPIServer: kubeURL,
		Anonymous:     o.transport(anonymousTLS),
		Own:           own,
		Services:      o.transport(serviceTLS),
	}
	if o.EnableImpersonation {
		managedClient, err := kubernetes.NewForConfig(managed)
		if err != nil {
			return nil, fmt.Errorf("failed to create the managed cluster client: %w", err)
		}
		hubConfig, err := kubeconfig.Load(o.HubKubeconfig)
		if err != nil {
			return nil, err
		}
		hubConfig.QPS, hubConfig.Burst = o.KubeAPIQPS, o.KubeAPIBurst
		hubClient, err := kubernetes.NewForConfig(hubConfig)
		if err != nil {
			return nil, fmt.Errorf("failed to create the hub client: %w", err)
		}
		s.Authn = authn.Chain{
			{Name: "managed", Token: authn.Cached(&authn.TokenReview{Client: managedClient.AuthenticationV1().TokenReviews()}, o.TokenReviewCacheTTL)},
			{Name: "hub", Token: authn.Cached(&authn.TokenReview{Client: hubClient.AuthenticationV1().TokenReviews()}, o.TokenReviewCacheTTL), Impersonate: true, MapUser: authn.HubUser},
		}
	}
	return s, nil
}

// transport is the outbound transport: HTTP/1.1 only, so SPDY and WebSocket
// upgrades (exec, attach, port-forward) pass through.
func (o *Options) transport(tlsConfig *tls.Config) *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		MaxIdleConns:          o.MaxIdleConns,
		MaxIdleConnsPerHost:   o.MaxIdleConns,
		IdleConnTimeout:       o.IdleConnTimeout,
		TLSHandshakeTimeout:   o.TLSHandshakeTimeout,
		ExpectContinueTimeout: o.ExpectContinueTimeout,
		ForceAttemptHTTP2:     false,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
}

// loadPool reads PEM certificates from path.
func loadPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
