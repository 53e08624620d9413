package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"k8s.io/klog/v2"
	konnectivity "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"

	"open-cluster-management.io/cluster-proxy/pkg/client/wire"
)

// reconnectMaxDelay caps gRPC's backoff between connection attempts of one
// tunnel (gRPC's default cap is two minutes).
const reconnectMaxDelay = 5 * time.Second

// konnectivityTunnelClosed is the text of the error konnectivity's
// connection Close returns when the connection's stream has ended.
const konnectivityTunnelClosed = "tunnel closed"

// Dialer dials addresses in managed clusters through a cluster-proxy
// proxy-server. It is safe for concurrent use.
//
// All dials share one gRPC connection to the proxy-server (a konnectivity
// reusable tunnel), each on its own gRPC stream, so a dial costs one round
// trip to the agent instead of a new TCP and TLS handshake with the
// proxy-server. When that connection fails (the proxy-server restarted or
// went away), the Dialer retires it and the next dial opens a new one; a dial
// that fails that way is retried once on the new connection. Connections
// already open on a retired tunnel keep it until they are closed.
//
// The returned connections are konnectivity connections: they do not
// support deadlines (SetDeadline and friends return an error), and their
// tunnel is closed when the reader does not consume received data for 10
// seconds. With konnectivity-client v0.36, data the backend sends at once,
// before the client has written anything (a server-speaks-first protocol),
// may be dropped when it reaches the client right behind the dial's answer:
// the client registers the connection only after it handed the answer on.
// Protocols where the client speaks first (HTTP, the Kubernetes API) are
// not affected.
type Dialer struct {
	address     string
	dialOptions []grpc.DialOption

	mu sync.Mutex
	// current is the tunnel new dials use; nil until the first dial and
	// after it was retired.
	current *pooledTunnel
	// retired holds retired tunnels that still have open connections.
	retired map[*pooledTunnel]struct{}
	// open holds the connections dialled and not closed yet, which Close
	// closes first.
	open   map[*tunnelConn]struct{}
	closed bool
	stats  DialerStats
	// closing tracks the goroutines that close retired tunnels.
	closing sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// DialerStats counts what a Dialer did.
type DialerStats struct {
	// Tunnels is the number of gRPC connections (konnectivity tunnels) to
	// the proxy-server the Dialer has created, the current one included.
	Tunnels int
	// Dials is the number of successful dials.
	Dials int
	// OpenConnections is the number of dialled connections not closed yet.
	OpenConnections int
}

// DialerOption configures a Dialer.
type DialerOption func(*dialerConfig)

// dialerConfig collects what DialerOptions set.
type dialerConfig struct {
	contextDialer func(context.Context, string) (net.Conn, error)
	grpcOptions   []grpc.DialOption
}

// WithContextDialer makes the Dialer open its connections to the
// proxy-server with dial instead of a plain TCP dial, for instance through a
// port-forward. addr is the proxy-server address given to NewDialer.
func WithContextDialer(dial func(ctx context.Context, addr string) (net.Conn, error)) DialerOption {
	return func(c *dialerConfig) { c.contextDialer = dial }
}

// WithGRPCDialOptions adds gRPC dial options to the connections to the
// proxy-server, after the Dialer's own (transport credentials and connect
// backoff), so they can override them.
func WithGRPCDialOptions(opts ...grpc.DialOption) DialerOption {
	return func(c *dialerConfig) { c.grpcOptions = append(c.grpcOptions, opts...) }
}

// NewDialer returns a Dialer for the proxy-server at address ("host:port"),
// authenticated by tlsConfig (see TLSConfigFromSecrets). It does not connect
// yet: the first DialContext does.
func NewDialer(address string, tlsConfig *tls.Config, opts ...DialerOption) (*Dialer, error) {
	if _, _, err := net.SplitHostPort(address); err != nil {
		return nil, fmt.Errorf("failed to create the cluster-proxy dialer: invalid proxy-server address %q: %w", address, err)
	}
	if tlsConfig == nil {
		return nil, errors.New("failed to create the cluster-proxy dialer: the TLS configuration is nil")
	}
	var cfg dialerConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	backoffConfig := backoff.DefaultConfig
	backoffConfig.MaxDelay = reconnectMaxDelay
	dialOptions := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig.Clone())),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoffConfig}),
		// Received data is copied once instead of twice (wire.Codec);
		// any konnectivity proxy-server understands it.
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(wire.Codec{})),
	}
	if cfg.contextDialer != nil {
		dialOptions = append(dialOptions, grpc.WithContextDialer(cfg.contextDialer))
	}
	dialOptions = append(dialOptions, cfg.grpcOptions...)
	return &Dialer{
		address:     address,
		dialOptions: dialOptions,
		retired:     map[*pooledTunnel]struct{}{},
		open:        map[*tunnelConn]struct{}{},
	}, nil
}

