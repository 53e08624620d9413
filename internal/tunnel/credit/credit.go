// Package credit is cluster-proxy's flow-control extension of the
// konnectivity agent protocol: per-connection credit on the one stream an
// agent holds to a proxy-server, so a connection whose reader stops stalls
// only itself. With konnectivity's protocol alone, a DATA packet the other
// side cannot deliver yet blocks the whole stream, and with it every other
// connection of that agent.
//
// The agent offers the extension with the Offer header on its Connect
// stream; the server accepts by echoing it in its response headers.
// Against apiserver-network-proxy's binaries, which neither send nor echo
// it, both sides keep to konnectivity's protocol.
//
// Once agreed, each side may have at most Window bytes of DATA of a
// connection outstanding towards the other: it starts with Window bytes
// of credit per connection, spends a DATA packet's length on sending it,
// and gets credit back from the receiver's WINDOW packets, which the
// receiver sends once it has handed bytes on (to the backend, or to the
// frontend). Neither side ever has to stop reading the stream for one
// connection: what it holds for a connection is bounded by Window.
package credit

import (
	"encoding/binary"
	"sync"

	"google.golang.org/grpc/metadata"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
)

const (
	// Offer is the Connect stream header by which the agent offers the
	// extension and the server accepts it.
	Offer = "x-cluster-proxy-credit"
	// Version is the Offer header's value for this protocol. v2 has a
	// window of 4 MiB (v1's was 1 MiB): peers that disagree on the window
	// do not agree on the extension and keep to konnectivity's protocol.
	Version = "v2"
	// Window is the credit a connection starts with in each direction:
	// 4 MiB, chosen by measurement (`make bench`, docs/benchmarks.md): 1
	// MiB held a single download stream back by 5–50% on two cores, where
	// the receiver's grant waits behind the busy data path; it is also
	// what a stalled connection may hold queued on each side.
	Window = 4 << 20
	// GrantThreshold is how many delivered bytes a receiver collects
	// before it sends a WINDOW packet.
	GrantThreshold = Window / 4
	// MaxData is the most a sender puts in one DATA packet: less than the
	// window, so grants for earlier packets arrive while later ones are
	// on their way.
	MaxData = Window / 4

	// PacketTypeWindow is the WINDOW packet's type, outside konnectivity's
	// range; its payload is a Data packet whose data is the credit (a
	// uvarint) for its connection.
	PacketTypeWindow client.PacketType = 100
)

// Offered reports whether md (a Connect stream's request or response
// headers) carries the Offer header for this version.
func Offered(md metadata.MD) bool {
	for _, v := range md.Get(Offer) {
		if v == Version {
			return true
		}
	}
	return false
}

// WindowPacket grants n bytes of credit for connection connID.
func WindowPacket(connID int64, n int) *client.Packet {
	return &client.Packet{Type: PacketTypeWindow, Payload: &client.Packet_Data{
		Data: &client.Data{ConnectID: connID, Data: binary.AppendUvarint(nil, uint64(n))}}}
}

// ParseWindow returns the connection and credit of a WINDOW packet; ok is
// false for a malformed one.
func ParseWindow(pkt *client.Packet) (connID int64, n int, ok bool) {
	data := pkt.GetData()
	if data == nil {
		return 0, 0, false
	}
	v, size := binary.Uvarint(data.Data)
	if size <= 0 || size != len(data.Data) || v == 0 || v > 2*Window {
		return 0, 0, false
	}
	return data.ConnectID, int(v), true
}

// Account is one direction of a connection's credit at its sender:
// Take waits for credit, Grant adds what the receiver granted.
type Account struct {
	mu     sync.Mutex
	credit int
	wake   chan struct{}
}

// NewAccount returns an account holding Window bytes of credit.
func NewAccount() *Account {
	return &Account{credit: Window, wake: make(chan struct{}, 1)}
}

// Take waits until the account holds credit and takes up to want bytes of
// it; it returns 0 when done or stop is closed first (either may be nil).
// One goroutine takes from an account.
func (a *Account) Take(want int, done, stop <-chan struct{}) int {
	for {
		a.mu.Lock()
		if a.credit > 0 {
			n := min(a.credit, want)
			a.credit -= n
			a.mu.Unlock()
			return n
		}
		a.mu.Unlock()
		select {
		case <-a.wake:
		case <-done:
			return 0
		case <-stop:
			return 0
		}
	}
}

// Grant adds n bytes of credit and wakes the taker.
func (a *Account) Grant(n int) {
	a.mu.Lock()
	a.credit += n
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Receipt counts the bytes a receiver handed on and says when to grant
// them back. One goroutine uses a receipt.
type Receipt struct{ delivered int }

// Delivered records n bytes handed on and returns the credit to grant
// now: 0 until GrantThreshold bytes have collected.
func (r *Receipt) Delivered(n int) int {
	r.delivered += n
	if r.delivered < GrantThreshold {
		return 0
	}
	grant := r.delivered
	r.delivered = 0
	return grant
}
