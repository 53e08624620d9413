package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/kubernetes"
	konnectivity "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/servicecert"
	"open-cluster-management.io/cluster-proxy/internal/userserver"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	// kubeCluster is the managed cluster's name in the user-server routes.
	kubeCluster = "cluster1"
	// agentNamespace is the agent's namespace in its host= identifiers.
	agentNamespace = "open-cluster-management-cluster-proxy"
	// userServerNamespace is the user-server's $POD_NAMESPACE, where it
	// looks for its exposed-services and TLS profile ConfigMaps (absent
	// here: no Service is exposed, the default TLS profile applies).
	userServerNamespace = "open-cluster-management-addon"
	// kubeGETPath is the small GET measured: one namespace.
	kubeGETPath = "/api/v1/namespaces/default"
	// getWarmUp GETs per path are not counted: they open the keep-alive
	// connections and fill the service-proxy's TokenReview cache.
	getWarmUp = 50
	// getBatch GETs go to one path before the next path's turn: the paths
	// take turns, so load from elsewhere on the machine falls on all three
	// alike.
	getBatch = 100
	// getReadyTimeout bounds the wait for a first successful GET per path.
	getReadyTimeout = 30 * time.Second
	// Issue 13's goals: p50 through our user-server at most 1.5× direct,
	// and at least 5× faster than the per-request-tunnel baseline.
	maxUserServerToDirect   = 1.5
	minBaselineToUserServer = 5.0
)

// getPath is one way to GET kubeGETPath.
type getPath struct {
	name   string
	url    string
	client *http.Client
}