// pooledTunnel is one konnectivity reusable tunnel and the connections
// dialled on it; its fields other than tunnel are guarded by Dialer.mu.
type pooledTunnel struct {
	tunnel konnectivity.ReusableTunnel
	// users counts dials in flight and open connections on the tunnel.
	users   int
	retired bool
}

// DialContext dials address ("host:port") in a managed cluster through the
// proxy-server; network must be "tcp" (or "tcp4"/"tcp6", dialled as "tcp":
// the agent resolves the host). The proxy-server picks the agent that
// registered the host, typically the cluster name. ctx bounds the dial only,
// not the returned connection. When no agent registered the host, the error
// is a *NoAgentError. When the tunnel fails (the proxy-server cannot be
// reached, or went away), the dial is retried on a new tunnel, backing off
// for up to about 6 s in all, while ctx allows.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("failed to dial %s through the proxy-server: network %q is not supported, only tcp", address, network)
	}
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if err := waitToRetry(ctx, tunnelRetryDelays[attempt]); err != nil {
				return nil, fmt.Errorf("failed to dial %s through the proxy-server %s: %w", address, d.address, err)
			}
		}
		pt, err := d.acquire(ctx)
		if err != nil {
			return nil, err
		}
		conn, err := pt.tunnel.DialContext(ctx, "tcp", address)
		if err == nil {
			tc := &tunnelConn{Conn: conn, remote: tunnelAddr(address)}
			tc.release = func() { d.release(pt, tc) }
			d.mu.Lock()
			d.stats.Dials++
			d.stats.OpenConnections++
			d.open[tc] = struct{}{}
			d.mu.Unlock()
			return tc, nil
		}
		tunnelFailed := isTunnelFailure(err)
		if tunnelFailed {
			d.retire(ctx, pt, err)
		}
		d.release(pt, nil)
		if tunnelFailed && attempt+1 < len(tunnelRetryDelays) && canWait(ctx, tunnelRetryDelays[attempt+1]) {
			continue
		}
		return nil, dialError(address, d.address, err)
	}
}

// tunnelRetryDelays are the waits before each attempt of a dial whose
// tunnel failed (the proxy-server went away, or could not be reached): the
// first retry goes at once on a new tunnel, later ones back off. Together
// they span more than 5 s, so a retry also reaches a proxy-server whose
// address the resolver still cached for a replica that is gone (Go caches
// /etc/hosts for 5 s). A dial gives up earlier when its context would end
// during the wait.
var tunnelRetryDelays = []time.Duration{0, 0, 250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 2 * time.Second}

// canWait reports whether ctx is live and does not end within wait.
func canWait(ctx context.Context, wait time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline) > wait
}

// waitToRetry waits for wait, or returns ctx's error once it ends.
func waitToRetry(ctx context.Context, wait time.Duration) error {
	if wait == 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close closes every tunnel of the Dialer, which ends the connections
// dialled through it, and waits until the tunnels are released. Dials after
// Close fail with ErrDialerClosed. Calling Close again returns the first
// call's result once it is done.
func (d *Dialer) Close() error {
	d.closeOnce.Do(func() { d.closeErr = d.close() })
	return d.closeErr
}

// close is Close's single run. Open connections are closed first, each
// with konnectivity's CLOSE handshake, so their streams end as closed
// rather than cut (which konnectivity-client would log as a "stream read
// failure"); then the tunnels.
func (d *Dialer) close() error {
	d.mu.Lock()
	d.closed = true
	conns := make([]*tunnelConn, 0, len(d.open))
	for c := range d.open {
		conns = append(conns, c)
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Close()
		}()
	}
	wg.Wait()

	d.mu.Lock()
	var tunnels []*pooledTunnel
	if d.current != nil {
		tunnels = append(tunnels, d.current)
		d.current = nil
	}
	for pt := range d.retired {
		tunnels = append(tunnels, pt)
	}
	clear(d.retired)
	d.mu.Unlock()

	var errs []error
	for _, pt := range tunnels {
		if err := pt.tunnel.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	d.closing.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("failed to close the tunnels to proxy-server %s: %w", d.address, err)
	}
	return nil
}

