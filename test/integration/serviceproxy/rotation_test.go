package serviceproxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/servicecert"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// rotationBound bounds how long a file replaced on disk takes to reach a
// new handshake: the processes re-read their files at the next handshake
// after they change, so this is a margin, not an interval.
const rotationBound = 10 * time.Second

// replaceFile writes data to a new file next to path and renames it over
// path, as a kubelet updates a mounted Secret (atomically), and returns
// path.
func replaceFile(path string, data []byte) string {
	GinkgoHelper()
	Expect(os.WriteFile(path+".new", data, 0o600)).To(Succeed())
	Expect(os.Rename(path+".new", path)).To(Succeed())
	return path
}

// replaceKeyPair issues spec from ca and replaces certFile and keyFile with
// it (the key first, as two renames: a handshake between them finds a
// mismatched pair and keeps the last good one). It returns the new
// certificate.
func replaceKeyPair(ca *certs.CA, spec certs.LeafSpec, certFile, keyFile string) *x509.Certificate {
	GinkgoHelper()
	certPEM, keyPEM, err := ca.Issue(spec, time.Now())
	Expect(err).NotTo(HaveOccurred())
	replaceFile(keyFile, keyPEM)
	replaceFile(certFile, certPEM)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	Expect(err).NotTo(HaveOccurred())
	return pair.Leaf
}

// caBundle is the CA certificates of cas in one PEM file's content, as the
// manager writes a bundle during a rotation.
func caBundle(cas ...*certs.CA) []byte {
	var b []byte
	for _, ca := range cas {
		b = append(b, ca.CertPEM...)
	}
	return b
}

// newRotationCA creates a CA named name.
func newRotationCA(name string) *certs.CA {
	GinkgoHelper()
	ca, err := certs.NewCA(name, time.Now(), certs.CAValidity)
	Expect(err).NotTo(HaveOccurred())
	return ca
}

// logCount is how often p's log holds s.
func logCount(p *framework.Process, s string) int {
	GinkgoHelper()
	data, err := os.ReadFile(p.LogPath)
	Expect(err).NotTo(HaveOccurred())
	return strings.Count(string(data), s)
}

// keptConn is one TLS connection to a service-proxy carrying HTTP/1.1
// requests one after the other: whatever the files say later, it is the
// connection of its first handshake.
type keptConn struct {
	address string
	conn    *tls.Conn
	reader  *bufio.Reader
	// acceptableCAs are the CA names the service-proxy asked a client
	// certificate of.
	acceptableCAs []string
}

// dialServiceProxy connects to the service-proxy at address, trusting
// roots for "localhost" and presenting cert whatever CAs the service-proxy
// asks for (so that its verification, not the client's choice, decides),
// offering to resume a session of sessions when not nil, and sends a first
// request: an error is a refused handshake.
func dialServiceProxy(ctx context.Context, address string, cert tls.Certificate, roots *x509.CertPool, sessions tls.ClientSessionCache) (*keptConn, error) {
	k := &keptConn{address: address}
	d := tls.Dialer{Config: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: "localhost", NextProtos: []string{"http/1.1"},
		ClientSessionCache: sessions,
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			for _, der := range cri.AcceptableCAs {
				k.acceptableCAs = append(k.acceptableCAs, commonName(der))
			}
			return &cert, nil
		},
	}}
	conn, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	k.conn, k.reader = conn.(*tls.Conn), bufio.NewReader(conn)
	// With TLS 1.3 the server's verdict on the client certificate arrives
	// after the client's handshake: a request learns it.
	if _, err := k.get(ctx); err != nil {
		_ = k.conn.Close()
		return nil, err
	}
	return k, nil
}

