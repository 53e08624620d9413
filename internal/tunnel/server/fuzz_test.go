package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
	"sigs.k8s.io/apiserver-network-proxy/proto/header"

	"open-cluster-management.io/cluster-proxy/internal/tunnel/credit"
	"open-cluster-management.io/cluster-proxy/pkg/client/wire"
)

// The fuzz target drives the real Connect and Proxy handlers over
// in-memory streams, one packet at a time: the harness hands a packet to a
// handler's Recv and waits until the handler asks for the next one (or
// returns), so every step is deterministic and what the server sent during
// it is attributable to that step. A model built only from what the
// streams observed says which frontend owns which dial and connection at
// which agent; after every step the harness checks that
//   - nothing went to a peer that had no business receiving it (a packet
//     from agent A reaches only the frontend whose dial or connection went
//     to A; a frontend's packet reaches only the agent of its own
//     connection, or the agent its dial was routed to by the strategies);
//   - forwarded DATA is the very packet its sender sent;
//   - an agent is admitted exactly when its ID, identifiers and the
//     Authorizer allow it, and a refused agent receives nothing;
//   - when a stream ends, the other side of each of its dials and
//     connections is told (DIAL_RSP or CLOSE_RSP to a frontend, CLOSE_REQ to
//     an agent), and no one else;
//   - the server's maps hold exactly the dials and connections of the model,
//     all of live streams, and are empty when every stream has ended;
//   - no handler panics, and no goroutine outlives the input.

// FuzzPacketHandling decodes its input into a sequence of stream opens,
// packets (every type, random IDs, missing and wrong payloads), send
// failures and stream ends from three frontends and three agents.
func FuzzPacketHandling(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		leaks := goleak.IgnoreCurrent()
		runPacketSequence(t, data)
		if err := goleak.Find(leaks); err != nil {
			t.Fatalf("goroutines left behind: %v", err)
		}
	})
}

// fuzzSlots is how many frontends and how many agents can be open at once.
const fuzzSlots = 3

// Small ID and name spaces, so that collisions (two agents answering the
// same dial ID, a connection ID used by two agents) are common.
var (
	fuzzRandoms   = []int64{0, 1, 2, 3, 4, -1}
	fuzzConnIDs   = []int64{0, 1, 2, 3, 4, -7}
	fuzzAddresses = []string{"a:443", "b:80", "a", "127.0.0.1:6443", "[::1]:8080", "c:1", "", "forbidden:1", "b"}
	fuzzAgentIDs  = []string{"agent-a", "agent-b", "agent-a", "", "refused-agent"} // two agents may share an ID
	// fuzzIdentifiers are --agent-identifiers values; "forbidden" is a
	// host the Authorizer refuses, and "%zz" is not a URL query.
	fuzzIdentifiers = []string{
		"host=a", "host=b", "host=a&host=b", "ipv4=127.0.0.1&ipv6=::1", "default-route=true",
		"host=a&default-route=true", "", "host=forbidden", "host=a&host=forbidden", "%zz", "host=a&host=a", "host=c;x",
	}
	fuzzStrategies = [][]Strategy{
		{StrategyDestHost},
		{StrategyDestHost, StrategyDefault},
		{StrategyDefaultRoute},
		{StrategyDefault, StrategyDestHost},
		{StrategyDestHost, StrategyDefaultRoute},
	}
)

// fuzzAuthorize refuses one agent ID and the host "forbidden".
func fuzzAuthorize(_ *x509.Certificate, agentID, identifiers string) error {
	if agentID == "refused-agent" {
		return errors.New("refused by ID")
	}
	ids, err := url.ParseQuery(identifiers)
	if err != nil {
		return err
	}
	if slices.Contains(ids["host"], "forbidden") {
		return errors.New("host=forbidden is not this agent's")
	}
	return nil
}

// fuzzStream is an in-memory gRPC server stream, for either service.
type fuzzStream struct {
	grpc.ServerStream // nil: the handlers use only the methods below

	ctx context.Context
	// in hands the handler its next Recv result; ready says the handler
	// is in Recv, that is, done with the previous packet.
	in    chan recvResult
	ready chan struct{}

	mu          sync.Mutex
	sent        []*client.Packet
	broken      atomic.Bool
	headerFails bool
}

type recvResult struct {
	pkt *client.Packet
	err error
}

func (s *fuzzStream) Context() context.Context { return s.ctx }

func (s *fuzzStream) SendHeader(metadata.MD) error {
	if s.headerFails {
		return errors.New("header not sent: transport closing")
	}
	return nil
}

func (s *fuzzStream) Send(pkt *client.Packet) error {
	if s.broken.Load() {
		return status.Error(codes.Unavailable, "transport is closing")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, pkt)
	return nil
}

// SendMsg is how the server sends (wire.Owned packets).
func (s *fuzzStream) SendMsg(m any) error {
	switch m := m.(type) {
	case wire.Owned:
		return s.Send(m.Packet)
	case *client.Packet:
		return s.Send(m)
	}
	return fmt.Errorf("the server sent a %T", m)
}

func (s *fuzzStream) Recv() (*client.Packet, error) {
	s.ready <- struct{}{}
	r := <-s.in
	return r.pkt, r.err
}

func (s *fuzzStream) sentSince(n int) []*client.Packet {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent[n:])
}

func (s *fuzzStream) sentCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sent)
}

// fuzzPeer is one frontend or agent stream of the harness.
type fuzzPeer struct {
	name   string
	agent  bool
	stream *fuzzStream
	done   chan error
	live   bool
	// Agents only: what it registered, whether it said DRAIN, and the last
	// dial it received (which the answer op answers).
	identifiers url.Values
	draining    bool
	lastDial    *client.DialRequest
	lastConnID  int64
}

type dialRef struct {
	agent  *fuzzPeer
	random int64
}

type connRef struct {
	agent  *fuzzPeer
	connID int64
}

