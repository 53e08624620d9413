package server

import (
	"sync"
	"time"

	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"

	"open-cluster-management.io/cluster-proxy/internal/tunnel/credit"
)

// route is a connection of an agent that agreed on per-connection credit
// (package credit). What the agent sends for it is queued here and handed
// to the frontend by a drainer of its own, so a frontend that stops
// reading holds up this connection only; the agent's credit bounds the
// queue. What the frontend sends goes to the agent within the credit the
// agent granted.
type route struct {
	f      *frontend
	b      *backend
	connID int64
	// toAgent is the credit for DATA to the agent.
	toAgent *credit.Account
	// closed is closed once the connection is gone, which wakes a
	// frontend waiting for credit.
	closed    chan struct{}
	closeOnce sync.Once

	mu sync.Mutex
	// queue holds the packets for the frontend (DATA and the final
	// CLOSE_RSP) in order; queued counts their DATA bytes.
	queue  []*client.Packet
	queued int
	// draining is set while a drainer runs; wake tells it about more;
	// sending is set while it hands a packet on.
	draining, sending bool
	wake              chan struct{}
	// receipt counts the bytes handed to the frontend (only the drainer
	// uses it).
	receipt credit.Receipt
}

func newRoute(f *frontend, b *backend, connID int64) *route {
	return &route{f: f, b: b, connID: connID, toAgent: credit.NewAccount(), closed: make(chan struct{}),
		wake: make(chan struct{}, 1)}
}

// idle reports whether everything pushed was handed on (or dropped).
func (r *route) idle() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue) == 0 && !r.sending
}

// close wakes whoever waits for the route's credit; queued packets are
// still handed on.
func (r *route) close() {
	r.closeOnce.Do(func() { close(r.closed) })
}

// push queues pkt, whose DATA is size bytes, for the frontend. It reports
// false when the queue now holds more than the agent's credit allowed.
func (r *route) push(pkt *client.Packet, size int) bool {
	r.mu.Lock()
	r.queue = append(r.queue, pkt)
	r.queued += size
	over := r.queued > credit.Window
	start := !r.draining
	r.draining = true
	r.mu.Unlock()
	if start {
		go r.drain()
	} else {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	return !over
}

// drainLinger is how long a drainer waits for more before it exits: a
// connection that streams keeps one drainer, an idle or closed one has
// none.
const drainLinger = 50 * time.Millisecond

// drain hands the queue to the frontend in order, granting the agent
// credit for the DATA handed on, until it stayed empty for drainLinger.
func (r *route) drain() {
	idle := time.NewTimer(drainLinger)
	defer idle.Stop()
	for {
		r.mu.Lock()
		if len(r.queue) == 0 {
			r.mu.Unlock()
			idle.Reset(drainLinger)
			select {
			case <-r.wake:
				continue
			case <-idle.C:
			case <-r.closed:
				// Nothing more comes but what push restarts a drainer for.
			}
			r.mu.Lock()
			if len(r.queue) == 0 {
				r.draining = false
				r.mu.Unlock()
				return
			}
			r.mu.Unlock()
			continue
		}
		pkt := r.queue[0]
		r.queue[0] = nil
		r.queue = r.queue[1:]
		size := len(pkt.GetData().GetData())
		r.queued -= size
		r.sending = true
		r.mu.Unlock()
		// The queue holds the agent's DATA and CLOSE_RSP, which nothing
		// reads after this.
		err := r.f.forward(pkt)
		if err == nil && size > 0 {
			if grant := r.receipt.Delivered(size); grant > 0 {
				_ = r.b.send(credit.WindowPacket(r.connID, grant))
			}
		}
		r.mu.Lock()
		r.sending = false
		if err != nil {
			// The frontend is gone; removeFrontend closes the connection.
			r.queue, r.queued, r.draining = nil, 0, false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
	}
}

// toAgentData sends the frontend's data (a received packet's, which
// nothing reads after this) to the agent within the credit, waiting for
// more when it runs out (which holds up this frontend's stream only). It
// gives up when the connection or the frontend is gone.
func (r *route) toAgentData(data []byte) {
	for first := true; len(data) > 0; first = false {
		n := r.toAgent.Take(min(len(data), credit.MaxData), r.closed, r.f.stream.Context().Done())
		if n == 0 {
			return
		}
		pkt := dataPacket(r.connID, data[:n])
		var err error
		if first && n == len(data) {
			// Sent whole: gRPC may recycle the bytes once written. Parts
			// of split data are left to the garbage collector.
			err = r.b.forward(pkt)
		} else {
			err = r.b.send(pkt)
		}
		if err != nil {
			return
		}
		data = data[n:]
	}
}

func dataPacket(connID int64, data []byte) *client.Packet {
	return &client.Packet{Type: client.PacketType_DATA, Payload: &client.Packet_Data{
		Data: &client.Data{ConnectID: connID, Data: data}}}
}
