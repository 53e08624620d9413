// Package server is cluster-proxy's konnectivity proxy-server core: the
// gRPC ProxyService its frontends (the konnectivity client, pkg/client)
// dial through, and the AgentService its proxy-agents hold open, speaking
// konnectivity's wire protocol (apiserver-network-proxy's generated proto
// types are the contract).
//
// It differs from apiserver-network-proxy's server where that server is
// unsafe or loose:
//   - an agent is admitted only when Options.Authorize accepts its
//     identifiers for the peer certificate it presented (cluster-proxy binds
//     an agent to its own cluster's identifiers), and the refusal names why;
//   - a DIAL_RSP, DIAL_CLS, DATA or CLOSE_RSP is delivered only to the
//     frontend whose dial went to that very agent stream: an agent cannot
//     answer another agent's dial or write into its connections;
//   - one frontend stream may carry several dials and connections;
//   - when a frontend stream ends, its pending dials and connections are
//     closed on their agents; when an agent stream ends, its frontends get a
//     DIAL_RSP or CLOSE_RSP saying so at once.
package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
	"sigs.k8s.io/apiserver-network-proxy/proto/agent"
	"sigs.k8s.io/apiserver-network-proxy/proto/header"

	"open-cluster-management.io/cluster-proxy/internal/tunnel/credit"
	"open-cluster-management.io/cluster-proxy/pkg/client/wire"
)

// Strategy is a way to pick the agent for a dial, as
// --proxy-strategies names it.
type Strategy string

// The strategies of apiserver-network-proxy's proxy-server.
const (
	// StrategyDestHost picks an agent that registered the dialled host
	// (identifiers host=, ipv4=, ipv6=).
	StrategyDestHost Strategy = "destHost"
	// StrategyDefault picks any agent.
	StrategyDefault Strategy = "default"
	// StrategyDefaultRoute picks an agent that registered
	// default-route=true.
	StrategyDefaultRoute Strategy = "defaultRoute"
)

// ParseStrategies parses a --proxy-strategies value: a comma-separated
// list, tried in order for every dial.
func ParseStrategies(s string) ([]Strategy, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("--proxy-strategies is empty: name at least one of destHost, default, defaultRoute")
	}
	var out []Strategy
	for _, name := range strings.Split(s, ",") {
		st := Strategy(strings.TrimSpace(name))
		switch st {
		case StrategyDestHost, StrategyDefault, StrategyDefaultRoute:
			out = append(out, st)
		default:
			return nil, fmt.Errorf("--proxy-strategies: unknown strategy %q (known: destHost, default, defaultRoute)", name)
		}
	}
	return out, nil
}

// ErrNoAgent is the DIAL_RSP error when no agent serves a dial:
// apiserver-network-proxy's text, which konnectivity clients (and
// pkg/client's NoAgentError) recognise.
const ErrNoAgent = "No agent available"

// Authorizer decides whether an agent may register identifiers (the
// URL-query form of --agent-identifiers) with the client certificate it
// presented (nil when it presented none). Its error is returned to the
// agent and logged.
type Authorizer func(cert *x509.Certificate, agentID, identifiers string) error

// Options configure a Server.
type Options struct {
	// ServerID and ServerCount are sent to every agent (the serverID and
	// serverCount headers), so it keeps one connection per server.
	ServerID    string
	ServerCount int
	// Strategies pick the agent of a dial, in order.
	Strategies []Strategy
	// DialTimeout bounds the wait for an agent's DIAL_RSP; 0 waits as long
	// as the frontend does (--backend-dial-timeout).
	DialTimeout time.Duration
	// Authorize admits agents; nil admits every agent.
	Authorize Authorizer
	// Refused, when set, is called for every refused agent (metrics).
	Refused func(agentID string, err error)
	// AgentsChanged, when set, is called after an agent connected or left
	// (outside the server's lock), so a health report can be rewritten.
	// It must not block.
	AgentsChanged func()
}

