package credit

import (
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
)

func TestWindowPacketRoundTrip(t *testing.T) {
	id, n, ok := ParseWindow(WindowPacket(7, 12345))
	if !ok || id != 7 || n != 12345 {
		t.Fatalf("ParseWindow(WindowPacket(7, 12345)) = %d, %d, %v", id, n, ok)
	}
	for name, pkt := range map[string]*client.Packet{
		"no payload":     {Type: PacketTypeWindow},
		"zero credit":    WindowPacket(7, 0),
		"too much":       WindowPacket(7, 2*Window+1),
		"trailing bytes": {Type: PacketTypeWindow, Payload: &client.Packet_Data{Data: &client.Data{ConnectID: 7, Data: []byte{1, 0}}}},
		"truncated":      {Type: PacketTypeWindow, Payload: &client.Packet_Data{Data: &client.Data{ConnectID: 7, Data: []byte{0x80}}}},
	} {
		if _, _, ok := ParseWindow(pkt); ok {
			t.Errorf("%s: ParseWindow accepted it", name)
		}
	}
}

func TestOffered(t *testing.T) {
	if !Offered(metadata.Pairs(Offer, Version)) {
		t.Error("the offer of this version was not recognised")
	}
	if Offered(metadata.Pairs(Offer, "v0")) || Offered(metadata.MD{}) {
		t.Error("another version, or none, was taken as an offer")
	}
}

func TestAccountTakesOnlyWhatWasGranted(t *testing.T) {
	a := NewAccount()
	if n := a.Take(Window+1, nil, nil); n != Window {
		t.Fatalf("the first take got %d, want the whole window %d", n, Window)
	}
	done := make(chan struct{})
	got := make(chan int, 1)
	go func() { got <- a.Take(100, done, nil) }()
	select {
	case n := <-got:
		t.Fatalf("a take without credit returned %d", n)
	case <-time.After(50 * time.Millisecond):
	}
	a.Grant(40)
	if n := <-got; n != 40 {
		t.Fatalf("after a grant of 40 the take got %d", n)
	}
	go func() { got <- a.Take(100, nil, done) }()
	close(done)
	if n := <-got; n != 0 {
		t.Fatalf("a take stopped by its channel got %d, want 0", n)
	}
}

func TestReceiptGrantsInBatches(t *testing.T) {
	var r Receipt
	if g := r.Delivered(GrantThreshold - 1); g != 0 {
		t.Fatalf("granted %d below the threshold", g)
	}
	if g := r.Delivered(2); g != GrantThreshold+1 {
		t.Fatalf("granted %d at the threshold, want everything delivered (%d)", g, GrantThreshold+1)
	}
	if g := r.Delivered(1); g != 0 {
		t.Fatalf("granted %d right after a grant", g)
	}
}
