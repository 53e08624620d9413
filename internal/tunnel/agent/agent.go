// Package agent is cluster-proxy's konnectivity proxy-agent: it dials out
// to the proxy-servers, keeps one AgentService stream to each distinct
// server (as many as the servers' serverCount header says), and serves the
// dials they send by connecting to backends in its own network. It speaks
// konnectivity's wire protocol (apiserver-network-proxy's generated proto
// types are the contract), so it works with ANP's proxy-server as with
// ours.
//
// Each connection has its own writer: a backend that stops reading holds up
// only its own connection's queue until that queue (queueSize packets) is
// full; per-connection flow control across the stream is issue 15's work.
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

	"open-cluster-management.io/cluster-proxy/internal/tunnel/datastream"
)

const (
	// readBufferSize is how much of a backend's output one DATA packet
	// carries at most.
	readBufferSize = 32 << 10
	// queueSize is how many DATA packets wait for a slow backend before
	// the stream they arrive on waits too (apiserver-network-proxy's
	// agent default).
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

// Open returns how many backend connections are open.
func (a *Agent) Open() int { return int(a.open.Load()) }

// Busy reports whether a backend connection is open or a dial is in flight.
func (a *Agent) Busy() bool { return a.open.Load() > 0 || a.dials.Load() > 0 }

// Run connects to the servers and keeps connecting while fewer than their
// count are held, until ctx ends; then it closes every stream.
func (a *Agent) Run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	wait := a.opts.SyncInterval
	for {
		if a.needServers() {
			if err := a.connectOnce(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
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
		case <-time.After(wait):
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

// connectOnce opens one stream to the server address and keeps it when it
// reaches a server not yet held.
func (a *Agent) connectOnce(ctx context.Context) error {
	conn, err := grpc.NewClient(a.opts.ServerAddress,
		grpc.WithTransportCredentials(a.opts.Credentials),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: a.opts.KeepaliveTime, PermitWithoutStream: true}))
	if err != nil {
		return err
	}
	streamCtx, cancel := context.WithCancel(ctx)
	streamCtx = metadata.AppendToOutgoingContext(streamCtx, header.AgentID, a.opts.AgentID, header.AgentIdentifiers, a.opts.Identifiers,
		datastream.Offer, datastream.Version)
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
	sc := &serverConn{agent: a, id: ids[0], conn: conn, stream: stream, cancel: cancel, streams: datastream.Offered(md),
		conns: map[int64]*endpoint{}, dials: map[int64]context.CancelFunc{}, links: map[int64]*link{}}
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
	agent  *Agent
	id     string
	conn   *grpc.ClientConn
	stream agentproto.AgentService_ConnectClient
	cancel context.CancelFunc
	sendMu sync.Mutex

	// streams is set when the server accepted data streams (package
	// datastream): dials are answered by them.
	streams bool

	mu     sync.Mutex
	conns  map[int64]*endpoint
	dials  map[int64]context.CancelFunc
	links  map[int64]*link // dial ID -> link
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
	links := make([]*link, 0, len(sc.links))
	for _, l := range sc.links {
		links = append(links, l)
	}
	sc.mu.Unlock()
	for _, ep := range conns {
		ep.close()
	}
	for _, l := range links {
		l.close()
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
			ep.enqueue(data.Data)
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
				l := sc.links[cls.Random]
				sc.mu.Unlock()
				if l != nil {
					// The server gave up on handing the link's last bytes.
					l.close()
				}
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
	_, pending := sc.dials[req.Random]
	_, linked := sc.links[req.Random]
	if pending || linked {
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
		var d net.Dialer
		conn, err := d.DialContext(dialCtx, network, req.Address)
		if err == nil && sc.streams {
			sc.answerWithLink(ctx, req.Random, conn)
			return
		}
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

// answerWithLink answers dial random, whose backend connection conn is
// open, with a data stream of its own and carries the connection on it.
func (sc *serverConn) answerWithLink(ctx context.Context, random int64, conn net.Conn) {
	logger := klog.FromContext(ctx).WithValues("dialID", random)
	l, err := sc.openLink(ctx, random, conn)
	sc.dialed(random)
	if err != nil {
		_ = conn.Close()
		logger.V(2).Info("Failed to open the data stream of a dial", "err", err.Error())
		_ = sc.send(dialResponse(random, 0, fmt.Sprintf("the agent failed to open the connection's stream: %v", err)))
		return
	}
	logger.V(3).Info("Dialled a backend on a data stream")
	l.run(ctx)
}

// remove forgets connection id and returns it, or nil when it is gone.
func (sc *serverConn) remove(id int64) *endpoint {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	ep := sc.conns[id]
	delete(sc.conns, id)
	return ep
}

// endpoint is one backend connection.
type endpoint struct {
	sc                    *serverConn
	id                    int64
	conn                  net.Conn
	queue                 chan []byte
	done                  chan struct{}
	closeOnce, finishOnce sync.Once
}

func newEndpoint(sc *serverConn, id int64, conn net.Conn) *endpoint {
	sc.agent.open.Add(1)
	return &endpoint{sc: sc, id: id, conn: conn, queue: make(chan []byte, queueSize), done: make(chan struct{})}
}

// enqueue hands data to the connection's writer; it waits while the queue
// is full, and drops data for a closed connection.
func (ep *endpoint) enqueue(data []byte) {
	select {
	case ep.queue <- data:
	case <-ep.done:
	}
}

// finish ends the queue: the writer writes what is queued, then closes the
// connection. Only the stream's serve loop enqueues, and it forgets the
// connection before it calls finish, so nothing is enqueued afterwards.
func (ep *endpoint) finish() {
	ep.finishOnce.Do(func() {
		_ = ep.conn.SetWriteDeadline(time.Now().Add(finishTimeout))
		close(ep.queue)
	})
}

// close closes the backend connection (once).
func (ep *endpoint) close() {
	ep.closeOnce.Do(func() {
		close(ep.done)
		_ = ep.conn.Close()
		ep.sc.agent.open.Add(-1)
	})
}

// run writes queued data to the backend and sends what it reads to the
// server, until either side ends; a backend that ends first is reported
// with CLOSE_RSP.
func (ep *endpoint) run() {
	go func() {
		for {
			select {
			case data, ok := <-ep.queue:
				if !ok {
					ep.close()
					return
				}
				if _, err := ep.conn.Write(data); err != nil {
					ep.close()
					return
				}
			case <-ep.done:
				return
			}
		}
	}()
	r := newChunkReader(ep.conn)
	defer r.release()
	for {
		chunk, err := r.read()
		if len(chunk) > 0 {
			// Send marshals the packet before it returns: the chunk's
			// buffer is free again.
			if sendErr := ep.sc.send(dataPacket(ep.id, chunk)); sendErr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	// Whoever removes the connection first tells the server.
	if ep.sc.remove(ep.id) != nil {
		_ = ep.sc.send(closeResponse(ep.id, ""))
	}
	ep.close()
}

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
