package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"k8s.io/klog/v2"
	"sigs.k8s.io/apiserver-network-proxy/proto/header"

	"open-cluster-management.io/cluster-proxy/internal/tunnel/datastream"
)

// errServerGone is the error of a link opened after its server's
// stream ended.
var errServerGone = errors.New("the stream to the proxy-server has ended")

// link is a backend connection carried by a data stream of its own
// (package datastream), answering the dial random.
type link struct {
	sc     *serverConn
	random int64
	conn   net.Conn
	stream grpc.ClientStream
	cancel context.CancelFunc
	once   sync.Once
	closed chan struct{}
}

// openLink opens the data stream answering dial random for conn, the
// backend connection just dialled, and registers it.
func (sc *serverConn) openLink(ctx context.Context, random int64, conn net.Conn) (*link, error) {
	streamCtx, cancel := context.WithCancel(ctx)
	stream, err := datastream.Open(streamCtx, sc.conn, random, metadata.Pairs(header.AgentID, sc.agent.opts.AgentID))
	if err != nil {
		cancel()
		return nil, err
	}
	l := &link{sc: sc, random: random, conn: conn, stream: stream, cancel: cancel, closed: make(chan struct{})}
	sc.mu.Lock()
	if sc.closed {
		sc.mu.Unlock()
		cancel()
		return nil, errServerGone
	}
	sc.links[random] = l
	sc.mu.Unlock()
	sc.agent.open.Add(1)
	return l, nil
}

// run carries bytes between the backend and the stream until either ends.
// The backend's EOF ends the stream's sending side (the server closes the
// connection at the frontend and ends the stream); the stream's end
// closes the backend after what came before it is written.
func (l *link) run(ctx context.Context) {
	go func() {
		defer l.close()
		// The server answers a stream it accepts with its headers; one it
		// refuses (the dial was cancelled, or the server does not serve
		// data streams after all) ends with a status alone, and the
		// dial's answer is a DIAL_RSP with that error.
		if md, err := l.stream.Header(); err != nil || md == nil {
			err = l.stream.RecvMsg(&datastream.Message{})
			_ = l.sc.send(dialResponse(l.random, 0, fmt.Sprintf("the proxy-server refused the connection's stream: %v", err)))
			return
		}
		for {
			var m datastream.Message
			if err := l.stream.RecvMsg(&m); err != nil {
				return
			}
			if _, err := l.conn.Write(m.Value); err != nil {
				klog.FromContext(ctx).V(3).Info("Failed to write to a backend", "dialID", l.random, "err", err.Error())
				return
			}
		}
	}()
	r := newChunkReader(l.conn)
	defer r.release()
	msg := &datastream.Message{}
	for {
		chunk, err := r.read()
		if len(chunk) > 0 {
			// SendMsg encodes the message before it returns: the chunk's
			// buffer is free again.
			msg.Value = chunk
			if sendErr := l.stream.SendMsg(msg); sendErr != nil {
				l.close()
				return
			}
		}
		if err != nil {
			break
		}
	}
	_ = l.stream.CloseSend()
	// The server ends the stream in turn, which closes the link; a server
	// that does not within finishTimeout is not waited for.
	timer := time.NewTimer(finishTimeout)
	defer timer.Stop()
	select {
	case <-l.closed:
	case <-timer.C:
		l.close()
	}
}

// close closes the backend connection and the stream (once).
func (l *link) close() {
	l.once.Do(func() {
		_ = l.conn.Close()
		l.cancel()
		close(l.closed)
		l.sc.mu.Lock()
		if l.sc.links[l.random] == l {
			delete(l.sc.links, l.random)
		}
		l.sc.mu.Unlock()
		l.sc.agent.open.Add(-1)
	})
}