// Validate reports every invalid option.
func (o *Options) Validate() error {
	var errs []error
	if o.ServerID == "" {
		errs = append(errs, errors.New("the server ID is empty"))
	}
	if o.ServerCount < 1 {
		errs = append(errs, fmt.Errorf("--server-count %d must be at least 1", o.ServerCount))
	}
	if len(o.Strategies) == 0 {
		errs = append(errs, errors.New("no proxy strategy"))
	}
	if o.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("--backend-dial-timeout %s must not be negative", o.DialTimeout))
	}
	return errors.Join(errs...)
}

// Server serves ProxyService to frontends and AgentService to agents.
type Server struct {
	client.UnimplementedProxyServiceServer
	agent.UnimplementedAgentServiceServer

	opts Options

	mu       sync.Mutex
	backends map[*backend]struct{}
	byHost   map[string][]*backend // host, ipv4 or ipv6 identifier -> agents
	pending  map[int64]*pendingDial
	conns    map[connKey]*frontend
	// routes are the connections of agents that agreed on credit.
	routes map[connKey]*route
	// clusters are the clusters with a connected agent.
	clusters map[string]*clusterStats

	metrics *metrics
}

// backend is one agent stream.
type backend struct {
	id          string
	identifiers url.Values
	// cert is the client certificate the agent presented, nil when none.
	cert *x509.Certificate
	// stats are its cluster's; set before the backend is registered.
	stats  *clusterStats
	stream agent.AgentService_ConnectServer
	// credit is set when the agent and this server agreed on
	// per-connection credit (package credit).
	credit   bool
	sendMu   sync.Mutex
	draining atomic.Bool
}

// send sends pkt to the agent. Every DATA a server sends it received
// whole from a peer (wire.Codec decoded it into a buffer of its own) and
// does not touch again: gRPC may have it without a copy.
func (b *backend) send(pkt *client.Packet) error {
	b.sendMu.Lock()
	defer b.sendMu.Unlock()
	return b.stream.SendMsg(wire.Owned{Packet: pkt})
}

// forward sends pkt, a packet received from a frontend, to the agent;
// nothing reads its DATA afterwards, so gRPC recycles the bytes once it
// wrote them (wire.Release).
func (b *backend) forward(pkt *client.Packet) error {
	b.sendMu.Lock()
	defer b.sendMu.Unlock()
	return b.stream.SendMsg(wire.Owned{Packet: pkt, Recycle: true})
}

// frontend is one ProxyService stream.
type frontend struct {
	stream client.ProxyService_ProxyServer
	sendMu sync.Mutex
	// conns are the frontend's connections: connect ID -> agent stream.
	// Guarded by Server.mu.
	conns map[int64]*backend
	// dials are the frontend's pending dial IDs. Guarded by Server.mu.
	dials map[int64]struct{}
}

// send sends pkt to the frontend; its DATA is the server's to give, as
// for backend.send.
func (f *frontend) send(pkt *client.Packet) error {
	f.sendMu.Lock()
	defer f.sendMu.Unlock()
	return f.stream.SendMsg(wire.Owned{Packet: pkt})
}

// forward sends pkt, a packet received from an agent, to the frontend, as
// backend.forward does.
func (f *frontend) forward(pkt *client.Packet) error {
	f.sendMu.Lock()
	defer f.sendMu.Unlock()
	return f.stream.SendMsg(wire.Owned{Packet: pkt, Recycle: true})
}

// pendingDial is a DIAL_REQ sent to an agent and not yet answered.
type pendingDial struct {
	frontend *frontend
	backend  *backend
	address  string
	start    time.Time
	timer    *time.Timer
}

// connKey names an established connection: agents number their own.
type connKey struct {
	backend *backend
	connID  int64
}

// New returns a Server for valid options.
func New(o Options) (*Server, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("invalid proxy-server options: %w", err)
	}
	return &Server{
		opts:     o,
		backends: map[*backend]struct{}{},
		byHost:   map[string][]*backend{},
		pending:  map[int64]*pendingDial{},
		conns:    map[connKey]*frontend{},
		routes:   map[connKey]*route{},
		clusters: map[string]*clusterStats{},
		metrics:  newMetrics(),
	}, nil
}