// get reads the team namespace's pods with the managed token on the kept
// connection and returns the status code.
func (k *keptConn) get(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+k.address+"/api/v1/namespaces/"+teamNamespace+"/pods", nil)
	if err != nil {
		return 0, err
	}
	req.Header = kubeHeaders()
	req.Header.Set("Authorization", "Bearer "+managedToken)
	if err := k.conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return 0, err
	}
	if err := req.Write(k.conn); err != nil {
		return 0, fmt.Errorf("failed to send the request: %w", err)
	}
	resp, err := http.ReadResponse(k.reader, req)
	if err != nil {
		return 0, fmt.Errorf("failed to read the answer: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// commonName is the common name of a DER distinguished name (a CA a
// server asks for a client certificate of), or the error parsing it.
func commonName(der []byte) string {
	var rdns pkix.RDNSequence
	if _, err := asn1.Unmarshal(der, &rdns); err != nil {
		return err.Error()
	}
	var name pkix.Name
	name.FillFromRDNSequence(&rdns)
	return name.CommonName
}

// servingSerial is the serial of the certificate the service-proxy served
// on k.
func (k *keptConn) servingSerial() string {
	return k.conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

var _ = Describe("Certificates and CA bundles replaced on disk", Label("serviceproxy", "certificates"), func() {
	It("the service-proxy serves a renewed certificate from a new CA and trusts the client CA bundle as its file holds it, without a restart; an open connection keeps working", func(ctx SpecContext) {
		oldCA, newCA := newRotationCA("old CA"), newRotationCA("new CA")
		rotationDir := GinkgoT().TempDir()
		certFile, keyFile, caFile := filepath.Join(rotationDir, "tls.crt"), filepath.Join(rotationDir, "tls.key"), filepath.Join(rotationDir, "ca.crt")
		oldServing := replaceKeyPair(oldCA, servicecert.Spec, certFile, keyFile)
		replaceFile(caFile, oldCA.CertPEM)
		p, address, _ := startServiceProxy(ctx, "service-proxy-rotation", []string{"--cert=" + certFile, "--key=" + keyFile, "--client-ca=" + caFile, "--min-drain-duration=0s"}, nil)
		oldClient, newClient := issueClient(oldCA, "cluster-proxy-proxy-client"), issueClient(newCA, "cluster-proxy-proxy-client")
		roots := x509.NewCertPool()
		roots.AddCert(oldCA.Cert)
		roots.AddCert(newCA.Cert)

		By("before: the old CA's serving certificate; the old CA's client accepted, the new CA's refused")
		kept, err := dialServiceProxy(ctx, address, oldClient, roots, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { _ = kept.conn.Close() })
		Expect(kept.servingSerial()).To(Equal(oldServing.SerialNumber.String()))
		Expect(kept.acceptableCAs).To(ConsistOf("old CA"))
		_, err = dialServiceProxy(ctx, address, newClient, roots, nil)
		Expect(err).To(MatchError(ContainSubstring("remote error: tls:")), "the new CA's client, before the bundle holds it")

		By("the client CA file becomes the bundle old+new, the serving certificate one of the new CA")
		replaceFile(caFile, caBundle(oldCA, newCA))
		newServing := replaceKeyPair(newCA, servicecert.Spec, certFile, keyFile)
		Eventually(func(ctx context.Context) (string, error) {
			c, err := dialServiceProxy(ctx, address, oldClient, roots, nil)
			if err != nil {
				return "", err
			}
			defer func() { _ = c.conn.Close() }()
			return c.servingSerial(), nil
		}).WithContext(ctx).WithTimeout(rotationBound).Should(Equal(newServing.SerialNumber.String()), "a new handshake gets the new serving certificate")
		fresh, err := dialServiceProxy(ctx, address, newClient, roots, nil)
		Expect(err).NotTo(HaveOccurred(), "the new CA's client is accepted")
		Expect(fresh.acceptableCAs).To(ConsistOf("old CA", "new CA"))
		Expect(fresh.conn.ConnectionState().VerifiedChains).NotTo(BeEmpty())
		Expect(fresh.conn.ConnectionState().PeerCertificates[0].Issuer.CommonName).To(Equal("new CA"))
		_ = fresh.conn.Close()
		other, err := dialServiceProxy(ctx, address, oldClient, roots, nil)
		Expect(err).NotTo(HaveOccurred(), "the old CA's client still is")
		_ = other.conn.Close()

		By("the connection opened before keeps working, with the certificate of its handshake")
		Expect(kept.get(ctx)).To(Equal(http.StatusOK))
		Expect(kept.servingSerial()).To(Equal(oldServing.SerialNumber.String()))

		By("the same process throughout, which read each change once, not once per handshake")
		Expect(p.Done()).NotTo(BeClosed())
		Expect(logCount(p, `"Read a changed certificate"`)).To(Equal(1))
		Expect(logCount(p, `"Read a changed CA bundle"`)).To(Equal(1))

		By("a client of the old CA holding a TLS session it can resume")
		sessions := tls.NewLRUClientSessionCache(4)
		first, err := dialServiceProxy(ctx, address, oldClient, roots, sessions)
		Expect(err).NotTo(HaveOccurred())
		_ = first.conn.Close()
		resumed, err := dialServiceProxy(ctx, address, oldClient, roots, sessions)
		Expect(err).NotTo(HaveOccurred())
		Expect(resumed.conn.ConnectionState().DidResume).To(BeTrue())
		_ = resumed.conn.Close()

		By("the old CA dropped from the bundle: its client is refused, even resuming a session, the new CA's accepted")
		replaceFile(caFile, newCA.CertPEM)
		Eventually(func(ctx context.Context) error {
			c, err := dialServiceProxy(ctx, address, oldClient, roots, nil)
			if err == nil {
				_ = c.conn.Close()
			}
			return err
		}).WithContext(ctx).WithTimeout(rotationBound).Should(MatchError(ContainSubstring("remote error: tls:")))
		_, err = dialServiceProxy(ctx, address, oldClient, roots, sessions)
		Expect(err).To(MatchError(ContainSubstring("remote error: tls:")), "a session verified under the old CA is not resumed")
		fresh, err = dialServiceProxy(ctx, address, newClient, roots, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(fresh.acceptableCAs).To(ConsistOf("new CA"))
		_ = fresh.conn.Close()
		choosing := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{oldClient},
		}}, Timeout: 30 * time.Second}
		defer choosing.CloseIdleConnections()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+address+"/api", nil)
		Expect(err).NotTo(HaveOccurred())
		req.Header = kubeHeaders()
		resp, err := choosing.Do(req)
		Expect(err).NotTo(HaveOccurred())
		body, err := io.ReadAll(resp.Body)
		Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden), "a client choosing by the CAs asked for presents none")
		Expect(string(body)).To(ContainSubstring("this request presented none"))
		Expect(p.Done()).NotTo(BeClosed())
	})

	Context("the user-server, in front of a proxy-server, a proxy-agent and a service-proxy", Ordered, func() {
		const cluster = "cluster-rotation"
		var (
			oldCA, newCA *certs.CA
			pki          *framework.TunnelPKI
			serverBinary string
			ports        framework.ProxyServerPorts
			proxyServer  *framework.Process
			userServer   *framework.Process
			// userServerAddress is the user-server's HTTPS address; its
			// files are in userDir.
			userServerAddress, userDir string
			// spCertFile and spKeyFile are the service-proxy's serving
			// certificate.
			spCertFile, spKeyFile string
			// roots trust both CAs.
			roots *x509.CertPool
			// processes are those of this context, whose logs a failed
			// spec shows.
			processes []*framework.Process
		)

		AfterEach(func() {
			if !CurrentSpecReport().Failed() {
				return
			}
			for _, p := range processes {
				_, _ = fmt.Fprintf(GinkgoWriter, "\n----- %s log -----\n%s\n", p.Name, p.LogTail(40))
			}
		})

		// startProxyServer starts the proxy-server named name on ports and
		// waits until the agent is connected to it.
		startProxyServer := func(ctx context.Context, name string) *framework.Process {
			GinkgoHelper()
			p, err := framework.StartProcess(name, serverBinary, framework.ProxyServerArgs(pki, ports, "server-1", 1), nil, pki.Dir)
			Expect(err).NotTo(HaveOccurred())
			processes = append(processes, p)
			DeferCleanup(framework.StopTunnelProcess, p)
			waitCtx, cancel := context.WithTimeout(ctx, startTimeout)
			defer cancel()
			Expect(framework.WaitHTTPOK(waitCtx, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports.Health), false, p)).To(Succeed(), "the agent connects")
			return p
		}

		BeforeAll(func(ctx SpecContext) {
			var err error
			serverBinary, err = framework.BuildBinary("./cmd/proxy-server", "proxy-server")
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(os.RemoveAll, filepath.Dir(serverBinary))
			agentBinary, err := framework.BuildBinary("./cmd/proxy-agent", "proxy-agent")
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(os.RemoveAll, filepath.Dir(agentBinary))
			tunnelDir := GinkgoT().TempDir()
			pki, err = framework.NewTunnelPKI(tunnelDir, "127.0.0.1")
			Expect(err).NotTo(HaveOccurred())
			oldCA, newCA = pki.CA, newRotationCA("new CA")
			roots = x509.NewCertPool()
			roots.AddCert(oldCA.Cert)
			roots.AddCert(newCA.Cert)

			By("a proxy-server of the old CA and " + cluster + "'s proxy-agent, which resolves its service-proxy host to the service-proxy's address")
			ports, err = framework.FreeProxyServerPorts()
			Expect(err).NotTo(HaveOccurred())
			ip := serviceProxyIP()
			agentCertFile, agentKeyFile, err := pki.AgentCert(cluster)
			Expect(err).NotTo(HaveOccurred())
			agentHealth, err := framework.FreeTunnelPort()
			Expect(err).NotTo(HaveOccurred())
			agentAdmin, err := framework.FreeTunnelPort()
			Expect(err).NotTo(HaveOccurred())
			agent, err := framework.StartProcessWithPrivateNames("proxy-agent", agentBinary,
				framework.ProxyAgentArgs(pki, "agent-1", ports.Agent, agentCertFile, agentKeyFile, framework.ProxyAgentIdentifiers(cluster, "agents"), agentHealth, agentAdmin),
				nil, tunnelDir, map[string]string{proxyv1alpha1.ServiceProxyHost(cluster): ip})
			Expect(err).NotTo(HaveOccurred())
			processes = append(processes, agent)
			DeferCleanup(framework.StopTunnelProcess, agent)
			proxyServer = startProxyServer(ctx, "proxy-server")

			By(cluster + "'s service-proxy at <ip>:7443, serving a certificate of the old CA, trusting the old CA's proxy-client")
			spCertFile, spKeyFile = filepath.Join(tunnelDir, "service-proxy.crt"), filepath.Join(tunnelDir, "service-proxy.key")
			replaceKeyPair(oldCA, servicecert.Spec, spCertFile, spKeyFile)
			sp, _, _ := startServiceProxy(ctx, "service-proxy-behind-rotating-user-server", []string{
				"--cert=" + spCertFile, "--key=" + spKeyFile, "--client-ca=" + pki.CAFile,
				"--bind-address=" + net.JoinHostPort(ip, strconv.Itoa(int(proxyv1alpha1.ServiceProxyPort))),
				"--min-drain-duration=0s",
			}, nil)
			processes = append(processes, sp)

			By("the user-server, trusting bundles that hold the old CA only, serving a certificate of the old CA")
			const userNamespace = "cluster-proxy-rotation"
			_, err = hubClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: userNamespace}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			hubAdmin, err := framework.KubeconfigFor(hub.Config)
			Expect(err).NotTo(HaveOccurred())
			userDir = GinkgoT().TempDir()
			replaceKeyPair(oldCA, certs.LeafSpec{CommonName: "cluster-proxy-user-server", SANs: []string{"127.0.0.1"}, Usage: certs.UsageServing},
				filepath.Join(userDir, "server.crt"), filepath.Join(userDir, "server.key"))
			userPort, err := framework.FreeLoopbackPort()
			Expect(err).NotTo(HaveOccurred())
			userHealth := freeLoopbackAddress()
			userServer, err = framework.StartProcess("user-server-rotation", binary, []string{
				"user-server",
				"--host=127.0.0.1", "--port=" + strconv.Itoa(ports.Server),
				"--proxy-ca-cert=" + replaceFile(filepath.Join(userDir, "proxy-ca.crt"), oldCA.CertPEM),
				"--proxy-cert=" + replaceFile(filepath.Join(userDir, "proxy-client.crt"), pki.ProxyClientCert),
				"--proxy-key=" + replaceFile(filepath.Join(userDir, "proxy-client.key"), pki.ProxyClientKey),
				"--server-cert=" + filepath.Join(userDir, "server.crt"), "--server-key=" + filepath.Join(userDir, "server.key"),
				"--server-port=" + strconv.Itoa(userPort),
				"--service-proxy-ca-cert=" + replaceFile(filepath.Join(userDir, "service-proxy-ca.crt"), oldCA.CertPEM),
				"--health-bind-address=" + userHealth, "--metrics-bind-address=0",
				"--min-drain-duration=0s",
				"--kubeconfig=" + writeFile(userDir, "hub-admin.kubeconfig", hubAdmin),
			}, []string{"POD_NAMESPACE=" + userNamespace}, userDir)
			Expect(err).NotTo(HaveOccurred())
			processes = append(processes, userServer)
			DeferCleanup(userServer.Stop)
			waitCtx, cancel := context.WithTimeout(ctx, startTimeout)
			defer cancel()
			Expect(framework.WaitHTTPOK(waitCtx, "http://"+userHealth+"/readyz", false, userServer)).To(Succeed(), "log:\n%s", userServer.LogTail(40))
			userServerAddress = "127.0.0.1:" + strconv.Itoa(userPort)
		})

		// podsPath is cluster's team namespace pods, through the
		// user-server.
		podsPath := "/" + cluster + "/api/v1/namespaces/" + teamNamespace + "/pods"

		// userGet sends GET podsPath with the managed token with client
		// and returns the status, the body, the serial of the user-server's
		// certificate and whether the connection was one used before.
		userGet := func(ctx context.Context, client *http.Client) (code int, body, serial string, reused bool) {
			GinkgoHelper()
			trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, "https://"+userServerAddress+podsPath, nil)
			Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Authorization", "Bearer "+managedToken)
			resp, err := client.Do(req)
			Expect(err).NotTo(HaveOccurred())
			defer func() { _ = resp.Body.Close() }()
			data, err := io.ReadAll(resp.Body)
			Expect(err).NotTo(HaveOccurred())
			return resp.StatusCode, string(data), resp.TLS.PeerCertificates[0].SerialNumber.String(), reused
		}
		newClient := func() *http.Client {
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}, Timeout: 60 * time.Second}
			DeferCleanup(c.CloseIdleConnections)
			return c
		}

		It("serves a renewed certificate from a new CA to new handshakes, without a restart; an open connection keeps working", func(ctx SpecContext) {
			kept := newClient()
			code, body, oldSerial, _ := userGet(ctx, kept)
			Expect(code).To(Equal(http.StatusOK), body)

			By("the serving certificate replaced by one of the new CA")
			renewed := replaceKeyPair(newCA, certs.LeafSpec{CommonName: "cluster-proxy-user-server", SANs: []string{"127.0.0.1"}, Usage: certs.UsageServing},
				filepath.Join(userDir, "server.crt"), filepath.Join(userDir, "server.key"))
			Expect(renewed.SerialNumber.String()).NotTo(Equal(oldSerial))
			Eventually(func(ctx context.Context) (string, error) {
				conn, err := (&tls.Dialer{Config: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}).DialContext(ctx, "tcp", userServerAddress)
				if err != nil {
					return "", err
				}
				defer func() { _ = conn.Close() }()
				return conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
			}).WithContext(ctx).WithTimeout(rotationBound).Should(Equal(renewed.SerialNumber.String()))
			code, body, serial, _ := userGet(ctx, newClient())
			Expect(code).To(Equal(http.StatusOK), body)
			Expect(serial).To(Equal(renewed.SerialNumber.String()))

			By("the connection opened before carries a request, with the certificate of its handshake")
			code, body, serial, reused := userGet(ctx, kept)
			Expect(code).To(Equal(http.StatusOK), body)
			Expect(reused).To(BeTrue())
			Expect(serial).To(Equal(oldSerial))

			Expect(userServer.Done()).NotTo(BeClosed())
			Expect(logCount(userServer, `"Read a changed certificate"`)).To(Equal(1))
		})

		It("trusts the proxy-server and the service-proxies as its CA bundle files say, without a restart", func(ctx SpecContext) {
			client := newClient()

			By("the proxy-server (restarted, so that the user-server makes a new tunnel) and the service-proxy (live) serving certificates of the new CA")
			replaceKeyPair(newCA, certs.LeafSpec{CommonName: "proxy-server", SANs: []string{"127.0.0.1"}, Usage: certs.UsageServing}, pki.ProxyServerCertFile, pki.ProxyServerKeyFile)
			replaceKeyPair(newCA, servicecert.Spec, spCertFile, spKeyFile)
			Expect(framework.StopTunnelProcess(proxyServer)).To(Succeed())
			proxyServer = startProxyServer(ctx, "proxy-server-new-ca")

			By("the user-server refuses the proxy-server while its bundle holds the old CA only")
			code, body, _, _ := userGet(ctx, client)
			Expect(code).To(Equal(http.StatusBadGateway), body)
			Expect(body).To(And(ContainSubstring("failed to verify the server's certificate for"), ContainSubstring("/proxy-ca.crt: x509: certificate signed by unknown authority")))

			By("--proxy-ca-cert holds old+new: the tunnel is accepted, the service-proxy not yet")
			replaceFile(filepath.Join(userDir, "proxy-ca.crt"), caBundle(oldCA, newCA))
			Eventually(func(ctx context.Context) string {
				_, body, _, _ := userGet(ctx, client)
				return body
			}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(time.Second).Should(And(
				ContainSubstring("failed to verify the server's certificate for"), ContainSubstring(proxyv1alpha1.ServiceProxyHost(cluster)),
				ContainSubstring("/service-proxy-ca.crt: x509: certificate signed by unknown authority")))

			By("--service-proxy-ca-cert holds old+new: the request goes through")
			replaceFile(filepath.Join(userDir, "service-proxy-ca.crt"), caBundle(oldCA, newCA))
			Eventually(func(ctx context.Context) int {
				code, _, _, _ := userGet(ctx, client)
				return code
			}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(time.Second).Should(Equal(http.StatusOK))

			By("the old CA dropped from both bundles: still through, both servers being of the new CA")
			replaceFile(filepath.Join(userDir, "proxy-ca.crt"), newCA.CertPEM)
			replaceFile(filepath.Join(userDir, "service-proxy-ca.crt"), newCA.CertPEM)
			code, body, _, _ = userGet(ctx, client)
			Expect(code).To(Equal(http.StatusOK), body)

			Expect(userServer.Done()).NotTo(BeClosed())
			Expect(logCount(userServer, `"Read a changed CA bundle"`)).To(BeNumerically(">=", 2))
		})
	})
})
