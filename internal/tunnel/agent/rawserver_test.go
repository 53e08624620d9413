package agent_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
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
)

// rawServer is a proxy-server of the test's own: it accepts one agent
// stream, accepting the credit offer, and hands it to the test, so the
// test sees exactly what the agent sends.
type rawServer struct {
	agentproto.UnimplementedAgentServiceServer
	streams chan agentproto.AgentService_ConnectServer
	// done ends the handler of the stream the test holds.
	done chan struct{}
}

func (s *rawServer) Connect(stream agentproto.AgentService_ConnectServer) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	answer := metadata.Pairs(header.ServerID, "raw", header.ServerCount, "1")
	if credit.Offered(md) {
		answer.Set(credit.Offer, credit.Version)
	}
	if err := stream.SendHeader(answer); err != nil {
		return err
	}
	s.streams <- stream
	<-s.done
	return nil
}

// packetsOf receives the stream's packets into a channel until it ends.
func packetsOf(stream agentproto.AgentService_ConnectServer) <-chan *client.Packet {
	out := make(chan *client.Packet, 4096)
	go func() {
		defer close(out)
		for {
			pkt, err := stream.Recv()
			if err != nil {
				return
			}
			out <- pkt
		}
	}()
	return out
}

func TestAgentSendsAServerNoMoreThanItsCreditAndGrantsWhatItWrote(t *testing.T) {
	checkNoLeaks(t)
	g := NewWithT(t)
	pki := newPKI(t)
	raw := &rawServer{streams: make(chan agentproto.AgentService_ConnectServer, 1), done: make(chan struct{})}
	tlsConfig, err := pki.ServerTLS(pki.AgentServerCertFile, pki.AgentServerKeyFile)
	g.Expect(err).NotTo(HaveOccurred())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConfig)))
	agentproto.RegisterAgentServiceServer(gs, raw)
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	t.Cleanup(func() { close(raw.done) })

	// A backend that writes three windows' worth at once, and keeps
	// what it reads.
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = backend.Close() })
	payload := make([]byte, 3*credit.Window)
	_, _ = rand.Read(payload)
	read := make(chan []byte, 1)
	go func() {
		c, err := backend.Accept()
		if err != nil {
			return
		}
		defer func() { _ = c.Close() }()
		go func() { _, _ = c.Write(payload) }()
		got, _ := io.ReadAll(io.LimitReader(c, credit.Window))
		read <- got
	}()

	startAgent(t, pki, l.Addr().String(), "cluster1", "ipv4=127.0.0.1")
	var stream agentproto.AgentService_ConnectServer
	g.Eventually(raw.streams).WithTimeout(10 * time.Second).Should(Receive(&stream))
	packets := packetsOf(stream)
	g.Expect(stream.Send(&client.Packet{Type: client.PacketType_DIAL_REQ, Payload: &client.Packet_DialRequest{
		DialRequest: &client.DialRequest{Protocol: "tcp", Address: backend.Addr().String(), Random: 42}}})).To(Succeed())
	var rsp *client.Packet
	g.Eventually(packets).WithTimeout(10 * time.Second).Should(Receive(&rsp))
	g.Expect(rsp.Type).To(Equal(client.PacketType_DIAL_RSP))
	connID := rsp.GetDialResponse().GetConnectID()
	g.Expect(rsp.GetDialResponse().GetError()).To(BeEmpty())

	var got bytes.Buffer
	collect := func() {
		for {
			select {
			case pkt := <-packets:
				if pkt.Type == client.PacketType_DATA {
					got.Write(pkt.GetData().GetData())
				}
			case <-time.After(300 * time.Millisecond):
				return
			}
		}
	}
	collect()
	g.Expect(got.Len()).To(Equal(credit.Window), "bytes the agent sent before any grant")
	g.Expect(stream.Send(credit.WindowPacket(connID, credit.Window))).To(Succeed())
	collect()
	g.Expect(got.Len()).To(Equal(2*credit.Window), "bytes after a grant of one window")
	g.Expect(stream.Send(credit.WindowPacket(connID, credit.Window))).To(Succeed())
	collect()
	g.Expect(bytes.Equal(got.Bytes(), payload)).To(BeTrue(), "all bytes, in order (got %d)", got.Len())

	// The other way: a window of data to the backend comes back as
	// grants once the backend has read it.
	toBackend := make([]byte, credit.Window)
	_, _ = rand.Read(toBackend)
	for off := 0; off < len(toBackend); off += credit.MaxData {
		g.Expect(stream.Send(&client.Packet{Type: client.PacketType_DATA, Payload: &client.Packet_Data{
			Data: &client.Data{ConnectID: connID, Data: toBackend[off : off+credit.MaxData]}}})).To(Succeed())
	}
	var backendGot []byte
	g.Eventually(read).WithTimeout(10 * time.Second).Should(Receive(&backendGot))
	g.Expect(bytes.Equal(backendGot, toBackend)).To(BeTrue())
	granted := 0
	g.Eventually(func() int {
		for {
			select {
			case pkt := <-packets:
				if _, n, ok := credit.ParseWindow(pkt); ok && pkt.Type == credit.PacketTypeWindow {
					granted += n
				}
			default:
				return granted
			}
		}
	}).WithTimeout(5*time.Second).Should(Equal(credit.Window), "credit the agent granted for what the backend read")
}