// Agents returns how many agent streams are connected.
func (s *Server) Agents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.backends)
}

// Ready reports whether at least one agent is connected, as
// apiserver-network-proxy's /readyz does.
func (s *Server) Ready() (bool, string) {
	if s.Agents() == 0 {
		return false, "no agent is connected"
	}
	return true, ""
}

// Connect serves one agent stream.
func (s *Server) Connect(stream agent.AgentService_ConnectServer) error {
	ctx := stream.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	agentID := first(md.Get(header.AgentID))
	logger := klog.FromContext(ctx).WithValues("agentID", agentID)
	if agentID == "" {
		return status.Error(codes.InvalidArgument, "the agent sent no agentID header")
	}
	rawIDs := first(md.Get(header.AgentIdentifiers))
	ids, err := url.ParseQuery(rawIDs)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "the agent's identifiers %q are not a URL query: %v", rawIDs, err)
	}
	cert := peerCertificate(ctx)
	cluster := clusterOf(cert)
	if cluster != "" {
		logger = logger.WithValues("cluster", cluster)
	}
	if s.opts.Authorize != nil {
		if err := s.opts.Authorize(cert, agentID, rawIDs); err != nil {
			logger.Info("Refused an agent", "identifiers", rawIDs, "reason", err.Error())
			s.metrics.refusals.WithLabelValues(cluster).Inc()
			if s.opts.Refused != nil {
				s.opts.Refused(agentID, err)
			}
			return status.Errorf(codes.PermissionDenied, "agent %s refused: %v", agentID, err)
		}
	}
	answer := metadata.Pairs(header.ServerID, s.opts.ServerID, header.ServerCount, strconv.Itoa(s.opts.ServerCount))
	withCredit := credit.Offered(md)
	if withCredit {
		answer.Set(credit.Offer, credit.Version)
	}
	if err := stream.SendHeader(answer); err != nil {
		return err
	}
	b := &backend{id: agentID, identifiers: ids, cert: cert, stream: stream, credit: withCredit}
	s.addBackend(b, cluster)
	s.agentsChanged()
	if cert != nil {
		// Which certificate an agent holds shows whether a renewal reached it.
		logger = logger.WithValues("certificate", cert.Subject.CommonName, "serial", cert.SerialNumber.Text(16))
	}
	logger.V(2).Info("Agent connected", "identifiers", rawIDs, "credit", withCredit)
	defer func() {
		s.removeBackend(ctx, b)
		s.agentsChanged()
		logger.V(2).Info("Agent disconnected")
	}()
	for {
		pkt, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if status.Code(err) != codes.Canceled {
				logger.V(2).Info("Agent stream failed", "err", err.Error())
			}
			return err
		}
		s.fromAgent(ctx, b, pkt)
	}
}

