// Package agent is cluster-proxy's konnectivity proxy-agent: it dials out
// to the proxy-servers, keeps one AgentService stream to each distinct
// server (as many as the servers' serverCount header says), and serves the
// dials they send by connecting to backends in its own network. It speaks
// konnectivity's wire protocol (apiserver-network-proxy's generated proto
// types are the contract), so it works with ANP's proxy-server as with
// ours.
//
// Each connection has its own writer, so a backend that stops reading
// holds up only its own connection's queue. With our proxy-server the two
// agree on per-connection credit (package credit): that queue is bounded
// by the credit, and the stream never waits for it. With
// apiserver-network-proxy's server the queue holds queueSize packets, and
// the stream waits once it is full, as ANP's agent does.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"k8s.io/klog/v2"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
	agentproto "sigs.k8s.io/apiserver-network-proxy/proto/agent"
	"sigs.k8s.io/apiserver-network-proxy/proto/header"

	"open-cluster-management.io/cluster-proxy/internal/tunnel/credit"
	"open-cluster-management.io/cluster-proxy/pkg/client/wire"
)

const (
	// readBufferSize is how much of a backend's output one DATA packet
	// carries at most.
	readBufferSize = 128 << 10
	// queueSize is how many DATA packets wait for a slow backend before
	// the stream they arrive on waits too (apiserver-network-proxy's
	// agent default), unless the server agreed on credit.
	queueSize = 150
	// connectTimeout bounds one attempt to open a stream to a server.
	connectTimeout = 30 * time.Second
	// finishTimeout bounds the flush of a connection the client closed.
	finishTimeout = 10 * time.Second
)

// Options configure an Agent.
type Options struct {
	// AgentID and Identifiers are sent to every server (the agentID and
	// agentIdentifiers headers).
	AgentID, Identifiers string
	// ServerAddress is where the proxy-servers listen for agents (one
	// address in front of all of them, e.g. a Service).
	ServerAddress string
	// Credentials secure the connections to the servers.
	Credentials credentials.TransportCredentials
	// SyncInterval is the first wait between connection attempts while
	// fewer servers than the servers' count are connected; it grows by
	// half after each failure up to SyncIntervalCap. With SyncForever the
	// agent keeps looking for servers after it has them all.
	SyncInterval, SyncIntervalCap time.Duration
	SyncForever                   bool
	// ProbeInterval is how often each server connection's state is
	// checked.
	ProbeInterval time.Duration
	// KeepaliveTime is the gRPC keepalive ping interval to the servers.
	KeepaliveTime time.Duration
	// DialTimeout bounds a backend dial.
	DialTimeout time.Duration
	// Dial connects to backends; nil dials with net.Dialer. Agent
	// simulators set it to serve many clusters' backends in one process.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Certificate, optional, identifies the client certificate the agent
	// presents now (its serial, say). When it changes (a renewal, a CA
	// rotation), each server connection made with an older one is
	// replaced: the agent connects again with the new certificate, sends
	// DRAIN on the old connection (the server sends no new dials there)
	// and closes it once its connections are closed, or after
	// RetireTimeout. nil keeps connections until they fail.
	Certificate func() string
	// RetireTimeout bounds how long a replaced connection is kept for the
	// connections it still carries.
	RetireTimeout time.Duration
}

// Validate reports every invalid option.
func (o *Options) Validate() error {
	var errs []error
	if o.AgentID == "" {
		errs = append(errs, errors.New("the agent ID is empty"))
	}
	if _, _, err := net.SplitHostPort(o.ServerAddress); err != nil {
		errs = append(errs, fmt.Errorf("proxy-server address %q: %w", o.ServerAddress, err))
	}
	if o.Credentials == nil {
		errs = append(errs, errors.New("no credentials for the proxy-servers"))
	}
	if o.Certificate != nil && o.RetireTimeout <= 0 {
		errs = append(errs, fmt.Errorf("the retire timeout %s must be positive", o.RetireTimeout))
	}
	for name, d := range map[string]time.Duration{"--sync-interval": o.SyncInterval, "--sync-interval-cap": o.SyncIntervalCap,
		"--probe-interval": o.ProbeInterval, "--keepalive-time": o.KeepaliveTime, "the backend dial timeout": o.DialTimeout} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s %s must be positive", name, d))
		}
	}
	return errors.Join(errs...)
}