// fuzzHarness holds the server, the streams, and the model: which frontend
// owns which dial and connection, as the streams observed it.
type fuzzHarness struct {
	t          *testing.T
	s          *Server
	strategies []Strategy
	frontends  [fuzzSlots]*fuzzPeer
	agents     [fuzzSlots]*fuzzPeer
	all        []*fuzzPeer
	names      int
	log        []string

	dials map[dialRef]*fuzzPeer
	conns map[connRef]*fuzzPeer
	// routes are the server's routes (connections under credit) seen so
	// far whose queues may still hold packets.
	routes map[*route]struct{}
}

// fuzzInput reads the fuzz bytes; past the end it reads zeros.
type fuzzInput struct {
	data []byte
	pos  int
}

func (in *fuzzInput) next() byte {
	if in.pos >= len(in.data) {
		return 0
	}
	b := in.data[in.pos]
	in.pos++
	return b
}

func (in *fuzzInput) pick(n int) int { return int(in.next()) % n }

// The harness's operations; every operation reads a fixed number of bytes.
const (
	opOpenFrontend   = iota // slot
	opOpenAgent             // slot, agentID, identifiers, header fails
	opFrontendPacket        // slot, type, payload kind, a, b, data
	opAgentPacket           // slot, type, payload kind, a, b, data
	opEndFrontend           // slot, how
	opEndAgent              // slot, how
	opBreak                 // agent?, slot
	opAnswer                // slot, connection ID, how
	opAgentData             // slot, index
	opFrontendData          // slot, index
	opFrontendClose         // slot, index
	opAgentCloseRsp         // slot, index
	opCount
)

// maxFuzzOps bounds the work of one input.
const maxFuzzOps = 400

func runPacketSequence(t *testing.T, data []byte) {
	in := &fuzzInput{data: data}
	strategies := fuzzStrategies[in.pick(len(fuzzStrategies))]
	s, err := New(Options{ServerID: "fuzz", ServerCount: 1, Strategies: strategies,
		Authorize: fuzzAuthorize})
	if err != nil {
		t.Fatal(err)
	}
	h := &fuzzHarness{t: t, s: s, strategies: strategies, dials: map[dialRef]*fuzzPeer{}, conns: map[connRef]*fuzzPeer{},
		routes: map[*route]struct{}{}}
	for ops := 0; in.pos < len(in.data) && ops < maxFuzzOps; ops++ {
		h.apply(in)
		h.checkState()
	}
	// Every stream ends: the server must forget everything.
	for _, p := range h.all {
		if p.live {
			h.end(p, recvResult{err: io.EOF})
			h.checkState()
		}
	}
	h.s.mu.Lock()
	leftover := fmt.Sprintf("backends %d, hosts %d, pending dials %d, connections %d, clusters %d",
		len(h.s.backends), len(h.s.byHost), len(h.s.pending), len(h.s.conns), len(h.s.clusters))
	empty := len(h.s.backends)+len(h.s.byHost)+len(h.s.pending)+len(h.s.conns)+len(h.s.clusters) == 0
	h.s.mu.Unlock()
	if !empty || h.s.Agents() != 0 || h.s.Stats() != (Stats{}) {
		h.fail("the server still tracks state after every stream ended: %s, agents %d", leftover, h.s.Agents())
	}
	// Every dial ended exactly once: it opened a connection or failed.
	dials, answered, failed := h.sumOf(h.s.metrics.dials), h.sumOf(h.s.metrics.dialDuration), h.sumOf(h.s.metrics.dialErrors)
	if dials != answered+failed {
		h.fail("%v dials counted, but %v answered and %v failed", dials, answered, failed)
	}
}

// clusterProblems checks the per-cluster counts against the server's
// state; s.mu is held.
func clusterProblems(s *Server) []string {
	var problems []string
	agents, conns := map[*clusterStats]int{}, map[*clusterStats]int{}
	for b := range s.backends {
		if s.clusters[b.stats.name] != b.stats {
			problems = append(problems, fmt.Sprintf("agent %s counts under a cluster %q the server does not list", b.id, b.stats.name))
		}
		agents[b.stats]++
	}
	for key := range s.conns {
		conns[key.backend.stats]++
	}
	for name, c := range s.clusters {
		if c.agents != agents[c] || c.conns != conns[c] {
			problems = append(problems, fmt.Sprintf("cluster %q counts %d agents and %d connections, want %d and %d",
				name, c.agents, c.conns, agents[c], conns[c]))
		}
	}
	return problems
}

// sumOf adds up the samples of every series of c (a histogram's count).
func (h *fuzzHarness) sumOf(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			h.fail("failed to read a metric: %v", err)
		}
		sum += d.GetCounter().GetValue() + float64(d.GetHistogram().GetSampleCount())
	}
	return sum
}

func (h *fuzzHarness) fail(format string, args ...any) {
	h.t.Helper()
	h.t.Fatalf("%s\nsteps:\n  %s", fmt.Sprintf(format, args...), strings.Join(h.log, "\n  "))
}

func (h *fuzzHarness) logf(format string, args ...any) {
	h.log = append(h.log, fmt.Sprintf(format, args...))
}

