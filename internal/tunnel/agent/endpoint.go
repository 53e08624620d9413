package agent

import (
	"net"
	"sync"
	"time"

	"open-cluster-management.io/cluster-proxy/internal/tunnel/credit"
	"open-cluster-management.io/cluster-proxy/pkg/client/wire"
)

// endpoint is one backend connection.
type endpoint struct {
	sc   *serverConn
	id   int64
	conn net.Conn
	// sendCredit is the credit for DATA to the server; nil without the
	// credit extension.
	sendCredit *credit.Account
	// receipt counts what the writer handed to the backend, for the
	// server's credit (only the writer uses it).
	receipt credit.Receipt

	mu sync.Mutex
	// queue is what the server sent and the writer has not written yet;
	// queued counts its bytes.
	queue  [][]byte
	queued int
	// finishing is set once the connection was closed by the server: the
	// writer writes what is queued, then closes it.
	finishing bool
	// wake tells the writer about new data or finishing; room tells a
	// serve loop waiting on a full queue (no credit) that the writer took
	// from it.
	wake, room chan struct{}

	done                  chan struct{}
	closeOnce, finishOnce sync.Once
}

func newEndpoint(sc *serverConn, id int64, conn net.Conn) *endpoint {
	sc.agent.open.Add(1)
	ep := &endpoint{sc: sc, id: id, conn: conn, wake: make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan struct{})}
	if sc.credit {
		ep.sendCredit = credit.NewAccount()
	}
	return ep
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// enqueue hands data to the connection's writer. With credit it never
// waits, and reports false when the server sent more than the credit it
// had; without, it waits while queueSize packets are queued. Data for a
// closed connection is dropped.
func (ep *endpoint) enqueue(data []byte) bool {
	for {
		ep.mu.Lock()
		if ep.sendCredit != nil {
			ep.queue = append(ep.queue, data)
			ep.queued += len(data)
			over := ep.queued > credit.Window
			ep.mu.Unlock()
			signal(ep.wake)
			return !over
		}
		if len(ep.queue) < queueSize {
			ep.queue = append(ep.queue, data)
			ep.queued += len(data)
			ep.mu.Unlock()
			signal(ep.wake)
			return true
		}
		ep.mu.Unlock()
		select {
		case <-ep.room:
		case <-ep.done:
			return true
		}
	}
}

// finish ends the queue: the writer writes what is queued, then closes the
// connection. Only the stream's serve loop enqueues, and it forgets the
// connection before it calls finish, so nothing is enqueued afterwards.
func (ep *endpoint) finish() {
	ep.finishOnce.Do(func() {
		_ = ep.conn.SetWriteDeadline(time.Now().Add(finishTimeout))
		ep.mu.Lock()
		ep.finishing = true
		ep.mu.Unlock()
		signal(ep.wake)
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

// write writes queued data to the backend until the connection is closed
// or finished, granting the server credit for what it wrote.
func (ep *endpoint) write() {
	for {
		ep.mu.Lock()
		batch, finishing := ep.queue, ep.finishing
		ep.queue = nil
		ep.mu.Unlock()
		signal(ep.room)
		for _, data := range batch {
			_, err := ep.conn.Write(data)
			n := len(data)
			// The bytes were a received packet's, held only here.
			wire.Release(data)
			if err != nil {
				ep.close()
				return
			}
			ep.mu.Lock()
			ep.queued -= n
			ep.mu.Unlock()
			if ep.sendCredit != nil {
				if grant := ep.receipt.Delivered(n); grant > 0 {
					_ = ep.sc.send(credit.WindowPacket(ep.id, grant))
				}
			}
		}
		if len(batch) > 0 {
			continue
		}
		if finishing {
			ep.close()
			return
		}
		select {
		case <-ep.wake:
		case <-ep.done:
			return
		}
	}
}

// run writes queued data to the backend and sends what it reads to the
// server, until either side ends; a backend that ends first is reported
// with CLOSE_RSP.
func (ep *endpoint) run() {
	go ep.write()
	r := newChunkReader(ep.conn)
	defer r.release()
	for {
		chunk, err := r.read()
		if !ep.sendData(chunk) {
			break
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

// sendData sends chunk to the server, within the credit when there is
// one; it reports false when the connection or stream is gone.
func (ep *endpoint) sendData(chunk []byte) bool {
	for len(chunk) > 0 {
		n := len(chunk)
		if ep.sendCredit != nil {
			if n = ep.sendCredit.Take(n, ep.done, nil); n == 0 {
				return false
			}
		}
		// Send marshals the packet before it returns: the chunk's buffer
		// is free again.
		if err := ep.sc.send(dataPacket(ep.id, chunk[:n])); err != nil {
			return false
		}
		chunk = chunk[n:]
	}
	return true
}