// Agent holds the streams to the proxy-servers and the connections they
// carry.
type Agent struct {
	opts Options

	mu          sync.Mutex
	servers     map[string]*serverConn // server ID -> stream
	serverCount int                    // the servers' last serverCount header
	draining    bool

	nextConnID atomic.Int64
	open       atomic.Int64 // open backend connections
	dials      atomic.Int64 // backend dials in flight
	// connectFailures counts failed attempts to connect to a proxy-server.
	connectFailures atomic.Int64
}

// New returns an Agent for valid options.
func New(o Options) (*Agent, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("invalid proxy-agent options: %w", err)
	}
	return &Agent{opts: o, servers: map[string]*serverConn{}}, nil
}

// Servers returns how many servers the agent holds a stream to.
func (a *Agent) Servers() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.servers)
}

// ServerCount returns how many proxy-servers there are, as the last
// server the agent connected to said (its serverCount header); 0 before
// any answered. The agent keeps connecting while it holds fewer.
func (a *Agent) ServerCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.serverCount
}

// Open returns how many backend connections are open.
func (a *Agent) Open() int { return int(a.open.Load()) }

// ConnectFailures returns how many attempts to connect to a proxy-server
// failed (a refused or broken connection, a failed handshake, a stream the
// server refused) since the agent started.
func (a *Agent) ConnectFailures() int { return int(a.connectFailures.Load()) }

// Busy reports whether a backend connection is open or a dial is in flight.
func (a *Agent) Busy() bool { return a.open.Load() > 0 || a.dials.Load() > 0 }

// Run connects to the servers and keeps connecting while fewer than their
// count are held, until ctx ends; then it closes every stream.
func (a *Agent) Run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	wait := a.opts.SyncInterval
	for {
		a.retireStale(ctx)
		if a.needServers() {
			if err := a.connectOnce(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				a.connectFailures.Add(1)
				logger.V(2).Info("Failed to connect to a proxy-server", "address", a.opts.ServerAddress, "err", err.Error())
				// Back off by half, with jitter, up to the cap.
				wait = min(time.Duration(float64(wait)*(1.4+0.2*rand.Float64())), a.opts.SyncIntervalCap)
			} else {
				wait = a.opts.SyncInterval
			}
		} else {
			wait = a.opts.SyncInterval
		}
		select {
		case <-ctx.Done():
		case <-time.After(jittered(wait)):
			continue
		}
		break
	}
	a.mu.Lock()
	servers := make([]*serverConn, 0, len(a.servers))
	for _, sc := range a.servers {
		servers = append(servers, sc)
	}
	a.mu.Unlock()
	for _, sc := range servers {
		sc.close()
	}
}

// jittered spreads a wait over ±20%, at the cap too: agents whose waits
// were equal would otherwise keep their turns in step, and behind a
// round-robin balancer each would only ever reach every other server.
func jittered(wait time.Duration) time.Duration {
	return time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64()))
}

// needServers reports whether another server connection is wanted.
func (a *Agent) needServers() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.opts.SyncForever || a.serverCount == 0 || len(a.servers) < a.serverCount
}

// Drain tells every server to send no new dials here (konnectivity's
// DRAIN), now and on every server connected later.
func (a *Agent) Drain(ctx context.Context) {
	a.mu.Lock()
	a.draining = true
	servers := make([]*serverConn, 0, len(a.servers))
	for _, sc := range a.servers {
		servers = append(servers, sc)
	}
	a.mu.Unlock()
	for _, sc := range servers {
		if err := sc.send(drainPacket()); err != nil {
			klog.FromContext(ctx).V(2).Info("Failed to send DRAIN", "serverID", sc.id, "err", err.Error())
		}
	}
}

// retireStale replaces the server connections made with another client
// certificate than the current one: they leave the agent's set, so it
// connects again, and are drained and closed in the background.
func (a *Agent) retireStale(ctx context.Context) {
	if a.opts.Certificate == nil {
		return
	}
	current := a.opts.Certificate()
	var stale []*serverConn
	a.mu.Lock()
	for id, sc := range a.servers {
		if sc.cert != current {
			stale = append(stale, sc)
			delete(a.servers, id)
		}
	}
	a.mu.Unlock()
	for _, sc := range stale {
		klog.FromContext(ctx).Info("The client certificate changed: replacing the connection to a proxy-server",
			"serverID", sc.id, "old", sc.cert, "new", current)
		go sc.retire(ctx, a.opts.RetireTimeout)
	}
}