// apply decodes and runs one operation.
func (h *fuzzHarness) apply(in *fuzzInput) {
	op := in.pick(opCount)
	slot := in.pick(fuzzSlots)
	switch op {
	case opOpenFrontend:
		if h.frontends[slot] == nil {
			h.frontends[slot] = h.open(false, "", "", false, false)
		}
	case opOpenAgent:
		agentID := fuzzAgentIDs[in.pick(len(fuzzAgentIDs))]
		ids := fuzzIdentifiers[in.pick(len(fuzzIdentifiers))]
		b := in.next()
		headerFails := b%8 == 0
		withCredit := (b/8)%2 == 1 // the agent offers per-connection credit
		if h.agents[slot] == nil {
			if p := h.open(true, agentID, ids, headerFails, withCredit); p.live {
				h.agents[slot] = p
			}
		}
	case opFrontendPacket, opAgentPacket:
		pkt := fuzzPacket(in)
		if op == opFrontendPacket {
			if p := h.frontends[slot]; p != nil {
				h.fromFrontend(p, pkt)
			}
		} else if p := h.agents[slot]; p != nil {
			h.fromAgent(p, pkt)
		}
	case opEndFrontend, opEndAgent:
		how := endResult(in.next())
		peers := &h.frontends
		if op == opEndAgent {
			peers = &h.agents
		}
		if p := peers[slot]; p != nil {
			h.end(p, how)
		}
	case opBreak:
		p := h.frontends[slot]
		if in.next()%2 == 1 {
			p = h.agents[slot]
		}
		if p != nil {
			h.logf("%s: sends fail from now on", p.name)
			p.stream.broken.Store(true)
		}
	case opAnswer:
		index, mode := int(in.next()), in.next()%4
		if p := h.agents[slot]; p != nil && p.lastDial != nil {
			rsp := &client.DialResponse{Random: p.lastDial.Random}
			switch mode {
			case 0: // the dial failed
				rsp.Error = "connection refused"
			case 1: // an ID from the small set
				rsp.ConnectID = fuzzConnIDs[index%len(fuzzConnIDs)]
			case 2: // the ID of one of the agent's live connections
				rsp.ConnectID = h.pickConn(p, nil, index)
			case 3: // a fresh ID, as a well-behaved agent numbers them
				p.lastConnID++
				rsp.ConnectID = p.lastConnID
			}
			h.fromAgent(p, &client.Packet{Type: client.PacketType_DIAL_RSP, Payload: &client.Packet_DialResponse{DialResponse: rsp}})
		}
	case opAgentData, opAgentCloseRsp:
		index := int(in.next())
		if p := h.agents[slot]; p != nil {
			connID := h.pickConn(p, nil, index)
			if op == opAgentData {
				h.fromAgent(p, dataPacket(connID, []byte{byte(index)}))
			} else {
				h.fromAgent(p, closeResponse(connID, ""))
			}
		}
	case opFrontendData, opFrontendClose:
		index := int(in.next())
		if p := h.frontends[slot]; p != nil {
			connID := h.pickConn(nil, p, index)
			if op == opFrontendData {
				h.fromFrontend(p, dataPacket(connID, []byte{byte(index)}))
			} else {
				h.fromFrontend(p, closeRequest(connID))
			}
		}
	}
}

// pickConn returns the index-th connection ID of the model's connections
// of agent or frontend (in a stable order), or an ID from the small set
// when index says so or there is none.
func (h *fuzzHarness) pickConn(agent, frontend *fuzzPeer, index int) int64 {
	var ids []int64
	for ref, f := range h.conns {
		if (agent != nil && ref.agent == agent) || (frontend != nil && f == frontend) {
			ids = append(ids, ref.connID)
		}
	}
	if len(ids) == 0 || index%5 == 4 {
		return fuzzConnIDs[index%len(fuzzConnIDs)]
	}
	slices.Sort(ids)
	return ids[index%len(ids)]
}

func endResult(b byte) recvResult {
	switch b % 3 {
	case 0:
		return recvResult{err: io.EOF}
	case 1:
		return recvResult{err: status.Error(codes.Canceled, "context canceled")}
	default:
		return recvResult{err: status.Error(codes.Unavailable, "connection reset")}
	}
}

// fuzzPacket decodes a packet: any type (and one unknown), with the
// payload of its type, none, or another type's.
func fuzzPacket(in *fuzzInput) *client.Packet {
	types := []client.PacketType{
		client.PacketType_DIAL_REQ, client.PacketType_DIAL_RSP, client.PacketType_CLOSE_REQ, client.PacketType_CLOSE_RSP,
		client.PacketType_DATA, client.PacketType_DIAL_CLS, client.PacketType_DRAIN, client.PacketType(42),
	}
	typ := types[in.pick(len(types))]
	kind := in.pick(4)
	random := fuzzRandoms[in.pick(len(fuzzRandoms))]
	connID := fuzzConnIDs[in.pick(len(fuzzConnIDs))]
	extra := in.next()
	if typ == client.PacketType(42) && extra%2 == 1 {
		// The credit extension's WINDOW, well-formed or not: the server
		// answers none, from either side.
		if kind == 1 {
			return &client.Packet{Type: credit.PacketTypeWindow}
		}
		pkt := credit.WindowPacket(connID, int(extra)<<10)
		if kind == 2 {
			pkt.GetData().Data = []byte{extra}
		}
		return pkt
	}
	payloadType := typ
	switch kind {
	case 1: // no payload
		return &client.Packet{Type: typ}
	case 2: // another type's payload
		payloadType = types[int(extra)%len(types)]
	}
	pkt := &client.Packet{Type: typ}
	switch payloadType {
	case client.PacketType_DIAL_REQ:
		pkt.Payload = &client.Packet_DialRequest{DialRequest: &client.DialRequest{
			Protocol: "tcp", Address: fuzzAddresses[int(extra)%len(fuzzAddresses)], Random: random}}
	case client.PacketType_DIAL_RSP:
		rsp := &client.DialResponse{Random: random, ConnectID: connID}
		if extra%3 == 0 {
			rsp.Error = "dial failed"
		}
		pkt.Payload = &client.Packet_DialResponse{DialResponse: rsp}
	case client.PacketType_CLOSE_REQ:
		pkt.Payload = &client.Packet_CloseRequest{CloseRequest: &client.CloseRequest{ConnectID: connID}}
	case client.PacketType_CLOSE_RSP:
		pkt.Payload = &client.Packet_CloseResponse{CloseResponse: &client.CloseResponse{ConnectID: connID}}
	case client.PacketType_DATA:
		pkt.Payload = &client.Packet_Data{Data: &client.Data{ConnectID: connID, Data: []byte{extra}}}
	case client.PacketType_DIAL_CLS:
		pkt.Payload = &client.Packet_CloseDial{CloseDial: &client.CloseDial{Random: random}}
	case client.PacketType_DRAIN:
		pkt.Payload = &client.Packet_Drain{Drain: &client.Drain{}}
	}
	return pkt
}

