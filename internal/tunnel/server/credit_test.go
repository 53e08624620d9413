package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
	agentproto "sigs.k8s.io/apiserver-network-proxy/proto/agent"
	"sigs.k8s.io/apiserver-network-proxy/proto/header"

	"open-cluster-management.io/cluster-proxy/internal/tunnel/credit"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/server"
)

// rawAgent is an agent of the test's own that speaks packets directly on
// an AgentService stream, offering credit, so the test sees exactly what
// the server sends it.
type rawAgent struct {
	stream agentproto.AgentService_ConnectClient
	// accepted is whether the server echoed the credit offer.
	accepted bool
	sendMu   sync.Mutex
}

func connectRawAgent(t *testing.T, ts *testServer, cluster, identifiers string) *rawAgent {
	t.Helper()
	g := NewWithT(t)
	certFile, keyFile, err := ts.PKI.AgentCert(cluster)
	g.Expect(err).NotTo(HaveOccurred())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	g.Expect(err).NotTo(HaveOccurred())
	conn, err := grpc.NewClient(ts.AgentAddr, grpc.WithTransportCredentials(credentials.NewTLS(ts.PKI.ClientTLS(cert))))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = conn.Close() })
	ctx := metadata.AppendToOutgoingContext(t.Context(), header.AgentID, "raw", header.AgentIdentifiers, identifiers,
		credit.Offer, credit.Version)
	stream, err := agentproto.NewAgentServiceClient(conn).Connect(ctx)
	g.Expect(err).NotTo(HaveOccurred())
	md, err := stream.Header()
	g.Expect(err).NotTo(HaveOccurred())
	return &rawAgent{stream: stream, accepted: credit.Offered(md)}
}

// startRawTunnel starts a server routing by destination host and a raw
// agent of cluster1 registering host=cluster1, and waits until the server
// has it.
func startRawTunnel(t *testing.T) (*testServer, *rawAgent) {
	t.Helper()
	ts := startServer(t, destHost())
	agent := connectRawAgent(t, ts, "cluster1", "host=cluster1")
	eventuallyAgents(NewWithT(t), ts, 1)
	return ts, agent
}

func (a *rawAgent) send(t *testing.T, pkt *client.Packet) {
	t.Helper()
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	if err := a.stream.Send(pkt); err != nil {
		t.Fatal(err)
	}
}

// acceptDial answers the next DIAL_REQ with connection connID and returns
// the channel of the DATA the server then sends for it; it answers the
// server's CLOSE_REQ.
func (a *rawAgent) acceptDial(t *testing.T, connID int64) <-chan []byte {
	t.Helper()
	pkt, err := a.stream.Recv()
	if err != nil || pkt.Type != client.PacketType_DIAL_REQ {
		t.Fatalf("want a DIAL_REQ, got %v, %v", pkt, err)
	}
	a.send(t, &client.Packet{Type: client.PacketType_DIAL_RSP, Payload: &client.Packet_DialResponse{
		DialResponse: &client.DialResponse{Random: pkt.GetDialRequest().Random, ConnectID: connID}}})
	data := make(chan []byte, 1024)
	go func() {
		defer close(data)
		for {
			pkt, err := a.stream.Recv()
			if err != nil {
				return
			}
			switch pkt.Type {
			case client.PacketType_DATA:
				data <- pkt.GetData().GetData()
			case client.PacketType_CLOSE_REQ:
				a.sendMu.Lock()
				_ = a.stream.Send(&client.Packet{Type: client.PacketType_CLOSE_RSP, Payload: &client.Packet_CloseResponse{
					CloseResponse: &client.CloseResponse{ConnectID: pkt.GetCloseRequest().GetConnectID()}}})
				a.sendMu.Unlock()
			}
		}
	}()
	return data
}

// openConnections reads cluster_proxy_proxy_server_open_connections with
// flow_control=flowControl from the server's collectors.
func openConnections(t *testing.T, s *server.Server, flowControl string) float64 {
	t.Helper()
	v, ok := metricValues(t, s)[`cluster_proxy_proxy_server_open_connections{flow_control="`+flowControl+`"}`]
	if !ok {
		t.Fatalf("no cluster_proxy_proxy_server_open_connections{flow_control=%q}", flowControl)
	}
	return v
}