// fromAgent handles one packet of agent b.
func (s *Server) fromAgent(ctx context.Context, b *backend, pkt *client.Packet) {
	logger := klog.FromContext(ctx).WithValues("agentID", b.id)
	switch pkt.Type {
	case client.PacketType_DIAL_RSP:
		rsp := pkt.GetDialResponse()
		if rsp == nil {
			return
		}
		s.mu.Lock()
		pd := s.pending[rsp.Random]
		if pd == nil || pd.backend != b {
			// Unknown, cancelled, timed out, or another agent's dial.
			s.mu.Unlock()
			if rsp.ConnectID != 0 && rsp.Error == "" {
				_ = b.send(closeRequest(rsp.ConnectID))
			}
			return
		}
		s.dropPendingLocked(rsp.Random, pd)
		f := pd.frontend
		took := time.Since(pd.start)
		if rsp.Error == "" {
			// The ID must be free both on the frontend's stream (its client
			// names connections by ID alone) and at the agent: an agent
			// answering with the ID of a connection it holds for another
			// frontend would otherwise take that connection's place in
			// s.conns, so its data would reach this frontend while the
			// other frontend still wrote into it.
			_, takenHere := f.conns[rsp.ConnectID]
			_, takenAtAgent := s.conns[connKey{b, rsp.ConnectID}]
			if takenHere || takenAtAgent || rsp.ConnectID == 0 {
				s.mu.Unlock()
				b.stats.dialFailed(reasonProtocol, 1)
				_ = b.send(closeRequest(rsp.ConnectID))
				_ = f.send(dialResponse(rsp.Random, 0, fmt.Sprintf("agent %s answered with connection ID %d, which is already in use", b.id, rsp.ConnectID)))
				return
			}
			f.conns[rsp.ConnectID] = b
			s.conns[connKey{b, rsp.ConnectID}] = f
			b.stats.conns++
			if b.credit {
				s.routes[connKey{b, rsp.ConnectID}] = newRoute(f, b, rsp.ConnectID)
			}
		}
		s.mu.Unlock()
		logger.V(3).Info("Dial answered", "dialID", rsp.Random, "connectionID", rsp.ConnectID, "address", pd.address,
			"error", rsp.Error, "duration", took)
		err := f.send(pkt)
		switch {
		case rsp.Error != "":
			b.stats.dialFailed(reasonAgentError, 1)
		case err != nil:
			b.stats.dialFailed(reasonCancelled, 1)
			s.mu.Lock()
			s.dropConnLocked(connKey{b, rsp.ConnectID})
			s.mu.Unlock()
			_ = b.send(closeRequest(rsp.ConnectID))
		default:
			b.stats.dialAnswered(took)
		}
	case client.PacketType_DIAL_CLS:
		cls := pkt.GetCloseDial()
		if cls == nil {
			return
		}
		s.mu.Lock()
		pd := s.pending[cls.Random]
		if pd == nil || pd.backend != b {
			s.mu.Unlock()
			return
		}
		s.dropPendingLocked(cls.Random, pd)
		s.mu.Unlock()
		b.stats.dialFailed(reasonAgentError, 1)
		_ = pd.frontend.send(pkt)
	case client.PacketType_DATA:
		data := pkt.GetData()
		if data == nil {
			return
		}
		s.mu.Lock()
		f, r := s.conns[connKey{b, data.ConnectID}], s.routes[connKey{b, data.ConnectID}]
		s.mu.Unlock()
		if f != nil {
			b.stats.received(len(data.Data))
		}
		switch {
		case r != nil:
			if !r.push(pkt, len(data.Data)) {
				logger.Info("An agent sent more than a connection's credit; closing it", "connectionID", data.ConnectID)
				s.mu.Lock()
				s.dropConnLocked(connKey{b, data.ConnectID})
				s.mu.Unlock()
				_ = b.send(closeRequest(data.ConnectID))
				r.push(closeResponse(data.ConnectID, fmt.Sprintf("agent %s sent more than the connection's credit", b.id)), 0)
			}
		case f != nil:
			_ = f.forward(pkt)
		default:
			_ = b.send(closeRequest(data.ConnectID))
		}
	case credit.PacketTypeWindow:
		if connID, n, ok := credit.ParseWindow(pkt); ok {
			s.mu.Lock()
			r := s.routes[connKey{b, connID}]
			s.mu.Unlock()
			if r != nil {
				r.toAgent.Grant(n)
			}
		}
	case client.PacketType_CLOSE_RSP:
		rsp := pkt.GetCloseResponse()
		if rsp == nil {
			return
		}
		s.mu.Lock()
		r := s.routes[connKey{b, rsp.ConnectID}]
		f := s.dropConnLocked(connKey{b, rsp.ConnectID})
		s.mu.Unlock()
		switch {
		case r != nil:
			// After the connection's queued DATA.
			r.push(pkt, 0)
		case f != nil:
			_ = f.send(pkt)
		}
	case client.PacketType_DRAIN:
		b.draining.Store(true)
		logger.V(2).Info("Agent is draining: no new dials go to it")
	default:
		logger.V(4).Info("Ignored a packet from an agent", "type", pkt.Type.String())
	}
}

