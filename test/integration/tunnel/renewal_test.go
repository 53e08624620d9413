package tunnel_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// renewalBound bounds how long a renewed file takes to reach a new
// handshake: the processes re-read the files on the next handshake after
// they change, so this is a margin, not an interval.
const renewalBound = 10 * time.Second

var _ = Describe("Certificates renewed on disk", Label("tunnel", "certificates"), func() {
	It("reach new handshakes on every port while requests keep flowing, with no failed request and no restart", func(ctx SpecContext) {
		// Files of this spec's own, from the suite's CA: renewing them
		// does not touch what other specs' processes read.
		renewable := renewablePKI()
		server := startProxyServerWith("renew-proxy-server", 1, renewable, "-v=2")
		relay := startRoundRobinRelay(net.JoinHostPort("127.0.0.1", strconv.Itoa(server.ports.Agent)))
		agent := startProxyAgentWith("renew-proxy-agent", cluster, relay.port, "127.0.0.1", renewable)
		waitHTTPOK(server.healthURL("/readyz"), readyTimeout, server.process, agent.process)
		frontendAddr := server.address()
		agentPortAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(server.ports.Agent))
		agentTLS := func() *tls.Config { return agentClientTLS(agent.certFile, agent.keyFile) }

		oldFrontend := certificateSerial(renewable.ProxyServerCertFile)
		oldAgentPort := certificateSerial(renewable.AgentServerCertFile)
		oldAgent := certificateSerial(agent.certFile)
		Expect(servedSerial(ctx, frontendAddr, proxyTLS)).To(Equal(oldFrontend))
		Expect(servedSerial(ctx, agentPortAddr, agentTLS())).To(Equal(oldAgentPort))
		Eventually(server.process.LogPath).Should(BeAnExistingFile())
		Eventually(logOf(server.process)).WithTimeout(renewalBound).Should(ContainSubstring(serialLog(oldAgent)))

		load := startRequestLoad(ctx, server.ports.Server)
		load.waitForMore(50)

		// The proxy-server's serving certificates, on both ports.
		newFrontend := renewLeaf(renewable.ProxyServerCertFile, renewable.ProxyServerKeyFile)
		newAgentPort := renewLeaf(renewable.AgentServerCertFile, renewable.AgentServerKeyFile)
		Eventually(func(ctx context.Context) (string, error) { return servedSerial(ctx, frontendAddr, proxyTLS) }).
			WithContext(ctx).WithTimeout(renewalBound).Should(Equal(newFrontend), "the client port's certificate")
		Eventually(func(ctx context.Context) (string, error) { return servedSerial(ctx, agentPortAddr, agentTLS()) }).
			WithContext(ctx).WithTimeout(renewalBound).Should(Equal(newAgentPort), "the agent port's certificate")
		load.waitForMore(50)

		// The agent's client certificate, written in place (the cert file,
		// then the key file) as a careless renewal would: the agent keeps
		// the last good pair while the two do not match.
		_, _, err := renewable.AgentCert(cluster)
		Expect(err).NotTo(HaveOccurred())
		newAgent := certificateSerial(agent.certFile)
		Expect(newAgent).NotTo(Equal(oldAgent))
		load.waitForMore(50)

		succeeded, failures := load.stop()
		GinkgoWriter.Printf("%d requests succeeded across the renewals\n", succeeded)
		Expect(failures).To(BeEmpty(), "requests failed while the certificates were renewed")
		Expect(server.process.Done()).NotTo(BeClosed())
		Expect(agent.process.Done()).NotTo(BeClosed())
		Expect(server.restarts).To(BeZero())
		Expect(agent.starts).To(Equal(1))

		// The agent's tunnel outlived its certificate; its next handshake
		// (a new connection, after the relay drops the old one) presents
		// the renewed certificate, as the proxy-server logs.
		relay.dropConnections()
		Eventually(logOf(server.process)).WithTimeout(reconnectBound).Should(ContainSubstring(serialLog(newAgent)),
			"the agent's new connection did not present its renewed certificate")
		Eventually(func(ctx context.Context) error {
			return echoThrough(ctx, newDialer(server.ports.Server), cluster, "after the renewals")
		}).WithContext(ctx).WithTimeout(10 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
		Expect(agent.starts).To(Equal(1))
	})
})

// renewablePKI returns the suite's PKI with the proxy-server's serving
// certificates copied into a directory of their own, which the caller may
// renew; agent certificates it issues are written there too.
func renewablePKI() *framework.TunnelPKI {
	GinkgoHelper()
	dir, err := os.MkdirTemp(workDir, "renewable-")
	Expect(err).NotTo(HaveOccurred())
	p := *pki
	p.Dir = dir
	for _, f := range []*string{&p.ProxyServerCertFile, &p.ProxyServerKeyFile, &p.AgentServerCertFile, &p.AgentServerKeyFile} {
		data, err := os.ReadFile(*f)
		Expect(err).NotTo(HaveOccurred())
		*f = filepath.Join(dir, filepath.Base(*f))
		Expect(os.WriteFile(*f, data, 0o600)).To(Succeed())
	}
	return &p
}