// connectOnce opens one stream to the server address and keeps it when it
// reaches a server not yet held.
func (a *Agent) connectOnce(ctx context.Context) error {
	var cert string
	if a.opts.Certificate != nil {
		// Read before the handshake: a change during it is seen as a change
		// by the next retireStale, at worst one replacement too many.
		cert = a.opts.Certificate()
	}
	conn, err := grpc.NewClient(a.opts.ServerAddress,
		grpc.WithTransportCredentials(a.opts.Credentials),
		// DATA from the proxy-server is copied once, into a pooled buffer
		// the endpoint's writer gives back once it wrote it to the backend
		// (wire.Codec, wire.Release); what the agent sends is copied once
		// too: its read buffers are reused.
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(wire.Codec{Pool: true})),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: a.opts.KeepaliveTime, PermitWithoutStream: true}))
	if err != nil {
		return err
	}
	streamCtx, cancel := context.WithCancel(ctx)
	streamCtx = metadata.AppendToOutgoingContext(streamCtx, header.AgentID, a.opts.AgentID, header.AgentIdentifiers, a.opts.Identifiers,
		credit.Offer, credit.Version)
	fail := func(err error) error {
		cancel()
		_ = conn.Close()
		return err
	}
	stream, err := agentproto.NewAgentServiceClient(conn).Connect(streamCtx)
	if err != nil {
		return fail(err)
	}
	md, err := headerWithin(stream, connectTimeout)
	if err != nil {
		return fail(err)
	}
	ids, counts := md.Get(header.ServerID), md.Get(header.ServerCount)
	if len(ids) != 1 || ids[0] == "" {
		// A refused agent gets the refusal as the stream's status.
		if _, recvErr := stream.Recv(); recvErr != nil {
			return fail(recvErr)
		}
		return fail(fmt.Errorf("the proxy-server sent %d server IDs", len(ids)))
	}
	count := 1
	if len(counts) == 1 {
		if n, err := strconv.Atoi(counts[0]); err == nil && n > 0 {
			count = n
		}
	}
	sc := &serverConn{agent: a, id: ids[0], cert: cert, conn: conn, stream: stream, cancel: cancel, credit: credit.Offered(md),
		conns: map[int64]*endpoint{}, dials: map[int64]context.CancelFunc{}}
	a.mu.Lock()
	a.serverCount = count
	if _, dup := a.servers[sc.id]; dup {
		a.mu.Unlock()
		return fail(fmt.Errorf("already connected to proxy-server %s", sc.id))
	}
	a.servers[sc.id] = sc
	draining := a.draining
	a.mu.Unlock()
	logger := klog.FromContext(ctx).WithValues("serverID", sc.id)
	logger.V(2).Info("Connected to a proxy-server", "serverCount", count)
	if draining {
		_ = sc.send(drainPacket())
	}
	go sc.serve(klog.NewContext(ctx, logger))
	go sc.probe(streamCtx, a.opts.ProbeInterval)
	return nil
}

// headerWithin waits at most timeout for the stream's response header.
func headerWithin(stream agentproto.AgentService_ConnectClient, timeout time.Duration) (metadata.MD, error) {
	type result struct {
		md  metadata.MD
		err error
	}
	done := make(chan result, 1)
	go func() {
		md, err := stream.Header()
		done <- result{md, err}
	}()
	select {
	case r := <-done:
		return r.md, r.err
	case <-time.After(timeout):
		return nil, fmt.Errorf("no answer from the proxy-server within %s", timeout)
	}
}

// serverConn is the stream to one proxy-server and the connections it
// carries.
type serverConn struct {
	agent *Agent
	id    string
	// cert is the Options.Certificate the connection was made with.
	cert   string
	conn   *grpc.ClientConn
	stream agentproto.AgentService_ConnectClient
	cancel context.CancelFunc
	sendMu sync.Mutex

	// credit is set when the server agreed on per-connection credit
	// (package credit).
	credit bool

	mu     sync.Mutex
	conns  map[int64]*endpoint
	dials  map[int64]context.CancelFunc
	closed bool
}