// open starts a handler on a new stream and waits until it is in Recv
// (admitted) or has returned (an agent refused).
func (h *fuzzHarness) open(isAgent bool, agentID, identifiers string, headerFails, withCredit bool) *fuzzPeer {
	h.names++
	kind := "frontend"
	if isAgent {
		kind = "agent"
	}
	p := &fuzzPeer{name: fmt.Sprintf("%s%d", kind, h.names), agent: isAgent, done: make(chan error, 1)}
	ctx := klog.NewContext(h.t.Context(), logr.Discard())
	if isAgent {
		md := metadata.Pairs(header.AgentID, agentID, header.AgentIdentifiers, identifiers)
		if withCredit {
			md.Set(credit.Offer, credit.Version)
		}
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	p.stream = &fuzzStream{ctx: ctx, in: make(chan recvResult), ready: make(chan struct{}), headerFails: headerFails}
	before := h.mark()
	agentsBefore := h.s.Agents()
	go func() {
		if isAgent {
			p.done <- h.s.Connect(p.stream)
		} else {
			p.done <- h.s.Proxy(p.stream)
		}
	}()
	var err error
	select {
	case <-p.stream.ready:
		p.live = true
		h.all = append(h.all, p)
	case err = <-p.done:
	}
	h.logf("open %s id=%q identifiers=%q headerFails=%v credit=%v: live=%v err=%v", p.name, agentID, identifiers, headerFails, withCredit, p.live, err)
	if isAgent {
		ids, parseErr := url.ParseQuery(identifiers)
		admit := parseErr == nil && agentID != "" && fuzzAuthorize(nil, agentID, identifiers) == nil && !headerFails
		if admit != p.live {
			h.fail("%s admitted=%v, want %v", p.name, p.live, admit)
		}
		p.identifiers = ids
		wantAgents := agentsBefore
		if p.live {
			wantAgents++
		}
		if got := h.s.Agents(); got != wantAgents {
			h.fail("%d agents after opening %s, want %d", got, p.name, wantAgents)
		}
	} else if !p.live {
		h.fail("%s: Proxy returned at once: %v", p.name, err)
	}
	h.expectNothingSince(before, nil)
	return p
}

// deliver hands pkt to p's handler and waits until it is done with it.
func (h *fuzzHarness) deliver(p *fuzzPeer, r recvResult) {
	p.stream.in <- r
	select {
	case <-p.stream.ready:
	case err := <-p.done:
		if r.err == nil {
			h.fail("%s: the handler returned on a packet: %v", p.name, err)
		}
		p.live = false
		p.stream.broken.Store(true) // a gRPC stream cannot send once its handler returned
	}
	if r.err != nil && p.live {
		h.fail("%s: the handler is still running after its stream ended", p.name)
	}
}

// settleBound bounds how long a route's drainer takes to hand on its
// queue (to in-memory streams).
const settleBound = 5 * time.Second

// settle waits until every route seen so far has handed its queue on: a
// connection under credit delivers an agent's packets from a goroutine of
// its own, so they arrive after the packet's handler returned.
func (h *fuzzHarness) settle() {
	h.s.mu.Lock()
	for _, r := range h.s.routes {
		h.routes[r] = struct{}{}
	}
	h.s.mu.Unlock()
	deadline := time.Now().Add(settleBound)
	for r := range h.routes {
		for !r.idle() {
			if time.Now().After(deadline) {
				h.fail("the route of connection %d did not hand its queue on within %s", r.connID, settleBound)
			}
			time.Sleep(100 * time.Microsecond)
		}
		h.s.mu.Lock()
		live := h.s.routes[connKey{r.b, r.connID}] == r
		h.s.mu.Unlock()
		if !live {
			delete(h.routes, r)
		}
	}
}

// mark records how much every stream has received so far.
func (h *fuzzHarness) mark() map[*fuzzPeer]int {
	m := make(map[*fuzzPeer]int, len(h.all))
	for _, p := range h.all {
		m[p] = p.stream.sentCount()
	}
	return m
}

// since returns what each stream received after mark, once every
// connection under credit has handed its queue on.
func (h *fuzzHarness) since(mark map[*fuzzPeer]int) map[*fuzzPeer][]*client.Packet {
	h.settle()
	got := map[*fuzzPeer][]*client.Packet{}
	for _, p := range h.all {
		if pkts := p.stream.sentSince(mark[p]); len(pkts) > 0 {
			got[p] = pkts
		}
	}
	return got
}

// expectNothingSince fails when any stream but except received a packet.
func (h *fuzzHarness) expectNothingSince(mark map[*fuzzPeer]int, except *fuzzPeer) {
	h.t.Helper()
	for p, pkts := range h.since(mark) {
		if p != except {
			h.fail("%s received %s", p.name, describe(pkts))
		}
	}
}

func describe(pkts []*client.Packet) string {
	var parts []string
	for _, pkt := range pkts {
		parts = append(parts, pkt.String())
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// connOf returns the agent of frontend f's connection connID in the model.
func (h *fuzzHarness) connOf(f *fuzzPeer, connID int64) *fuzzPeer {
	var agent *fuzzPeer
	for ref, owner := range h.conns {
		if owner == f && ref.connID == connID {
			if agent != nil {
				h.fail("%s holds connection %d at %s and at %s", f.name, connID, agent.name, ref.agent.name)
			}
			agent = ref.agent
		}
	}
	return agent
}

// dialOwner returns the model's pending dial with random, if any.
func (h *fuzzHarness) dialWithRandom(random int64) (dialRef, *fuzzPeer) {
	for ref, f := range h.dials {
		if ref.random == random {
			return ref, f
		}
	}
	return dialRef{}, nil
}

// expectOnly fails unless p received exactly want (nil: nothing), which is
// dropped when p's sends fail.
func (h *fuzzHarness) expectOnly(got map[*fuzzPeer][]*client.Packet, p *fuzzPeer, want ...*client.Packet) {
	h.t.Helper()
	if p.stream.broken.Load() {
		want = nil
	}
	have := got[p]
	if len(have) != len(want) {
		h.fail("%s received %s, want %s", p.name, describe(have), describe(want))
	}
	for i := range want {
		if !samePacket(have[i], want[i]) {
			h.fail("%s received %s, want %s", p.name, describe(have), describe(want))
		}
	}
}

// samePacket: forwarded packets must be the sender's very packet; packets
// the server writes itself are compared by type, IDs and whether they carry
// an error (their text is the server's to choose).
func samePacket(got, want *client.Packet) bool {
	if got == want {
		return true
	}
	if got.Type != want.Type {
		return false
	}
	switch want.Type {
	case client.PacketType_DIAL_RSP:
		g, w := got.GetDialResponse(), want.GetDialResponse()
		return g != nil && g.Random == w.Random && g.ConnectID == w.ConnectID && (g.Error == "") == (w.Error == "")
	case client.PacketType_CLOSE_REQ:
		return got.GetCloseRequest() != nil && got.GetCloseRequest().ConnectID == want.GetCloseRequest().ConnectID
	case client.PacketType_CLOSE_RSP:
		g, w := got.GetCloseResponse(), want.GetCloseResponse()
		return g != nil && g.ConnectID == w.ConnectID && (g.Error == "") == (w.Error == "")
	case client.PacketType_DATA:
		// A frontend's DATA to an agent under credit is sent anew, cut to
		// the credit.
		g, w := got.GetData(), want.GetData()
		return g != nil && w != nil && g.ConnectID == w.ConnectID && bytes.Equal(g.Data, w.Data)
	}
	return false // DIAL_CLS and DIAL_REQ are only ever forwarded
}

// fromFrontend delivers a frontend's packet and checks where it went.
func (h *fuzzHarness) fromFrontend(f *fuzzPeer, pkt *client.Packet) {
	h.logf("%s sends %s", f.name, pkt.String())
	mark := h.mark()
	h.deliver(f, recvResult{pkt: pkt})
	got := h.since(mark)
	for p, pkts := range got {
		if !p.agent && p != f {
			h.fail("%s's packet reached another frontend, %s: %s", f.name, p.name, describe(pkts))
		}
	}
	// routed is the one agent that received something, if any.
	var routed *fuzzPeer
	for p := range got {
		if p.agent {
			if routed != nil {
				h.fail("one packet of %s reached two agents, %s and %s", f.name, routed.name, p.name)
			}
			routed = p
		}
	}
	payloadOK := false
	switch pkt.Type {
	case client.PacketType_DIAL_REQ:
		req := pkt.GetDialRequest()
		if req == nil {
			break
		}
		payloadOK = true
		if routed != nil {
			h.expectOnly(got, routed, pkt)
			h.expectOnly(got, f)
			if allowed := h.allowedAgents(req.Address); !slices.Contains(allowed, routed) {
				h.fail("the dial of %q went to %s (identifiers %v, draining %v), not one of the agents the strategies %v allow", req.Address,
					routed.name, routed.identifiers, routed.draining, h.strategies)
			}
			if _, other := h.dialWithRandom(req.Random); other != nil {
				h.fail("a dial with ID %d was sent to %s while another one is pending", req.Random, routed.name)
			}
			h.dials[dialRef{routed, req.Random}] = f
			routed.lastDial = req
			break
		}
		// Refused at once: a duplicate ID, no agent, or the agent's
		// stream failed.
		h.expectOnly(got, f, dialResponse(req.Random, 0, "refused"))
		if rsp := onlyPacket(got[f]); rsp != nil {
			_, pending := h.dialWithRandom(req.Random)
			if pending == nil && len(h.allowedAgents(req.Address)) == 0 && rsp.GetDialResponse().Error != ErrNoAgent {
				h.fail("no agent serves %q, but the answer says %q", req.Address, rsp.GetDialResponse().Error)
			}
			if allowed := h.allowedAgents(req.Address); pending == nil && len(allowed) > 0 &&
				!slices.ContainsFunc(allowed, func(a *fuzzPeer) bool { return a.stream.broken.Load() }) {
				h.fail("the dial of %q was refused (%q) although agents serve it", req.Address, rsp.GetDialResponse().Error)
			}
		}
	case client.PacketType_DATA, client.PacketType_CLOSE_REQ:
		var connID int64
		if data := pkt.GetData(); pkt.Type == client.PacketType_DATA && data != nil {
			connID, payloadOK = data.ConnectID, true
		}
		if req := pkt.GetCloseRequest(); pkt.Type == client.PacketType_CLOSE_REQ && req != nil {
			connID, payloadOK = req.ConnectID, true
		}
		if !payloadOK {
			break
		}
		agent := h.connOf(f, connID)
		if agent == nil {
			if routed != nil {
				h.fail("%s's packet for connection %d, which it does not hold, reached %s", f.name, connID, routed.name)
			}
			h.expectOnly(got, f, closeResponse(connID, "unknown connection"))
			break
		}
		if routed != nil && routed != agent {
			h.fail("%s's packet for its connection %d at %s reached %s", f.name, connID, agent.name, routed.name)
		}
		if agent.stream.broken.Load() {
			if pkt.Type == client.PacketType_CLOSE_REQ {
				// The agent cannot be told: the connection is gone.
				h.expectOnly(got, f, closeResponse(connID, "the agent is gone"))
				delete(h.conns, connRef{agent, connID})
			} else {
				h.expectOnly(got, f)
			}
			break
		}
		h.expectOnly(got, agent, pkt)
		h.expectOnly(got, f)
	case client.PacketType_DIAL_CLS:
		cls := pkt.GetCloseDial()
		if cls == nil {
			break
		}
		payloadOK = true
		if len(got) > 0 {
			h.fail("a DIAL_CLS of %s was answered or forwarded: %v", f.name, got)
		}
		if ref, owner := h.dialWithRandom(cls.Random); owner == f {
			delete(h.dials, ref)
		}
	}
	if !payloadOK && len(got) > 0 {
		h.fail("%s's packet without a usable payload was answered or forwarded: %v", f.name, got)
	}
}

// fromAgent delivers an agent's packet and checks where it went.
func (h *fuzzHarness) fromAgent(a *fuzzPeer, pkt *client.Packet) {
	h.logf("%s sends %s", a.name, pkt.String())
	mark := h.mark()
	h.deliver(a, recvResult{pkt: pkt})
	got := h.since(mark)
	// The frontend that may receive something, and what a may be told.
	var owner *fuzzPeer
	var toOwner, toAgent []*client.Packet
	switch pkt.Type {
	case client.PacketType_DIAL_RSP:
		rsp := pkt.GetDialResponse()
		if rsp == nil {
			break
		}
		ref := dialRef{a, rsp.Random}
		owner = h.dials[ref]
		if owner == nil {
			// Not a's dial (unknown, cancelled, or another agent's): a
			// connection it opened for it is closed.
			if rsp.Error == "" && rsp.ConnectID != 0 {
				toAgent = append(toAgent, closeRequest(rsp.ConnectID))
			}
			break
		}
		delete(h.dials, ref)
		switch {
		case rsp.Error != "":
			toOwner = append(toOwner, pkt)
		case rsp.ConnectID == 0 || h.connOf(owner, rsp.ConnectID) != nil || h.conns[connRef{a, rsp.ConnectID}] != nil:
			// No usable connection ID: the frontend already uses it, or
			// the agent does for another live connection.
			toAgent = append(toAgent, closeRequest(rsp.ConnectID))
			toOwner = append(toOwner, dialResponse(rsp.Random, 0, "refused"))
		case owner.stream.broken.Load():
			toAgent = append(toAgent, closeRequest(rsp.ConnectID))
		default:
			toOwner = append(toOwner, pkt)
			h.conns[connRef{a, rsp.ConnectID}] = owner
		}
	case client.PacketType_DIAL_CLS:
		cls := pkt.GetCloseDial()
		if cls == nil {
			break
		}
		ref := dialRef{a, cls.Random}
		if owner = h.dials[ref]; owner != nil {
			delete(h.dials, ref)
			toOwner = append(toOwner, pkt)
		}
	case client.PacketType_DATA:
		data := pkt.GetData()
		if data == nil {
			break
		}
		if owner = h.conns[connRef{a, data.ConnectID}]; owner != nil {
			toOwner = append(toOwner, pkt)
		} else {
			toAgent = append(toAgent, closeRequest(data.ConnectID))
		}
	case client.PacketType_CLOSE_RSP:
		rsp := pkt.GetCloseResponse()
		if rsp == nil {
			break
		}
		ref := connRef{a, rsp.ConnectID}
		if owner = h.conns[ref]; owner != nil {
			delete(h.conns, ref)
			toOwner = append(toOwner, pkt)
		}
	case client.PacketType_DRAIN:
		a.draining = true
	}
	for p, pkts := range got {
		if p != a && p != owner {
			h.fail("%s's packet reached %s: %s (the dial or connection it names belongs to %v)", a.name, p.name, describe(pkts), nameOf(owner))
		}
	}
	h.expectOnly(got, a, toAgent...)
	if owner != nil {
		h.expectOnly(got, owner, toOwner...)
	}
}

func nameOf(p *fuzzPeer) string {
	if p == nil {
		return "no frontend"
	}
	return p.name
}

func onlyPacket(pkts []*client.Packet) *client.Packet {
	if len(pkts) != 1 {
		return nil
	}
	return pkts[0]
}

// end ends p's stream and checks who was told.
func (h *fuzzHarness) end(p *fuzzPeer, r recvResult) {
	h.logf("%s ends: %v", p.name, r.err)
	mark := h.mark()
	h.deliver(p, r)
	for i := range fuzzSlots {
		if h.frontends[i] == p {
			h.frontends[i] = nil
		}
		if h.agents[i] == p {
			h.agents[i] = nil
		}
	}
	got := h.since(mark)
	want := map[*fuzzPeer][]*client.Packet{}
	if p.agent {
		for ref, f := range h.dials {
			if ref.agent == p {
				want[f] = append(want[f], dialResponse(ref.random, 0, "agent gone"))
				delete(h.dials, ref)
			}
		}
		for ref, f := range h.conns {
			if ref.agent == p {
				want[f] = append(want[f], closeResponse(ref.connID, ""))
				delete(h.conns, ref)
			}
		}
	} else {
		for ref, f := range h.dials {
			if f == p {
				delete(h.dials, ref)
			}
		}
		for ref, f := range h.conns {
			if f == p {
				want[ref.agent] = append(want[ref.agent], closeRequest(ref.connID))
				delete(h.conns, ref)
			}
		}
	}
	for q, pkts := range got {
		if _, ok := want[q]; !ok {
			h.fail("the end of %s reached %s: %s", p.name, q.name, describe(pkts))
		}
	}
	for q, pkts := range want {
		if q.stream.broken.Load() {
			continue
		}
		// Notices come in map order: compare as sets.
		have := got[q]
		if len(have) != len(pkts) {
			h.fail("the end of %s: %s received %s, want %s", p.name, q.name, describe(have), describe(pkts))
		}
		for _, w := range pkts {
			if !slices.ContainsFunc(have, func(g *client.Packet) bool { return samePacket(g, w) }) {
				h.fail("the end of %s: %s received %s, want %s", p.name, q.name, describe(have), describe(pkts))
			}
		}
	}
}

// allowedAgents are the agents a dial of address may go to: those of the
// first strategy that has any, and of them the ones not draining when
// there are such.
func (h *fuzzHarness) allowedAgents(address string) []*fuzzPeer {
	host := address
	if hh, _, err := net.SplitHostPort(address); err == nil {
		host = hh
	}
	for _, st := range h.strategies {
		var candidates []*fuzzPeer
		for _, a := range h.agents {
			if a == nil {
				continue
			}
			switch st {
			case StrategyDestHost:
				if slices.Contains(a.identifiers["host"], host) || slices.Contains(a.identifiers["ipv4"], host) ||
					slices.Contains(a.identifiers["ipv6"], host) {
					candidates = append(candidates, a)
				}
			case StrategyDefault:
				candidates = append(candidates, a)
			case StrategyDefaultRoute:
				if a.identifiers.Get("default-route") == "true" {
					candidates = append(candidates, a)
				}
			}
		}
		if len(candidates) == 0 {
			continue
		}
		live := slices.DeleteFunc(slices.Clone(candidates), func(a *fuzzPeer) bool { return a.draining })
		if len(live) > 0 {
			return live
		}
		return candidates
	}
	return nil
}

// checkState compares the server's maps with the model: the same dials and
// connections, all of live streams, and consistent both ways.
func (h *fuzzHarness) checkState() {
	h.t.Helper()
	byStream := map[any]*fuzzPeer{}
	for _, p := range h.all {
		byStream[p.stream] = p
	}
	var problems []string
	stale := &fuzzPeer{name: "a stream that ended"}
	peerOf := func(stream any) *fuzzPeer {
		p := byStream[stream]
		if p == nil || !p.live {
			problems = append(problems, "the server holds a stream that ended")
			return stale
		}
		return p
	}
	s := h.s
	s.mu.Lock()
	liveAgents := 0
	for _, a := range h.agents {
		if a != nil {
			liveAgents++
		}
	}
	if len(s.backends) != liveAgents {
		problems = append(problems, fmt.Sprintf("%d backends, want %d", len(s.backends), liveAgents))
	}
	for b := range s.backends {
		peerOf(b.stream)
	}
	for host, list := range s.byHost {
		for _, b := range list {
			if _, ok := s.backends[b]; !ok {
				problems = append(problems, fmt.Sprintf("host %q routes to a removed agent", host))
			}
		}
	}
	if len(s.pending) != len(h.dials) {
		problems = append(problems, fmt.Sprintf("%d pending dials, want %d", len(s.pending), len(h.dials)))
	}
	for random, pd := range s.pending {
		a, f := peerOf(pd.backend.stream), peerOf(pd.frontend.stream)
		if h.dials[dialRef{a, random}] != f {
			problems = append(problems, fmt.Sprintf("pending dial %d of %s at %s is not in the model", random, f.name, a.name))
		}
		if _, ok := pd.frontend.dials[random]; !ok {
			problems = append(problems, fmt.Sprintf("pending dial %d is not in its frontend's dials", random))
		}
		if _, ok := s.backends[pd.backend]; !ok {
			problems = append(problems, fmt.Sprintf("pending dial %d is at a removed agent", random))
		}
	}
	if len(s.conns) != len(h.conns) {
		problems = append(problems, fmt.Sprintf("%d connections, want %d", len(s.conns), len(h.conns)))
	}
	for key, f := range s.conns {
		a, fp := peerOf(key.backend.stream), peerOf(f.stream)
		if h.conns[connRef{a, key.connID}] != fp {
			problems = append(problems, fmt.Sprintf("connection %d of %s at %s is not in the model", key.connID, fp.name, a.name))
		}
		if f.conns[key.connID] != key.backend {
			problems = append(problems, fmt.Sprintf("connection %d at %s: its frontend maps the ID to another agent", key.connID, a.name))
		}
		for connID, b := range f.conns {
			if s.conns[connKey{b, connID}] != f {
				problems = append(problems, fmt.Sprintf("%s maps connection %d to an agent whose connection it is not", fp.name, connID))
			}
		}
		if _, ok := s.backends[key.backend]; !ok {
			problems = append(problems, fmt.Sprintf("connection %d is at a removed agent", key.connID))
		}
		if r := s.routes[key]; key.backend.credit != (r != nil) || (r != nil && (r.f != f || r.connID != key.connID)) {
			problems = append(problems, fmt.Sprintf("connection %d at %s: credit=%v, route %v", key.connID, a.name, key.backend.credit, r != nil))
		}
	}
	for key := range s.routes {
		if s.conns[key] == nil {
			problems = append(problems, fmt.Sprintf("a route outlived connection %d", key.connID))
		}
	}
	problems = append(problems, clusterProblems(s)...)
	s.mu.Unlock()
	if len(problems) > 0 {
		h.fail("server state: %s", strings.Join(problems, "; "))
	}
}

// seed builds a fuzz input: the strategy index, then operations.
type seed []byte

// Indices into the fuzz tables, for readable seeds.
const (
	// strategies
	stDestHost, stDestHostDefault = 0, 1
	// fuzzAgentIDs
	idA, idB, idEmpty, idRefused = 0, 1, 3, 4
	// fuzzIdentifiers
	idsA, idsB, idsForbidden, idsAAndForbidden, idsNotQuery, idsSemicolon = 0, 1, 7, 8, 9, 11
	// packet types in fuzzPacket
	tDialReq, tDialRsp, tCloseReq, tCloseRsp, tData, tDialCls, tDrain, tUnknown = 0, 1, 2, 3, 4, 5, 6, 7
	// payload kinds
	kPayload, kNoPayload, kWrongPayload = 0, 1, 2
	// fuzzRandoms and fuzzConnIDs indices
	r1, r2 = 1, 2
	c1, c2 = 1, 2
	// fuzzAddresses
	addrA, addrB = 0, 1
)

func (s seed) op(op, slot int, args ...int) seed {
	s = append(s, byte(op), byte(slot))
	for _, a := range args {
		s = append(s, byte(a))
	}
	return s
}

func (s seed) openFrontend(slot int) seed { return s.op(opOpenFrontend, slot) }
func (s seed) openAgent(slot, agentID, ids int) seed {
	return s.op(opOpenAgent, slot, agentID, ids, 1)
}

// dial sends a DIAL_REQ for fuzzAddresses[addr] with fuzzRandoms[random].
func (s seed) dial(slot, random, addr int) seed {
	return s.op(opFrontendPacket, slot, tDialReq, kPayload, random, 0, addr)
}

// answer has the agent answer its last dial with fuzzConnIDs[connID].
func (s seed) answer(slot, connID int) seed { return s.op(opAnswer, slot, connID, 1) }

// answerFresh has the agent answer its last dial with a new connection ID.
func (s seed) answerFresh(slot int) seed { return s.op(opAnswer, slot, 0, 3) }

// rawAgent and rawFrontend send a packet of type typ and payload kind.
func (s seed) rawAgent(slot, typ, kind, random, connID, extra int) seed {
	return s.op(opAgentPacket, slot, typ, kind, random, connID, extra)
}

func (s seed) rawFrontend(slot, typ, kind, random, connID, extra int) seed {
	return s.op(opFrontendPacket, slot, typ, kind, random, connID, extra)
}

func fuzzSeeds() [][]byte {
	return [][]byte{
		// A dial, a round trip, a close, both ends.
		seed{stDestHost}.openFrontend(0).openAgent(0, idA, idsA).dial(0, r1, addrA).answer(0, c1).
			op(opFrontendData, 0, 0).op(opAgentData, 0, 0).op(opFrontendClose, 0, 0).op(opAgentCloseRsp, 0, 0).
			op(opEndFrontend, 0, 0).op(opEndAgent, 0, 0),
		// Two agents with the same connection ID for two frontends; agent
		// b answers agent a's dial.
		seed{stDestHost}.openFrontend(0).openFrontend(1).openAgent(0, idA, idsA).openAgent(1, idB, idsB).
			dial(0, r1, addrA).dial(1, r2, addrB).
			rawAgent(1, tDialRsp, kPayload, r1, c1, 1).
			answer(0, c1).answer(1, c1).
			op(opAgentData, 1, 0).op(opAgentData, 0, 0).op(opFrontendData, 0, 0).op(opFrontendData, 1, 0),
		// An agent answers a second frontend's dial with the connection ID
		// of the first frontend's live connection. Regression: the server
		// accepted it and moved the connection to the second frontend
		// while the first still wrote into it (found by this target; also
		// testdata/fuzz/FuzzPacketHandling/agent-reuses-a-live-connection-id).
		seed{stDestHost}.openFrontend(0).openFrontend(1).openAgent(0, idA, idsA).
			dial(0, r1, addrA).answer(0, c1).dial(1, r2, addrA).answer(0, c1).
			op(opFrontendData, 1, 0).op(opAgentData, 0, 0).op(opEndFrontend, 0, 0).op(opFrontendData, 1, 0),
		// One frontend, two agents, the same connection ID from both.
		seed{stDestHostDefault}.openFrontend(0).openAgent(0, idA, idsA).openAgent(1, idB, idsB).
			dial(0, r1, addrA).answer(0, c1).dial(0, r2, addrB).answer(1, c1).op(opFrontendData, 0, 0),
		// The agent ends with a connection and a pending dial.
		seed{stDestHost}.openFrontend(0).openAgent(0, idA, idsA).dial(0, r1, addrA).answerFresh(0).
			dial(0, r2, addrA).op(opEndAgent, 0, 1).op(opFrontendData, 0, 0),
		// The frontend ends with a connection and a pending dial, which the
		// agent answers afterwards.
		seed{stDestHost}.openFrontend(0).openAgent(0, idA, idsA).dial(0, r1, addrA).answer(0, c1).
			dial(0, r2, addrA).op(opEndFrontend, 0, 2).answer(0, c2).op(opAgentData, 0, 0),
		// Missing and wrong payloads and an unknown type, both ways.
		seed{stDestHost}.openFrontend(0).openAgent(0, idA, idsA).
			rawFrontend(0, tDialReq, kNoPayload, r1, c1, 0).rawFrontend(0, tData, kWrongPayload, r1, c1, tDialReq).
			rawFrontend(0, tCloseReq, kWrongPayload, r1, c1, tData).rawFrontend(0, tUnknown, kPayload, r1, c1, 0).
			rawFrontend(0, tDialRsp, kPayload, r1, c1, 1).rawFrontend(0, tDrain, kPayload, r1, c1, 0).
			dial(0, r1, addrA).rawAgent(0, tDialRsp, kNoPayload, r1, c1, 0).rawAgent(0, tDialRsp, kWrongPayload, r1, c1, tData).
			rawAgent(0, tDialReq, kPayload, r1, c1, 0).rawAgent(0, tCloseReq, kPayload, r1, c1, 0).
			rawAgent(0, tUnknown, kWrongPayload, r1, c1, tDialRsp).answer(0, c1).
			rawAgent(0, tData, kPayload, r1, c2, 0).rawFrontend(0, tData, kPayload, r1, c2, 0),
		// Refused agents: a host of another cluster, an agent ID the
		// authorizer refuses, no ID, identifiers that are no URL query, a
		// failed header.
		seed{stDestHost}.openFrontend(0).openAgent(0, idA, idsForbidden).openAgent(0, idA, idsAAndForbidden).
			openAgent(0, idRefused, idsA).openAgent(0, idEmpty, idsA).openAgent(0, idA, idsNotQuery).
			openAgent(0, idA, idsSemicolon).op(opOpenAgent, 0, idA, idsA, 0).dial(0, r1, addrA),
		// The frontend's stream fails before its dial is answered; then the
		// agent's before a close.
		seed{stDestHost}.openFrontend(0).openFrontend(1).openAgent(0, idA, idsA).dial(0, r1, addrA).
			op(opBreak, 0, 0).answer(0, c1).dial(1, r2, addrA).answer(0, c2).op(opBreak, 0, 1).
			op(opFrontendClose, 1, 0).op(opFrontendData, 1, 0).dial(1, r1, addrA),
		// Dials cancelled by the frontend (DIAL_CLS) and by the agent.
		seed{stDestHost}.openFrontend(0).openAgent(0, idA, idsA).dial(0, r1, addrA).
			rawFrontend(0, tDialCls, kPayload, r1, 0, 0).answer(0, c1).dial(0, r2, addrA).
			rawAgent(0, tDialCls, kPayload, r2, 0, 0).answer(0, c2),
		// A draining agent gets no dial while another serves the host.
		seed{stDestHost}.openFrontend(0).openAgent(0, idA, idsA).openAgent(1, idB, idsA).
			rawAgent(0, tDrain, kPayload, 0, 0, 0).dial(0, r1, addrA).dial(0, r2, addrA).op(opEndAgent, 1, 0).
			dial(0, 3, addrA),
		// Two frontends dial with the same ID.
		seed{stDestHost}.openFrontend(0).openFrontend(1).openAgent(0, idA, idsA).dial(0, r1, addrA).
			dial(1, r1, addrA).rawFrontend(1, tDialCls, kPayload, r1, 0, 0).answer(0, c1),
	}
}