// measureKubeGETs starts a kube-apiserver (with etcd), our tunnel, the
// service-proxy, our user-server and the per-request-tunnel baseline,
// measures a small authenticated GET through each way in, and prints the
// figures and whether issue 13's goals are met.
func measureKubeGETs(ctx context.Context, dir string, bins *binaries, gets int) error {
	began := time.Now()
	// envtest starts without a context; the one step of StartAPIServer that
	// makes a context of its own (issuer discovery) is off here.
	api, err := framework.StartAPIServer() //nolint:contextcheck // see above
	if err != nil {
		return err
	}
	defer func() { _ = api.Stop() }()
	token, err := readerToken(ctx, api)
	if err != nil {
		return err
	}

	// The service-proxy listens on a loopback address of its own at the
	// fixed service-proxy port; the agent resolves the service-proxy host
	// name of kubeCluster to it, as a pod's hostAliases do.
	serviceProxyIP, err := freeLoopbackIP(int(proxyv1alpha1.ServiceProxyPort))
	if err != nil {
		return err
	}
	t, err := startTunnel(ctx, dir, tunnelSpec{
		tag: "kube", serverBin: bins.proxyServer, agentBin: bins.proxyAgent,
		cluster:     kubeCluster,
		identifiers: framework.ProxyAgentIdentifiers(kubeCluster, agentNamespace),
		names:       map[string]string{proxyv1alpha1.ServiceProxyHost(kubeCluster): serviceProxyIP},
	})
	if err != nil {
		return err
	}
	defer t.stop()
	f, err := writeKubeFiles(t.pki, api)
	if err != nil {
		return err
	}

	spHealth, err := freeLoopbackAddress()
	if err != nil {
		return err
	}
	serviceProxy, err := startHTTPSProcess(ctx, t.pki.Dir, "service-proxy", bins.clusterProxy, []string{
		"service-proxy",
		"--cert=" + f.serviceProxyCert, "--key=" + f.serviceProxyKey, "--client-ca=" + t.pki.CAFile,
		"--kubeconfig=" + f.kubeconfig, "--hub-kubeconfig=" + f.kubeconfig,
		"--bind-address=" + net.JoinHostPort(serviceProxyIP, strconv.Itoa(int(proxyv1alpha1.ServiceProxyPort))),
		"--health-bind-address=" + spHealth, "--min-drain-duration=0s",
	}, nil, spHealth)
	if err != nil {
		return err
	}
	defer func() { _ = serviceProxy.Stop() }()

	_, proxyServerPort, err := net.SplitHostPort(t.address)
	if err != nil {
		return fmt.Errorf("failed to split the proxy-server address %s: %w", t.address, err)
	}
	userServerPort, err := framework.FreeLoopbackPort()
	if err != nil {
		return err
	}
	usHealth, err := freeLoopbackAddress()
	if err != nil {
		return err
	}
	userServer, err := startHTTPSProcess(ctx, t.pki.Dir, "user-server", bins.clusterProxy, []string{
		"user-server",
		"--host=127.0.0.1", "--port=" + proxyServerPort,
		"--proxy-ca-cert=" + t.pki.CAFile, "--proxy-cert=" + f.proxyClientCert, "--proxy-key=" + f.proxyClientKey,
		"--server-cert=" + f.userServerCert, "--server-key=" + f.userServerKey, "--server-port=" + strconv.Itoa(userServerPort),
		"--service-proxy-ca-cert=" + t.pki.CAFile,
		"--health-bind-address=" + usHealth, "--min-drain-duration=0s",
		"--kubeconfig=" + f.kubeconfig,
	}, []string{"POD_NAMESPACE=" + userServerNamespace}, usHealth)
	if err != nil {
		return err
	}
	defer func() { _ = userServer.Stop() }()

	baselineURL, stopBaseline, err := startBaseline(t, f)
	if err != nil {
		return err
	}
	defer stopBaseline()

	directURL := api.Config.Host
	if !strings.Contains(directURL, "://") {
		directURL = "https://" + directURL
	}
	paths := []getPath{
		{name: "direct kube-apiserver", url: strings.TrimSuffix(directURL, "/") + kubeGETPath, client: keepAliveClient(api.CAPEM())},
		{name: "cluster-proxy user-server", url: "https://127.0.0.1:" + strconv.Itoa(userServerPort) + "/" + kubeCluster + kubeGETPath, client: keepAliveClient(t.pki.CA.CertPEM)},
		{name: "per-request-tunnel user-server", url: baselineURL + "/" + kubeCluster + kubeGETPath, client: keepAliveClient(t.pki.CA.CertPEM)},
	}
	defer func() {
		for _, p := range paths {
			p.client.CloseIdleConnections()
		}
	}()
	latencies, err := kubeGETs(ctx, paths, token, gets)
	if err != nil {
		return fmt.Errorf("%w\nservice-proxy log:\n%s\nuser-server log:\n%s", err, serviceProxy.LogTail(20), userServer.LogTail(20))
	}

	table := &results{}
	p50 := make([]float64, len(paths))
	for i, p := range paths {
		p50[i] = percentile(latencies[i], 50)
		table.add("kube GET "+kubeGETPath+" p50, ms", p.name, p50[i])
		table.add("kube GET "+kubeGETPath+" p99, ms", p.name, percentile(latencies[i], 99))
	}
	fmt.Printf("\n%d GETs per path (after %d of warm-up), in turns of %d; start and measurement took %s:\n\n",
		gets, getWarmUp, getBatch, time.Since(began).Round(time.Second))
	table.print(os.Stdout, paths[0].name, "")
	toDirect, faster := p50[1]/p50[0], p50[2]/p50[1]
	fmt.Printf("\ngoal: p50 through our user-server ≤ %.1f× direct: %.2f× — %s\n", maxUserServerToDirect, toDirect, verdict(toDirect <= maxUserServerToDirect))
	fmt.Printf("goal: p50 through our user-server ≥ %.0f× faster than the per-request-tunnel baseline: %.2f× — %s\n", minBaselineToUserServer, faster, verdict(faster >= minBaselineToUserServer))
	return nil
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

// readerToken returns a token of a service account allowed to get
// namespaces: the credential of every GET, authenticated for real (the
// kube-apiserver checks it directly; the service-proxy by TokenReview).
func readerToken(ctx context.Context, api *framework.APIServer) (string, error) {
	c, err := kubernetes.NewForConfig(api.Config)
	if err != nil {
		return "", fmt.Errorf("failed to create a client of the kube-apiserver: %w", err)
	}
	const namespace, name = "default", "bench-reader"
	if err := framework.BindClusterRole(ctx, c, "bench-namespace-reader",
		rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: name},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get"}}); err != nil {
		return "", err
	}
	return framework.ServiceAccountToken(ctx, c, namespace, name)
}

// kubeFiles are the files of the service-proxy and the user-server.
type kubeFiles struct {
	// kubeconfig reaches the kube-apiserver as its administrator: the
	// service-proxy's managed and hub kubeconfig (one kube-apiserver plays
	// both clusters), the user-server's hub kubeconfig.
	kubeconfig string
	// serviceProxyCert and serviceProxyKey: the service-proxy's serving
	// certificate (servicecert.Spec) from the tunnel CA, the cluster-proxy
	// CA here.
	serviceProxyCert, serviceProxyKey string
	// userServerCert and userServerKey serve 127.0.0.1, for our user-server
	// and the baseline.
	userServerCert, userServerKey string
	// proxyClientCert and proxyClientKey: the hub's proxy-client
	// certificate, presented to the proxy-server and the service-proxy.
	proxyClientCert, proxyClientKey string
}