// Proxy serves one frontend stream: any number of dials and the
// connections they open.
func (s *Server) Proxy(stream client.ProxyService_ProxyServer) error {
	ctx := stream.Context()
	f := &frontend{stream: stream, conns: map[int64]*backend{}, dials: map[int64]struct{}{}}
	defer s.removeFrontend(f)
	for {
		pkt, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		s.fromFrontend(ctx, f, pkt)
	}
}

// fromFrontend handles one packet of frontend f.
func (s *Server) fromFrontend(ctx context.Context, f *frontend, pkt *client.Packet) {
	logger := klog.FromContext(ctx)
	switch pkt.Type {
	case client.PacketType_DIAL_REQ:
		req := pkt.GetDialRequest()
		if req == nil {
			return
		}
		s.dial(ctx, f, req, pkt)
	case client.PacketType_DATA:
		data := pkt.GetData()
		if data == nil {
			return
		}
		s.mu.Lock()
		b := f.conns[data.ConnectID]
		var r *route
		if b != nil {
			r = s.routes[connKey{b, data.ConnectID}]
		}
		s.mu.Unlock()
		if b != nil {
			b.stats.sent(len(data.Data))
		}
		switch {
		case r != nil:
			r.toAgentData(data.Data)
		case b != nil:
			_ = b.forward(pkt)
		default:
			_ = f.send(closeResponse(data.ConnectID, "unknown connection"))
		}
	case client.PacketType_CLOSE_REQ:
		req := pkt.GetCloseRequest()
		if req == nil {
			return
		}
		s.mu.Lock()
		b := f.conns[req.ConnectID]
		s.mu.Unlock()
		if b == nil {
			_ = f.send(closeResponse(req.ConnectID, "unknown connection"))
			return
		}
		// The agent's CLOSE_RSP ends the connection.
		if err := b.send(pkt); err != nil {
			s.mu.Lock()
			s.dropConnLocked(connKey{b, req.ConnectID})
			s.mu.Unlock()
			_ = f.send(closeResponse(req.ConnectID, "the agent is gone"))
		}
	case client.PacketType_DIAL_CLS:
		cls := pkt.GetCloseDial()
		if cls == nil {
			return
		}
		s.mu.Lock()
		pd := s.pending[cls.Random]
		owned := pd != nil && pd.frontend == f
		if owned {
			s.dropPendingLocked(cls.Random, pd)
		}
		s.mu.Unlock()
		if owned {
			pd.backend.stats.dialFailed(reasonCancelled, 1)
		}
	default:
		logger.V(4).Info("Ignored a packet from a frontend", "type", pkt.Type.String())
	}
}

// dial sends a frontend's DIAL_REQ to the agent the strategies pick.
func (s *Server) dial(ctx context.Context, f *frontend, req *client.DialRequest, pkt *client.Packet) {
	logger := klog.FromContext(ctx).WithValues("dialID", req.Random, "address", req.Address)
	s.mu.Lock()
	if _, dup := s.pending[req.Random]; dup {
		s.mu.Unlock()
		s.metrics.unknown.dialed()
		s.metrics.unknown.dialFailed(reasonProtocol, 1)
		_ = f.send(dialResponse(req.Random, 0, "a dial with this ID is already pending"))
		return
	}
	b := s.pickLocked(req.Address)
	if b == nil {
		s.mu.Unlock()
		s.metrics.unknown.dialed()
		s.metrics.unknown.dialFailed(reasonNoAgent, 1)
		logger.V(2).Info("No agent for a dial")
		_ = f.send(dialResponse(req.Random, 0, ErrNoAgent))
		return
	}
	// Counted before anything can answer it.
	b.stats.dialed()
	pd := &pendingDial{frontend: f, backend: b, address: req.Address, start: time.Now()}
	s.pending[req.Random] = pd
	f.dials[req.Random] = struct{}{}
	if s.opts.DialTimeout > 0 {
		pd.timer = time.AfterFunc(s.opts.DialTimeout, func() { s.dialTimedOut(req.Random, pd) })
	}
	s.mu.Unlock()
	if err := b.send(pkt); err != nil {
		s.mu.Lock()
		owned := s.pending[req.Random] == pd
		if owned {
			s.dropPendingLocked(req.Random, pd)
		}
		s.mu.Unlock()
		if owned {
			b.stats.dialFailed(reasonAgentGone, 1)
			_ = f.send(dialResponse(req.Random, 0, fmt.Sprintf("failed to send the dial to agent %s: %v", b.id, err)))
		}
	}
}