// renewLeaf issues a new serving certificate like the one in certFile
// (its common name and names) from the suite's CA and replaces certFile
// and keyFile with it, each by an atomic rename, as a kubelet updates a
// mounted Secret. It returns the new certificate's serial.
func renewLeaf(certFile, keyFile string) string {
	GinkgoHelper()
	old := readCertificate(certFile)
	sans := old.DNSNames
	for _, ip := range old.IPAddresses {
		sans = append(sans, ip.String())
	}
	certPEM, keyPEM, err := pki.CA.Issue(certs.LeafSpec{CommonName: old.Subject.CommonName, SANs: sans, Usage: certs.UsageServing}, time.Now())
	Expect(err).NotTo(HaveOccurred())
	replaceFile(keyFile, keyPEM)
	replaceFile(certFile, certPEM)
	return certificateSerial(certFile)
}

// replaceFile writes data to a new file next to path and renames it over
// path.
func replaceFile(path string, data []byte) {
	GinkgoHelper()
	tmp := path + ".new"
	Expect(os.WriteFile(tmp, data, 0o600)).To(Succeed())
	Expect(os.Rename(tmp, path)).To(Succeed())
}

func readCertificate(file string) *x509.Certificate {
	GinkgoHelper()
	data, err := os.ReadFile(file)
	Expect(err).NotTo(HaveOccurred())
	block, _ := pem.Decode(data)
	Expect(block).NotTo(BeNil(), "no PEM block in %s", file)
	cert, err := x509.ParseCertificate(block.Bytes)
	Expect(err).NotTo(HaveOccurred())
	return cert
}

// certificateSerial is the serial of the certificate in file, in the
// proxy-server's log format (hexadecimal).
func certificateSerial(file string) string {
	GinkgoHelper()
	return readCertificate(file).SerialNumber.Text(16)
}

// serialLog is how the proxy-server logs the serial of an agent's
// certificate when the agent connects.
func serialLog(serial string) string { return `serial="` + serial + `"` }

// logOf returns a function that reads p's log, for Eventually.
func logOf(p *framework.Process) func() (string, error) {
	return func() (string, error) {
		data, err := os.ReadFile(p.LogPath)
		return string(data), err
	}
}

// agentClientTLS is a client configuration for the proxy-server's agent
// port with the agent certificate in certFile and keyFile.
func agentClientTLS(certFile, keyFile string) *tls.Config {
	GinkgoHelper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	Expect(err).NotTo(HaveOccurred())
	roots := x509.NewCertPool()
	roots.AddCert(pki.CA.Cert)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// servedSerial makes a TLS handshake with addr and returns the serial of
// the certificate it presents.
func servedSerial(ctx context.Context, addr string, cfg *tls.Config) (string, error) {
	d := tls.Dialer{Config: cfg.Clone()}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("failed to handshake with %s: %w", addr, err)
	}
	defer func() { _ = conn.Close() }()
	return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

// requestLoad is a steady stream of echo requests to cluster through a
// proxy-server: three workers share one pooled Dialer (whose TLS
// connection predates the renewals), and a fourth makes a new Dialer, so
// a new TLS handshake, for every request.
type requestLoad struct {
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	succeeded atomic.Int64

	mu       sync.Mutex
	failures []string
}

// startRequestLoad starts the workers against the proxy-server whose
// client port is serverPort.
func startRequestLoad(ctx context.Context, serverPort int) *requestLoad {
	GinkgoHelper()
	ctx, cancel := context.WithCancel(ctx)
	l := &requestLoad{cancel: cancel}
	DeferCleanup(func() { l.stop() })
	pooled := newDialer(serverPort)
	Expect(echoThrough(ctx, pooled, cluster, "warm-up")).To(Succeed())
	for w := range 3 {
		l.wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				l.record(ctx, echoThrough(ctx, pooled, cluster, fmt.Sprintf("pooled %d/%d", w, i)))
			}
		})
	}
	l.wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			dialer, err := client.NewDialer(net.JoinHostPort("127.0.0.1", strconv.Itoa(serverPort)), proxyTLS)
			if err == nil {
				err = echoThrough(ctx, dialer, cluster, fmt.Sprintf("fresh %d", i))
				err = errors.Join(err, dialer.Close())
			}
			l.record(ctx, err)
		}
	})
	return l
}

// record counts one request; a request cut short by stop is not a failure.
func (l *requestLoad) record(ctx context.Context, err error) {
	if err == nil {
		l.succeeded.Add(1)
		return
	}
	if ctx.Err() != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failures = append(l.failures, err.Error())
}

// waitForMore waits until n more requests have succeeded.
func (l *requestLoad) waitForMore(n int64) {
	GinkgoHelper()
	target := l.succeeded.Load() + n
	Eventually(l.succeeded.Load).WithTimeout(30*time.Second).Should(BeNumerically(">=", target),
		"the request load stalled")
}

// stop ends the workers and returns how many requests succeeded and the
// failures.
func (l *requestLoad) stop() (int64, []string) {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.succeeded.Load(), l.failures
}