// writeKubeFiles writes the kubeFiles into pki.Dir.
func writeKubeFiles(pki *framework.TunnelPKI, api *framework.APIServer) (*kubeFiles, error) {
	f := &kubeFiles{kubeconfig: filepath.Join(pki.Dir, "admin.kubeconfig")}
	kubeconfig, err := framework.KubeconfigFor(api.Config)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(f.kubeconfig, kubeconfig, 0o600); err != nil {
		return nil, fmt.Errorf("failed to write %s: %w", f.kubeconfig, err)
	}
	now := time.Now()
	spCert, spKey, err := pki.CA.Issue(servicecert.Spec, now)
	if err != nil {
		return nil, fmt.Errorf("failed to issue the service-proxy certificate: %w", err)
	}
	usCert, usKey, err := pki.CA.Issue(certs.LeafSpec{CommonName: "cluster-proxy-user-server", SANs: []string{"127.0.0.1"}, Usage: certs.UsageServing}, now)
	if err != nil {
		return nil, fmt.Errorf("failed to issue the user-server certificate: %w", err)
	}
	for _, pair := range []struct {
		name            string
		certPEM, keyPEM []byte
		cert, key       *string
	}{
		{"service-proxy", spCert, spKey, &f.serviceProxyCert, &f.serviceProxyKey},
		{"user-server", usCert, usKey, &f.userServerCert, &f.userServerKey},
		{"proxy-client", pki.ProxyClientCert, pki.ProxyClientKey, &f.proxyClientCert, &f.proxyClientKey},
	} {
		*pair.cert, *pair.key = filepath.Join(pki.Dir, pair.name+".crt"), filepath.Join(pki.Dir, pair.name+".key")
		for file, data := range map[string][]byte{*pair.cert: pair.certPEM, *pair.key: pair.keyPEM} {
			if err := os.WriteFile(file, data, 0o600); err != nil {
				return nil, fmt.Errorf("failed to write %s: %w", file, err)
			}
		}
	}
	return f, nil
}

// startHTTPSProcess starts `cluster-proxy <args>` (the service-proxy or
// the user-server) with its log in dir and waits until healthAddress
// answers /readyz.
func startHTTPSProcess(ctx context.Context, dir, name, binary string, args, env []string, healthAddress string) (*framework.Process, error) {
	p, err := framework.StartProcess(name, binary, args, env, dir)
	if err != nil {
		return nil, err
	}
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := framework.WaitHTTPOK(waitCtx, "http://"+healthAddress+"/readyz", false, p); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("%s did not get ready: %w\nlog:\n%s", name, err, p.LogTail(20))
	}
	return p, nil
}

// perRequestTunnels is the baseline: a user-server built the existing
// addon's way. Every request gets a new konnectivity single-use tunnel (a
// new gRPC connection with mTLS to the proxy-server) and a new
// http.Transport that dials through it; both are closed once the request
// is answered. Routing, target headers and forwarding are our
// user-server's own (userserver.Server), so the per-request tunnel and
// transport are the only difference.
type perRequestTunnels struct {
	// proxyServer is the proxy-server's client address; proxyServerTLS the
	// proxy-client's mTLS configuration for it.
	proxyServer    string
	proxyServerTLS *tls.Config
	// serviceProxyTLS verifies the service-proxy and presents the
	// proxy-client certificate to it.
	serviceProxyTLS *tls.Config
}

// ServeHTTP forwards one request through a tunnel and transport of its own.
func (h *perRequestTunnels) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The tunnel lives until the request is answered (cancelling its
	// context closes it), not beyond.
	tunnelCtx, closeTunnel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer closeTunnel()
	tunnel, err := konnectivity.CreateSingleUseGrpcTunnel(tunnelCtx, h.proxyServer,
		grpc.WithTransportCredentials(credentials.NewTLS(h.proxyServerTLS.Clone())))
	if err != nil {
		http.Error(w, "failed to open a tunnel: "+err.Error(), http.StatusBadGateway)
		return
	}
	transport := &http.Transport{
		DialContext:       tunnel.DialContext,
		TLSClientConfig:   h.serviceProxyTLS.Clone(),
		ForceAttemptHTTP2: false,
	}
	defer transport.CloseIdleConnections()
	forward := &userserver.Server{Transport: transport, Allowlist: func() userserver.Allowlist { return userserver.Allowlist{} }}
	forward.ServeHTTP(w, r)
}