// dialTimedOut fails a dial its agent did not answer in time.
func (s *Server) dialTimedOut(random int64, pd *pendingDial) {
	s.mu.Lock()
	owned := s.pending[random] == pd
	if owned {
		s.dropPendingLocked(random, pd)
	}
	s.mu.Unlock()
	if owned {
		pd.backend.stats.dialFailed(reasonTimeout, 1)
		_ = pd.frontend.send(dialResponse(random, 0, fmt.Sprintf("dial timeout: agent %s did not answer within %s", pd.backend.id, s.opts.DialTimeout)))
	}
}

// pickLocked returns the agent for a dial of address, or nil.
func (s *Server) pickLocked(address string) *backend {
	host := address
	if h, _, err := net.SplitHostPort(address); err == nil {
		host = h
	}
	for _, st := range s.opts.Strategies {
		var candidates []*backend
		switch st {
		case StrategyDestHost:
			candidates = s.byHost[host]
		case StrategyDefault:
			for b := range s.backends {
				candidates = append(candidates, b)
			}
		case StrategyDefaultRoute:
			for b := range s.backends {
				if b.identifiers.Get("default-route") == "true" {
					candidates = append(candidates, b)
				}
			}
		}
		if b := pickAvailable(candidates); b != nil {
			return b
		}
	}
	return nil
}

// pickAvailable picks a random agent that is not draining, or, when all
// are, a random draining one (a draining agent still serves).
func pickAvailable(candidates []*backend) *backend {
	if len(candidates) == 0 {
		return nil
	}
	var live []*backend
	for _, b := range candidates {
		if !b.draining.Load() {
			live = append(live, b)
		}
	}
	if len(live) > 0 {
		return live[rand.IntN(len(live))]
	}
	return candidates[rand.IntN(len(candidates))]
}

// agentsChanged tells Options.AgentsChanged, if set.
func (s *Server) agentsChanged() {
	if s.opts.AgentsChanged != nil {
		s.opts.AgentsChanged()
	}
}

// addBackend registers b, an agent of cluster.
func (s *Server) addBackend(b *backend, cluster string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stats := s.clusters[cluster]
	if stats == nil {
		stats = s.metrics.newClusterStats(cluster)
		s.clusters[cluster] = stats
	}
	stats.agents++
	b.stats = stats
	s.backends[b] = struct{}{}
	for _, key := range []string{"host", "ipv4", "ipv6"} {
		for _, v := range b.identifiers[key] {
			s.byHost[v] = append(s.byHost[v], b)
		}
	}
}