// dialRawAgent dials address through ts's frontend (a stock single-use
// tunnel) while agent answers the dial with connection connID; it returns
// the connection, closed when the test ends, and the DATA the agent
// receives for it.
func dialRawAgent(t *testing.T, ts *testServer, agent *rawAgent, address string, connID int64) (net.Conn, <-chan []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	dialed := make(chan net.Conn, 1)
	go func() {
		conn, err := ts.Dial(ctx, address)
		if err != nil {
			t.Error(err)
		}
		dialed <- conn
	}()
	data := agent.acceptDial(t, connID)
	conn := <-dialed
	if conn == nil {
		t.FailNow()
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn, data
}

// received sums what arrives on data until nothing more comes for quiet
// after the first packet, which it waits up to 10 s for (a loaded machine
// may take longer than quiet to deliver it; waiting longer can only show
// more bytes than the credit allowed, never fewer).
func received(data <-chan []byte, quiet time.Duration, into *bytes.Buffer) {
	wait := 10 * time.Second
	for {
		select {
		case d, ok := <-data:
			if !ok {
				return
			}
			into.Write(d)
			wait = quiet
		case <-time.After(wait):
			return
		}
	}
}

func TestServerSendsAnAgentNoMoreThanItsCredit(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	ts, agent := startRawTunnel(t)
	g.Expect(agent.accepted).To(BeTrue(), "the server accepts the credit offer")

	conn, data := dialRawAgent(t, ts, agent, "cluster1:80", 1)
	g.Expect(ts.Stats().WithCredit).To(Equal(1))
	g.Expect(openConnections(t, ts.Server, "credit")).To(Equal(1.0))
	g.Expect(openConnections(t, ts.Server, "none")).To(Equal(0.0))

	payload := make([]byte, 3*credit.Window)
	_, _ = rand.Read(payload)
	go func() {
		// In 1 MiB writes: konnectivity-client sends each as one gRPC
		// message, and gRPC refuses messages above 4 MiB.
		for off := 0; off < len(payload); off += 1 << 20 {
			if _, err := conn.Write(payload[off:min(len(payload), off+1<<20)]); err != nil {
				return
			}
		}
	}()

	var got bytes.Buffer
	received(data, 300*time.Millisecond, &got)
	g.Expect(got.Len()).To(Equal(credit.Window), "bytes sent before any grant")
	agent.send(t, credit.WindowPacket(1, credit.Window/2))
	received(data, 300*time.Millisecond, &got)
	g.Expect(got.Len()).To(Equal(credit.Window+credit.Window/2), "bytes sent after a grant of half a window")
	agent.send(t, credit.WindowPacket(1, 2*credit.Window))
	agent.send(t, credit.WindowPacket(1, credit.Window))
	received(data, 300*time.Millisecond, &got)
	g.Expect(bytes.Equal(got.Bytes(), payload)).To(BeTrue(), "all %d bytes, in order (got %d)", len(payload), got.Len())
}

func TestAgentDataReachesTheFrontendBeforeItsClose(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	ts, agent := startRawTunnel(t)
	conn, _ := dialRawAgent(t, ts, agent, "cluster1:80", 1)

	// A window's worth in packets, then the close, at once: the server
	// queues them and hands them on in order.
	payload := make([]byte, credit.Window)
	_, _ = rand.Read(payload)
	for off := 0; off < len(payload); off += 64 << 10 {
		agent.send(t, &client.Packet{Type: client.PacketType_DATA, Payload: &client.Packet_Data{
			Data: &client.Data{ConnectID: 1, Data: payload[off : off+64<<10]}}})
	}
	agent.send(t, &client.Packet{Type: client.PacketType_CLOSE_RSP, Payload: &client.Packet_CloseResponse{
		CloseResponse: &client.CloseResponse{ConnectID: 1}}})
	got, err := io.ReadAll(conn)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(bytes.Equal(got, payload)).To(BeTrue(), "read %d of %d bytes before the close, or different ones", len(got), len(payload))
	g.Eventually(ts.Stats).WithTimeout(5 * time.Second).Should(Equal(server.Stats{Agents: 1}))
}
