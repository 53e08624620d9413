package server

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
	"sigs.k8s.io/apiserver-network-proxy/proto/header"

	"open-cluster-management.io/cluster-proxy/internal/tunnel/datastream"
)

const (
	// linkIDBase is the first connection ID the server gives connections
	// on data streams, far above the IDs agents number their own with, so
	// both kinds can share a frontend stream.
	linkIDBase = 1 << 52
	// linkQueue is how many DATA packets of a frontend wait for a data
	// stream whose window is full before the frontend's stream waits too.
	linkQueue = 4
	// linkAbortTimeout bounds how long a connection the frontend closed
	// may take to hand its last bytes to the agent; then the agent is told
	// to drop it (a backend that stopped reading holds it otherwise).
	linkAbortTimeout = 10 * time.Second
)

// link is a connection carried by a data stream of its own (package
// datastream) between the agent and this server.
type link struct {
	frontend *frontend
	backend  *backend
	// random is the dial the link answered; the agent knows the link by it.
	random int64
	// connID is the ID the frontend knows the connection by.
	connID int64
	// in carries the frontend's DATA to the Accept handler, the only
	// sender on the stream.
	in chan []byte
	// done is closed when the frontend closed the connection or went away:
	// the handler sends what is queued and ends the stream.
	done      chan struct{}
	closeOnce sync.Once
	// ended is closed when the stream's receiving side ended (the agent
	// ended the stream, or it failed): the handler returns.
	ended chan struct{}
	// finished is closed when the Accept handler returns.
	finished chan struct{}
}