// removeBackend unregisters b and tells the frontends of its pending dials
// and connections.
func (s *Server) removeBackend(ctx context.Context, b *backend) {
	s.mu.Lock()
	delete(s.backends, b)
	for host, list := range s.byHost {
		var kept []*backend
		for _, other := range list {
			if other != b {
				kept = append(kept, other)
			}
		}
		if len(kept) == 0 {
			delete(s.byHost, host)
		} else {
			s.byHost[host] = kept
		}
	}
	type notice struct {
		f   *frontend
		pkt *client.Packet
	}
	var notices []notice
	gone := 0
	for random, pd := range s.pending {
		if pd.backend == b {
			gone++
			s.dropPendingLocked(random, pd)
			notices = append(notices, notice{pd.frontend, dialResponse(random, 0, fmt.Sprintf("agent %s disconnected before answering", b.id))})
		}
	}
	for key, f := range s.conns {
		if key.backend == b {
			r := s.routes[key]
			s.dropConnLocked(key)
			// No error text, as apiserver-network-proxy's server: the
			// konnectivity client returns it from Close, which would fail
			// a caller that only closes what the remote already closed.
			if r != nil {
				// After the connection's queued DATA.
				r.push(closeResponse(key.connID, ""), 0)
				continue
			}
			notices = append(notices, notice{f, closeResponse(key.connID, "")})
		}
	}
	// Its connections are gone: a cluster without agents has none.
	if b.stats.agents--; b.stats.agents == 0 {
		delete(s.clusters, b.stats.name)
	}
	s.mu.Unlock()
	b.stats.dialFailed(reasonAgentGone, gone)
	for _, n := range notices {
		if err := n.f.send(n.pkt); err != nil {
			klog.FromContext(ctx).V(4).Info("Failed to tell a frontend its agent is gone", "err", err.Error())
		}
	}
}

// removeFrontend forgets f's dials and closes its connections on their
// agents.
func (s *Server) removeFrontend(f *frontend) {
	type closing struct {
		b      *backend
		connID int64
	}
	var closes []closing
	var cancelled []*clusterStats
	s.mu.Lock()
	for random := range f.dials {
		if pd := s.pending[random]; pd != nil && pd.frontend == f {
			s.dropPendingLocked(random, pd)
			cancelled = append(cancelled, pd.backend.stats)
		}
	}
	for connID, b := range f.conns {
		s.dropConnLocked(connKey{b, connID})
		closes = append(closes, closing{b, connID})
	}
	s.mu.Unlock()
	for _, stats := range cancelled {
		stats.dialFailed(reasonCancelled, 1)
	}
	for _, c := range closes {
		_ = c.b.send(closeRequest(c.connID))
	}
}

// dropPendingLocked forgets a pending dial; s.mu is held.
func (s *Server) dropPendingLocked(random int64, pd *pendingDial) {
	delete(s.pending, random)
	delete(pd.frontend.dials, random)
	if pd.timer != nil {
		pd.timer.Stop()
	}
}

// dropConnLocked forgets an established connection and returns its
// frontend (nil when unknown); s.mu is held.
func (s *Server) dropConnLocked(key connKey) *frontend {
	f := s.conns[key]
	if f == nil {
		return nil
	}
	delete(s.conns, key)
	key.backend.stats.conns--
	if r := s.routes[key]; r != nil {
		delete(s.routes, key)
		r.close()
	}
	if f.conns[key.connID] == key.backend {
		delete(f.conns, key.connID)
	}
	return f
}

// Stats counts what the server tracks, for tests and metrics.
type Stats struct {
	Agents, PendingDials, Connections int
	// WithCredit counts the Connections under per-connection credit
	// (package credit).
	WithCredit int
}

// Stats returns the current counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Agents: len(s.backends), PendingDials: len(s.pending), Connections: len(s.conns), WithCredit: len(s.routes)}
}

func peerCertificate(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return nil
	}
	return info.State.PeerCertificates[0]
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func dialResponse(random, connID int64, errMsg string) *client.Packet {
	return &client.Packet{Type: client.PacketType_DIAL_RSP, Payload: &client.Packet_DialResponse{
		DialResponse: &client.DialResponse{Random: random, ConnectID: connID, Error: errMsg}}}
}

func closeRequest(connID int64) *client.Packet {
	return &client.Packet{Type: client.PacketType_CLOSE_REQ, Payload: &client.Packet_CloseRequest{
		CloseRequest: &client.CloseRequest{ConnectID: connID}}}
}

func closeResponse(connID int64, errMsg string) *client.Packet {
	return &client.Packet{Type: client.PacketType_CLOSE_RSP, Payload: &client.Packet_CloseResponse{
		CloseResponse: &client.CloseResponse{ConnectID: connID, Error: errMsg}}}
}