func (sc *serverConn) send(pkt *client.Packet) error {
	sc.sendMu.Lock()
	defer sc.sendMu.Unlock()
	return sc.stream.Send(pkt)
}

// close ends the stream, closes its connections and forgets the server.
func (sc *serverConn) close() {
	sc.mu.Lock()
	if sc.closed {
		sc.mu.Unlock()
		return
	}
	sc.closed = true
	conns := sc.conns
	sc.conns = map[int64]*endpoint{}
	for _, cancel := range sc.dials {
		cancel()
	}
	sc.mu.Unlock()
	for _, ep := range conns {
		ep.close()
	}
	sc.cancel()
	_ = sc.conn.Close()
	a := sc.agent
	a.mu.Lock()
	if a.servers[sc.id] == sc {
		delete(a.servers, sc.id)
	}
	a.mu.Unlock()
}

// retire drains the connection (the server sends no new dials on it) and
// closes it once it carries no connection and no dial, or after timeout.
func (sc *serverConn) retire(ctx context.Context, timeout time.Duration) {
	logger := klog.FromContext(ctx).WithValues("serverID", sc.id)
	if err := sc.send(drainPacket()); err != nil {
		logger.V(2).Info("Failed to send DRAIN on a replaced connection", "err", err.Error())
	}
	deadline := time.After(timeout)
	ticker := time.NewTicker(retirePoll)
	defer ticker.Stop()
	for {
		sc.mu.Lock()
		idle, closed := len(sc.conns) == 0 && len(sc.dials) == 0, sc.closed
		open := len(sc.conns)
		sc.mu.Unlock()
		if idle || closed {
			break
		}
		select {
		case <-ctx.Done():
		case <-deadline:
			logger.Info("Closing a replaced connection to a proxy-server that still carries connections", "connections", open, "after", timeout)
		case <-ticker.C:
			continue
		}
		break
	}
	sc.close()
	logger.V(2).Info("Closed a replaced connection to a proxy-server")
}

// probe closes the stream when its connection has failed.
func (sc *serverConn) probe(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if s := sc.conn.GetState(); s == connectivity.TransientFailure || s == connectivity.Shutdown {
			klog.FromContext(ctx).V(2).Info("The connection to a proxy-server failed", "serverID", sc.id, "state", s.String())
			sc.close()
			return
		}
	}
}

// serve handles the server's packets until the stream ends.
func (sc *serverConn) serve(ctx context.Context) {
	logger := klog.FromContext(ctx)
	defer sc.close()
	for {
		pkt, err := sc.stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				logger.V(2).Info("The stream to a proxy-server ended", "err", err.Error())
			}
			return
		}
		switch pkt.Type {
		case client.PacketType_DIAL_REQ:
			if req := pkt.GetDialRequest(); req != nil {
				sc.dial(ctx, req)
			}
		case client.PacketType_DATA:
			data := pkt.GetData()
			if data == nil {
				continue
			}
			sc.mu.Lock()
			ep := sc.conns[data.ConnectID]
			sc.mu.Unlock()
			if ep == nil {
				_ = sc.send(closeResponse(data.ConnectID, "unrecognized connectID"))
				continue
			}
			if !ep.enqueue(data.Data) {
				// More than its credit: the server broke the protocol.
				logger.Info("A proxy-server sent more than a connection's credit; closing it", "connectionID", data.ConnectID)
				if sc.remove(data.ConnectID) != nil {
					ep.close()
					_ = sc.send(closeResponse(data.ConnectID, "the proxy-server sent more than the connection's credit"))
				}
			}
		case credit.PacketTypeWindow:
			if id, n, ok := credit.ParseWindow(pkt); ok && sc.credit {
				sc.mu.Lock()
				ep := sc.conns[id]
				sc.mu.Unlock()
				if ep != nil {
					ep.sendCredit.Grant(n)
				}
			}
		case client.PacketType_CLOSE_REQ:
			req := pkt.GetCloseRequest()
			if req == nil {
				continue
			}
			if ep := sc.remove(req.ConnectID); ep != nil {
				// What the client sent before its CLOSE_REQ is written first.
				ep.finish()
				_ = sc.send(closeResponse(req.ConnectID, ""))
			} else {
				_ = sc.send(closeResponse(req.ConnectID, "Unknown connectID"))
			}
		case client.PacketType_DIAL_CLS:
			if cls := pkt.GetCloseDial(); cls != nil {
				sc.mu.Lock()
				if cancel := sc.dials[cls.Random]; cancel != nil {
					cancel()
				}
				sc.mu.Unlock()
			}
		default:
			logger.V(4).Info("Ignored a packet from a proxy-server", "type", pkt.Type.String())
		}
	}
}