// Accept serves a data stream an agent opened to answer a dial: it
// carries the connection's bytes between the stream and the dial's
// frontend until either side ends.
func (s *Server) Accept(stream grpc.ServerStream) error {
	ctx := stream.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	agentID := first(md.Get(header.AgentID))
	random, ok := datastream.DialIDOf(md)
	if !ok {
		return status.Error(codes.InvalidArgument, "the data stream names no dial")
	}
	l, err := s.openLink(stream, agentID, random)
	if err != nil {
		return err
	}
	// The headers tell the agent its stream is accepted.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		s.dropLink(l)
		_ = l.frontend.send(closeResponse(l.connID, "the connection's stream to the agent failed"))
		return err
	}
	logger := klog.FromContext(ctx).WithValues("agentID", agentID, "connectionID", l.connID)
	defer close(l.finished)

	// The bytes from the agent go to the frontend from a goroutine of
	// their own; when the stream ends it ends too, having sent the
	// frontend its CLOSE_RSP after the last DATA.
	go s.linkToFrontend(stream, l)
	for {
		select {
		case data := <-l.in:
			if err := stream.SendMsg(&datastream.Message{Value: data}); err != nil {
				logger.V(3).Info("A data stream failed", "err", err.Error())
				return nil
			}
		case <-l.done:
			// Queued bytes first: the frontend wrote them before it closed.
			for {
				select {
				case data := <-l.in:
					if err := stream.SendMsg(&datastream.Message{Value: data}); err != nil {
						return nil
					}
				default:
					return nil
				}
			}
		case <-l.ended:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// openLink takes the pending dial random for the data stream an agent
// opened, checks that the agent the dial went to opened it, and tells the
// frontend its connection is up.
func (s *Server) openLink(stream grpc.ServerStream, agentID string, random int64) (*link, error) {
	s.mu.Lock()
	pd := s.pending[random]
	s.mu.Unlock()
	if pd == nil || !pd.backend.streams || pd.backend.id != agentID {
		return nil, status.Errorf(codes.NotFound, "dial %d is not pending for agent %s", random, agentID)
	}
	// The certificate the agent's Connect stream was admitted with would
	// do; this stream may come on a new TLS connection, so it is checked
	// against the same rule.
	if s.opts.Authorize != nil {
		if err := s.opts.Authorize(peerCertificate(stream.Context()), agentID, pd.backend.rawIdentifiers); err != nil {
			return nil, status.Errorf(codes.PermissionDenied, "data stream of agent %s refused: %v", agentID, err)
		}
	}
	l := &link{frontend: pd.frontend, backend: pd.backend, random: random, in: make(chan []byte, linkQueue),
		done: make(chan struct{}), ended: make(chan struct{}), finished: make(chan struct{})}
	s.mu.Lock()
	if s.pending[random] != pd {
		s.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "dial %d is no longer pending", random)
	}
	s.dropPendingLocked(random, pd)
	l.connID = s.nextLinkID
	s.nextLinkID++
	pd.frontend.links[l.connID] = l
	s.links++
	s.mu.Unlock()
	klog.FromContext(stream.Context()).V(3).Info("Dial answered by a data stream", "dialID", random,
		"connectionID", l.connID, "address", pd.address, "duration", time.Since(pd.start))
	if err := l.frontend.send(dialResponse(random, l.connID, "")); err != nil {
		s.dropLink(l)
		return nil, status.Error(codes.Unavailable, "the dial's frontend is gone")
	}
	return l, nil
}

// linkToFrontend sends what the agent writes on stream to l's frontend
// until the stream ends, then ends the connection at the frontend.
func (s *Server) linkToFrontend(stream grpc.ServerStream, l *link) {
	defer close(l.ended)
	var err error
	for {
		var m datastream.Message
		if err = stream.RecvMsg(&m); err != nil {
			break
		}
		if len(m.Value) == 0 {
			continue
		}
		if err = l.frontend.send(dataPacket(l.connID, m.Value)); err != nil {
			break
		}
	}
	// The agent ended the stream (its backend closed), or the stream
	// failed, or the frontend closed the connection and the handler ended
	// the stream: either way the frontend learns it after the last DATA.
	s.dropLink(l)
	msg := ""
	if !errors.Is(err, io.EOF) && status.Code(err) != codes.Canceled {
		select {
		case <-l.done:
		default:
			msg = fmt.Sprintf("the connection's stream to agent %s failed: %v", l.backend.id, err)
		}
	}
	_ = l.frontend.send(closeResponse(l.connID, msg))
}

// toLink hands a frontend's DATA to its link, waiting while the link's
// queue is full.
func (l *link) toLink(data []byte) {
	select {
	case l.in <- data:
	case <-l.done:
	case <-l.ended:
	case <-l.finished:
	case <-l.frontend.stream.Context().Done():
	}
}

// dropLink forgets l; it reports whether l was still known.
func (s *Server) dropLink(l *link) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropLinkLocked(l)
}

func (s *Server) dropLinkLocked(l *link) bool {
	if l.frontend.links[l.connID] != l {
		return false
	}
	delete(l.frontend.links, l.connID)
	s.links--
	return true
}

// closeLink ends l for its frontend (CLOSE_REQ, or the frontend went
// away): the handler sends what is queued and ends the stream, which
// the agent takes as the close. When that does not happen in time (the
// backend stopped reading), the agent is told to drop the connection.
func (s *Server) closeLink(l *link) {
	l.closeOnce.Do(func() {
		close(l.done)
		go func() {
			timer := time.NewTimer(linkAbortTimeout)
			defer timer.Stop()
			select {
			case <-l.finished:
			case <-timer.C:
				_ = l.backend.send(dialClose(l.random))
			}
		}()
	})
}

func dialClose(random int64) *client.Packet {
	return &client.Packet{Type: client.PacketType_DIAL_CLS, Payload: &client.Packet_CloseDial{
		CloseDial: &client.CloseDial{Random: random}}}
}

func dataPacket(connID int64, data []byte) *client.Packet {
	return &client.Packet{Type: client.PacketType_DATA, Payload: &client.Packet_Data{
		Data: &client.Data{ConnectID: connID, Data: data}}}
}