// startBaseline serves perRequestTunnels over HTTPS (the user-server's
// certificate, HTTP/1.1 as ours) on 127.0.0.1 in this process and returns
// its URL.
func startBaseline(t *tunnel, f *kubeFiles) (url string, stop func(), err error) {
	serving, err := tls.LoadX509KeyPair(f.userServerCert, f.userServerKey)
	if err != nil {
		return "", nil, fmt.Errorf("failed to load the user-server certificate: %w", err)
	}
	proxyClient, err := tls.LoadX509KeyPair(f.proxyClientCert, f.proxyClientKey)
	if err != nil {
		return "", nil, fmt.Errorf("failed to load the proxy-client certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(t.pki.CA.Cert)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("failed to listen for the baseline user-server: %w", err)
	}
	server := &http.Server{
		Handler: &perRequestTunnels{
			proxyServer: t.address, proxyServerTLS: t.tlsConfig,
			serviceProxyTLS: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, Certificates: []tls.Certificate{proxyClient}},
		},
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{serving}, NextProtos: []string{"http/1.1"}},
		ReadHeaderTimeout: 32 * time.Second,
	}
	go func() { _ = server.ServeTLS(l, "", "") }()
	return "https://" + l.Addr().String(), func() { _ = server.Close() }, nil
}

// keepAliveClient is an HTTP/1.1 client with keep-alive connections that
// trusts caPEM.
func keepAliveClient(caPEM []byte) *http.Client {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}},
		Timeout:   30 * time.Second,
	}
}

// kubeGETs waits until a GET through each path succeeds, warms each up,
// then GETs n times through each, the paths taking turns in batches, and
// returns each path's latencies in milliseconds.
func kubeGETs(ctx context.Context, paths []getPath, token string, n int) ([][]float64, error) {
	for _, p := range paths {
		if err := waitGET(ctx, p, token); err != nil {
			return nil, err
		}
		for range getWarmUp {
			if err := get(ctx, p, token); err != nil {
				return nil, err
			}
		}
	}
	latencies := make([][]float64, len(paths))
	for done := 0; done < n; done += getBatch {
		for i, p := range paths {
			for range min(getBatch, n-done) {
				start := time.Now()
				if err := get(ctx, p, token); err != nil {
					return nil, err
				}
				latencies[i] = append(latencies[i], float64(time.Since(start).Nanoseconds())/1e6)
			}
		}
	}
	return latencies, nil
}

// waitGET retries a GET through p until one succeeds.
func waitGET(ctx context.Context, p getPath, token string) error {
	deadline := time.Now().Add(getReadyTimeout)
	for {
		err := get(ctx, p, token)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no GET through the %s succeeded in %s: %w", p.name, getReadyTimeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// get GETs the namespace through p with the bearer token and checks the
// answer: 200 and the namespace's object.
func get(ctx context.Context, p getPath, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fmt.Errorf("failed to build the request for %s: %w", p.url, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("failed to GET %s (%s): %w", p.url, p.name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("failed to read the answer of %s (%s): %w", p.url, p.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s (%s): %s: %s", p.url, p.name, resp.Status, bytes.TrimSpace(body))
	}
	if !bytes.Contains(body, []byte(`"name":"default"`)) {
		return fmt.Errorf("GET %s (%s): the answer is not namespace default: %.200s", p.url, p.name, body)
	}
	return nil
}

// freeLoopbackIP returns a random address in 127.0.0.0/8 (not 127.0.0.1)
// where port was free a moment ago.
func freeLoopbackIP(port int) (string, error) {
	for range 20 {
		n, err := rand.Int(rand.Reader, big.NewInt(1<<24-2))
		if err != nil {
			return "", fmt.Errorf("failed to pick a loopback address: %w", err)
		}
		v := n.Int64() + 2 // never 127.0.0.0 or 127.0.0.1
		ip := net.IPv4(127, byte(v>>16), byte(v>>8), byte(v)).String()
		if strings.HasSuffix(ip, ".0") || strings.HasSuffix(ip, ".255") {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return ip, nil
	}
	return "", errors.New("failed to find a loopback address with port " + strconv.Itoa(port) + " free")
}

// freeLoopbackAddress is 127.0.0.1:<a free port>.
func freeLoopbackAddress() (string, error) {
	port, err := framework.FreeLoopbackPort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(port), nil
}