// Stats returns what the Dialer did so far.
func (d *Dialer) Stats() DialerStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats
}

// acquire returns the current tunnel, creating it when there is none, and
// counts the caller as one of its users.
func (d *Dialer) acquire(ctx context.Context) (*pooledTunnel, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrDialerClosed
	}
	if d.current == nil {
		// CreateGRPCTunnel does not block: gRPC connects on the first
		// stream, so holding the lock here is cheap.
		tunnel, err := konnectivity.CreateGRPCTunnel(ctx, d.address, d.dialOptions...)
		if err != nil {
			return nil, fmt.Errorf("failed to create the tunnel to proxy-server %s: %w", d.address, err)
		}
		d.current = &pooledTunnel{tunnel: tunnel}
		d.stats.Tunnels++
	}
	d.current.users++
	return d.current, nil
}

// release ends one use of pt: a failed dial (conn nil), or the close of
// conn, dialled on it. A retired tunnel is closed with its last user.
func (d *Dialer) release(pt *pooledTunnel, conn *tunnelConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if conn != nil {
		d.stats.OpenConnections--
		delete(d.open, conn)
	}
	pt.users--
	if pt.retired && pt.users == 0 && !d.closed {
		delete(d.retired, pt)
		d.closeInBackground(pt)
	}
}

// retire stops new dials from using pt after it failed with cause; the
// next dial creates a new tunnel. pt is closed once its users are done.
func (d *Dialer) retire(ctx context.Context, pt *pooledTunnel, cause error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if pt.retired || d.closed {
		return
	}
	pt.retired = true
	if d.current == pt {
		d.current = nil
	}
	// The caller still counts as a user, so pt is closed by release.
	d.retired[pt] = struct{}{}
	klog.FromContext(ctx).V(2).Info("replacing the tunnel to the proxy-server", "proxyServer", d.address, "err", cause.Error())
}

// closeInBackground closes pt without blocking the caller; Close waits for
// it. d.mu must be held.
func (d *Dialer) closeInBackground(pt *pooledTunnel) {
	d.closing.Add(1)
	go func() {
		defer d.closing.Done()
		// The tunnel failed already; its close error says nothing new.
		_ = pt.tunnel.Close()
	}()
}

// tunnelConn is a connection dialled through a tunnel. It gives the
// konnectivity connection addresses (konnectivity returns nil ones, which
// some callers dereference) and releases its tunnel on Close.
type tunnelConn struct {
	net.Conn
	remote  net.Addr
	once    sync.Once
	release func()
}

// Close closes the tunnelled connection and releases its tunnel.
//
// konnectivity's Close reports "tunnel closed" when the connection's stream
// ended while it waited for the proxy-server's CLOSE_RSP, which also happens
// when the CLOSE_RSP arrived and the stream ended right after it, as it
// does: either way the connection is closed, so that is not an error.
func (c *tunnelConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	if err != nil && err.Error() == konnectivityTunnelClosed {
		return nil
	}
	return err
}

// maxWriteChunk bounds the bytes one Write hands to konnectivity, which
// sends each as a single gRPC message: the proxy-server refuses messages
// above gRPC's default 4 MiB, and the data would be lost while Write
// reported success.
const maxWriteChunk = 1 << 20

// Write writes p in chunks of at most maxWriteChunk bytes.
func (c *tunnelConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxWriteChunk)]
		n, err := c.Conn.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[len(chunk):]
	}
	return written, nil
}

// LocalAddr returns a placeholder: the local end is inside the tunnel.
func (c *tunnelConn) LocalAddr() net.Addr { return tunnelAddr("") }

// RemoteAddr returns the dialled address.
func (c *tunnelConn) RemoteAddr() net.Addr { return c.remote }

// tunnelAddr is the net.Addr of a tunnelled connection end.
type tunnelAddr string

// Network returns "tcp".
func (tunnelAddr) Network() string { return "tcp" }

// String returns the address.
func (a tunnelAddr) String() string { return string(a) }
