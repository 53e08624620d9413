package framework

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// Ports handed out by FreeTunnelPort: konnectivity's proxy-server refuses
// ports below 1024 and above 49151 (the ephemeral range, where
// FreeLoopbackPort's ports usually are), and staying below Linux's default
// ephemeral range (32768+) keeps them clear of outgoing connections.
const (
	tunnelPortMin = 20000
	tunnelPortMax = 32000
	// tunnelPortAttempts bounds FreeTunnelPort's search.
	tunnelPortAttempts = 200
)

var (
	// tunnelPortsMu guards tunnelPortsTaken.
	tunnelPortsMu sync.Mutex
	// tunnelPortsTaken are the ports FreeTunnelPort returned before, which
	// it never returns again in this process, even if they are free now.
	tunnelPortsTaken = map[int]bool{}
)

// FreeTunnelPort returns a TCP port on 127.0.0.1, between 20000 and 32000,
// that was free a moment ago and that it did not return before. Use it for
// proxy-server and proxy-agent ports: apiserver-network-proxy refuses the
// ephemeral ports FreeLoopbackPort returns. Another process can take the port
// before the caller binds it.
func FreeTunnelPort() (int, error) {
	tunnelPortsMu.Lock()
	defer tunnelPortsMu.Unlock()
	for range tunnelPortAttempts {
		n, err := rand.Int(rand.Reader, big.NewInt(tunnelPortMax-tunnelPortMin))
		if err != nil {
			return 0, fmt.Errorf("failed to pick a port: %w", err)
		}
		port := tunnelPortMin + int(n.Int64())
		if tunnelPortsTaken[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = l.Close()
		tunnelPortsTaken[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("failed to find a free loopback port between %d and %d", tunnelPortMin, tunnelPortMax)
}

// TunnelPKI is the certificates of a proxy-server, its clients and its
// agents, issued by one CA and written as files into Dir.
type TunnelPKI struct {
	// Dir holds the files; it belongs to the caller.
	Dir string
	// CA issued every certificate.
	CA *certs.CA
	// CAFile is the CA certificate (PEM).
	CAFile string
	// ProxyServerCertFile and ProxyServerKeyFile serve the proxy-server's
	// client port (--server-cert/--server-key).
	ProxyServerCertFile, ProxyServerKeyFile string
	// AgentServerCertFile and AgentServerKeyFile serve the proxy-server's
	// agent port (--cluster-cert/--cluster-key); valid for 127.0.0.1 and
	// localhost.
	AgentServerCertFile, AgentServerKeyFile string
	// ProxyClientCert and ProxyClientKey are the PEM client certificate and
	// key of hub clients (the addon-manager's proxy-client Secret).
	ProxyClientCert, ProxyClientKey []byte
}

// NewTunnelPKI creates a CA and issues, into dir, the proxy-server serving
// certificate for proxyServerNames (DNS names or IPs), the agent-server
// serving certificate for 127.0.0.1 and localhost, and the proxy-client
// certificate.
func NewTunnelPKI(dir string, proxyServerNames ...string) (*TunnelPKI, error) {
	now := time.Now()
	ca, err := certs.NewCA(certs.CACommonName, now, certs.CAValidity)
	if err != nil {
		return nil, fmt.Errorf("failed to create the tunnel CA: %w", err)
	}
	pki := &TunnelPKI{Dir: dir, CA: ca, CAFile: filepath.Join(dir, "ca.crt")}
	if err := os.WriteFile(pki.CAFile, ca.CertPEM, 0o600); err != nil {
		return nil, fmt.Errorf("failed to write the tunnel CA: %w", err)
	}
	pki.ProxyServerCertFile, pki.ProxyServerKeyFile, err = pki.issue("proxy-server", certs.LeafSpec{
		CommonName: "proxy-server", SANs: proxyServerNames, Usage: certs.UsageServing,
	}, now)
	if err != nil {
		return nil, err
	}
	pki.AgentServerCertFile, pki.AgentServerKeyFile, err = pki.issue("agent-server", certs.LeafSpec{
		CommonName: "agent-server", SANs: []string{"127.0.0.1", "localhost"}, Usage: certs.UsageServing,
	}, now)
	if err != nil {
		return nil, err
	}
	pki.ProxyClientCert, pki.ProxyClientKey, err = ca.Issue(certs.LeafSpec{
		CommonName: "proxy-client", Organizations: []string{identity.AgentGroup}, Usage: certs.UsageClient,
	}, now)
	if err != nil {
		return nil, fmt.Errorf("failed to issue the proxy-client certificate: %w", err)
	}
	return pki, nil
}

// issue issues spec and writes it to <Dir>/<name>.crt and .key.
func (p *TunnelPKI) issue(name string, spec certs.LeafSpec, now time.Time) (certFile, keyFile string, err error) {
	certPEM, keyPEM, err := p.CA.Issue(spec, now)
	if err != nil {
		return "", "", fmt.Errorf("failed to issue the %s certificate: %w", name, err)
	}
	return p.write(name, certPEM, keyPEM)
}

// write writes a certificate and key to <Dir>/<name>.crt and .key.
func (p *TunnelPKI) write(name string, certPEM, keyPEM []byte) (certFile, keyFile string, err error) {
	certFile = filepath.Join(p.Dir, name+".crt")
	keyFile = filepath.Join(p.Dir, name+".key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("failed to write %s: %w", certFile, err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("failed to write %s: %w", keyFile, err)
	}
	return certFile, keyFile, nil
}

// AgentCert issues the proxy-agent client certificate of cluster with the
// subject the addon-manager's signer gives it (common name
// identity.ProxyAgentUser, the signer and cluster organizational units)
// and returns its files.
func (p *TunnelPKI) AgentCert(cluster string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("failed to generate the agent key of %s: %w", cluster, err)
	}
	subject := pkix.Name{
		CommonName:         identity.ProxyAgentUser,
		Organization:       []string{identity.AgentGroup},
		OrganizationalUnit: []string{identity.SignerOU(p.CA.Cert), identity.ClusterOU(cluster)},
	}
	certPEM, err := p.CA.Sign(subject, key.Public(), certs.UsageClient, 0, time.Now())
	if err != nil {
		return "", "", fmt.Errorf("failed to sign the agent certificate of %s: %w", cluster, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("failed to encode the agent key of %s: %w", cluster, err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return p.write("agent-"+cluster, certPEM, keyPEM)
}

// ProxyServerPorts are the ports of one proxy-server.
type ProxyServerPorts struct {
	// Server is the client (frontend) port, --server-port.
	Server int
	// Agent is the port agents connect to, --agent-port.
	Agent int
	// Health serves /healthz and /readyz, --health-port.
	Health int
	// Admin serves metrics and debugging, --admin-port.
	Admin int
}

// FreeProxyServerPorts picks four ports with FreeTunnelPort.
func FreeProxyServerPorts() (ProxyServerPorts, error) {
	var ports ProxyServerPorts
	for _, p := range []*int{&ports.Server, &ports.Agent, &ports.Health, &ports.Admin} {
		port, err := FreeTunnelPort()
		if err != nil {
			return ProxyServerPorts{}, err
		}
		*p = port
	}
	return ports, nil
}

// ProxyServerArgs are the flags of apiserver-network-proxy's proxy-server
// (which ours accepts too) for a server with id serverID, serving pki on
// ports, all bound to 127.0.0.1, routing by destination host like the
// addon's proxy-servers (--proxy-strategies=destHost) and expecting
// serverCount replicas.
func ProxyServerArgs(pki *TunnelPKI, ports ProxyServerPorts, serverID string, serverCount int) []string {
	return []string{
		"--server-id=" + serverID,
		"--server-count=" + strconv.Itoa(serverCount),
		"--proxy-strategies=destHost",
		"--mode=grpc",
		"--server-bind-address=127.0.0.1",
		"--server-port=" + strconv.Itoa(ports.Server),
		"--agent-bind-address=127.0.0.1",
		"--agent-port=" + strconv.Itoa(ports.Agent),
		"--health-bind-address=127.0.0.1",
		"--health-port=" + strconv.Itoa(ports.Health),
		"--admin-bind-address=127.0.0.1",
		"--admin-port=" + strconv.Itoa(ports.Admin),
		"--server-ca-cert=" + pki.CAFile,
		"--server-cert=" + pki.ProxyServerCertFile,
		"--server-key=" + pki.ProxyServerKeyFile,
		"--cluster-ca-cert=" + pki.CAFile,
		"--cluster-cert=" + pki.AgentServerCertFile,
		"--cluster-key=" + pki.AgentServerKeyFile,
	}
}

// ProxyAgentIdentifiers is the --agent-identifiers value the addon's agent
// chart gives the proxy-agent of cluster installed in agentNamespace:
// host=<cluster>&host=<cluster>.<agentNamespace>&host=<service-proxy host>.
func ProxyAgentIdentifiers(cluster, agentNamespace string) string {
	return "host=" + cluster + "&host=" + cluster + "." + agentNamespace + "&host=" + proxyv1alpha1.ServiceProxyHost(cluster)
}

// ProxyAgentHosts are the host names ProxyAgentIdentifiers registers.
func ProxyAgentHosts(cluster, agentNamespace string) []string {
	return []string{cluster, cluster + "." + agentNamespace, proxyv1alpha1.ServiceProxyHost(cluster)}
}

// ProxyAgentArgs are the flags of apiserver-network-proxy's proxy-agent
// (which ours accepts too) for an agent with id agentID that connects to a
// proxy-server's agent port on 127.0.0.1 with the certificate files certFile
// and keyFile (see AgentCert), registers identifiers, and serves health and
// admin on 127.0.0.1 at healthPort and adminPort.
func ProxyAgentArgs(pki *TunnelPKI, agentID string, serverAgentPort int, certFile, keyFile, identifiers string, healthPort, adminPort int) []string {
	return []string{
		"--agent-id=" + agentID,
		"--proxy-server-host=127.0.0.1",
		"--proxy-server-port=" + strconv.Itoa(serverAgentPort),
		"--agent-identifiers=" + identifiers,
		"--ca-cert=" + pki.CAFile,
		"--agent-cert=" + certFile,
		"--agent-key=" + keyFile,
		"--health-server-host=127.0.0.1",
		"--health-server-port=" + strconv.Itoa(healthPort),
		"--admin-bind-address=127.0.0.1",
		"--admin-server-port=" + strconv.Itoa(adminPort),
	}
}

// hostAliasScript runs as `sh -c <script> sh <hosts file> <binary> <args>`
// inside a new mount namespace: it puts the hosts file over /etc/hosts, for
// this process only, and becomes the binary (so the PID stays the same).
const hostAliasScript = `mount --bind "$1" /etc/hosts || exit 1; shift; exec "$@"`

// StartProcessWithHostAliases is StartProcess for a binary that must resolve
// hostnames to 127.0.0.1 the way a pod's hostAliases make it: the process
// runs in a private mount namespace (unshare(1); with a user namespace when
// not root) in which /etc/hosts is replaced by a file, <dir>/<name>.hosts,
// mapping localhost and hostnames to 127.0.0.1. The rest of the machine
// keeps its /etc/hosts. The returned Process's PID is the binary's own, so
// Stop signals it directly. Needs unshare and mount (util-linux).
func StartProcessWithHostAliases(name, binary string, args, env []string, dir string, hostnames []string) (*Process, error) {
	for _, h := range hostnames {
		if h == "" || strings.ContainsAny(h, " \t\r\n#") {
			return nil, fmt.Errorf("failed to start %s: invalid host alias %q", name, h)
		}
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, fmt.Errorf("failed to start %s with host aliases: %w", name, err)
	}
	if _, err := exec.LookPath("mount"); err != nil {
		return nil, fmt.Errorf("failed to start %s with host aliases: %w", name, err)
	}
	if name == "" || name != filepath.Base(name) {
		return nil, fmt.Errorf("failed to start %s: the name %q is not a plain file name", binary, name)
	}
	hostsFile := filepath.Join(dir, name+".hosts")
	hosts := "127.0.0.1 localhost " + strings.Join(hostnames, " ") + "\n::1 localhost\n"
	if err := os.WriteFile(hostsFile, []byte(hosts), 0o644); err != nil {
		return nil, fmt.Errorf("failed to write the hosts file of %s: %w", name, err)
	}
	unshareArgs := []string{"--mount"}
	if os.Geteuid() != 0 {
		unshareArgs = []string{"--user", "--map-root-user", "--mount"}
	}
	absBinary, err := filepath.Abs(binary)
	if err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", name, err)
	}
	unshareArgs = append(unshareArgs, "--", "/bin/sh", "-c", hostAliasScript, "sh", hostsFile, absBinary)
	unshareArgs = append(unshareArgs, args...)
	return StartProcess(name, unshare, unshareArgs, env, dir)
}

// secondSignalDelay separates the two SIGTERMs of StopTunnelProcess, so the
// kernel does not merge them into one pending signal.
const secondSignalDelay = 100 * time.Millisecond

// StopTunnelProcess stops a proxy-server or proxy-agent quickly. Both ANP
// binaries (and ours, which run ANP's commands) take the first SIGTERM as
// the start of a graceful stop that can last: the proxy-server's gRPC
// graceful stop waits for every open tunnel to end, and the proxy-agent only
// starts draining. They exit on the second SIGTERM; a kubelet sends SIGKILL
// after the grace period instead. StopTunnelProcess sends one SIGTERM, then
// lets Process.Stop send the second (and SIGKILL if that is not enough).
func StopTunnelProcess(p *Process) error {
	select {
	case <-p.Done():
		return p.Stop()
	default:
	}
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("failed to send SIGTERM to %s (pid %d): %w", p.Name, p.PID, err)
	}
	select {
	case <-p.Done():
	case <-time.After(secondSignalDelay):
	}
	return p.Stop()
}