// dial connects to a backend in the background and answers the server.
func (sc *serverConn) dial(ctx context.Context, req *client.DialRequest) {
	logger := klog.FromContext(ctx).WithValues("dialID", req.Random, "address", req.Address)
	dialCtx, cancel := context.WithTimeout(ctx, sc.agent.opts.DialTimeout)
	sc.mu.Lock()
	if sc.closed {
		sc.mu.Unlock()
		cancel()
		return
	}
	if _, pending := sc.dials[req.Random]; pending {
		sc.mu.Unlock()
		cancel()
		_ = sc.send(dialResponse(req.Random, 0, "a dial with this ID is in use at the agent"))
		return
	}
	sc.dials[req.Random] = cancel
	sc.mu.Unlock()
	sc.agent.dials.Add(1)
	go func() {
		defer cancel()
		network := req.Protocol
		if network == "" {
			network = "tcp"
		}
		dial := sc.agent.opts.Dial
		if dial == nil {
			var d net.Dialer
			dial = d.DialContext
		}
		conn, err := dial(dialCtx, network, req.Address)
		sc.mu.Lock()
		closed := sc.closed
		var ep *endpoint
		if err == nil && !closed {
			ep = newEndpoint(sc, sc.agent.nextConnID.Add(1), conn)
			sc.conns[ep.id] = ep
		}
		sc.mu.Unlock()
		sc.dialed(req.Random)
		if err != nil {
			logger.V(2).Info("Failed to dial a backend", "err", err.Error())
			_ = sc.send(dialResponse(req.Random, 0, err.Error()))
			return
		}
		if closed {
			_ = conn.Close()
			return
		}
		// Registered before the answer, so DATA that follows it finds the
		// connection; read only after it, so no DATA precedes it.
		if err := sc.send(dialResponse(req.Random, ep.id, "")); err != nil {
			if sc.remove(ep.id) != nil {
				ep.close()
			}
			return
		}
		logger.V(3).Info("Dialled a backend", "connectionID", ep.id)
		ep.run()
	}()
}

// dialed forgets the dial random, which ended. A connection it opened is
// counted as open before the dial stops counting, so a drain never sees
// the agent idle in between.
func (sc *serverConn) dialed(random int64) {
	sc.mu.Lock()
	delete(sc.dials, random)
	sc.mu.Unlock()
	sc.agent.dials.Add(-1)
}

// remove forgets connection id and returns it, or nil when it is gone.
func (sc *serverConn) remove(id int64) *endpoint {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	ep := sc.conns[id]
	delete(sc.conns, id)
	return ep
}

// retirePoll is how often a replaced connection is checked for idleness.
const retirePoll = time.Second

func drainPacket() *client.Packet {
	return &client.Packet{Type: client.PacketType_DRAIN, Payload: &client.Packet_Drain{Drain: &client.Drain{}}}
}

func dialResponse(random, connID int64, errMsg string) *client.Packet {
	return &client.Packet{Type: client.PacketType_DIAL_RSP, Payload: &client.Packet_DialResponse{
		DialResponse: &client.DialResponse{Random: random, ConnectID: connID, Error: errMsg}}}
}

func closeResponse(connID int64, errMsg string) *client.Packet {
	return &client.Packet{Type: client.PacketType_CLOSE_RSP, Payload: &client.Packet_CloseResponse{
		CloseResponse: &client.CloseResponse{ConnectID: connID, Error: errMsg}}}
}

func dataPacket(connID int64, data []byte) *client.Packet {
	return &client.Packet{Type: client.PacketType_DATA, Payload: &client.Packet_Data{
		Data: &client.Data{ConnectID: connID, Data: data}}}
}
