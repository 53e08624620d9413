package wire

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
)

func dataPacket(typ client.PacketType, connID int64, errText string, data []byte) *client.Packet {
	return &client.Packet{Type: typ, Payload: &client.Packet_Data{Data: &client.Data{ConnectID: connID, Error: errText, Data: data}}}
}

// packets are the test's packets: DATA of every size class, negative and
// extreme fields, and non-DATA payloads.
func packets() []*client.Packet {
	return []*client.Packet{
		dataPacket(client.PacketType_DATA, 1, "", []byte("x")),
		dataPacket(client.PacketType_DATA, 0, "", nil),
		dataPacket(client.PacketType_DATA, 7, "", []byte{}),
		dataPacket(0, -1, "", []byte("type zero, negative connect ID")),
		dataPacket(client.PacketType(-3), 1<<62, "", []byte("negative type")),
		dataPacket(client.PacketType(100), 42, "", []byte{0x80, 0x01}),
		dataPacket(client.PacketType_DATA, 3, "broken pipe", nil),
		dataPacket(client.PacketType_DATA, 3, "ünïcode", bytes.Repeat([]byte{7}, 4<<10+1)),
		dataPacket(client.PacketType_DATA, 9, "", bytes.Repeat([]byte{1, 2, 3}, 1<<20)),
		{Type: client.PacketType_DIAL_REQ, Payload: &client.Packet_DialRequest{DialRequest: &client.DialRequest{Protocol: "tcp", Address: "host:443", Random: 5}}},
		{Type: client.PacketType_CLOSE_RSP, Payload: &client.Packet_CloseResponse{CloseResponse: &client.CloseResponse{ConnectID: 4, Error: "gone"}}},
		{Type: client.PacketType_DRAIN, Payload: &client.Packet_Drain{Drain: &client.Drain{}}},
		{},
	}
}

// TestMarshalDecodesWithProtobuf checks that what Marshal writes, owned or
// not, is what protobuf decodes into the same packet, and that Unmarshal
// gives back the same packet.
func TestMarshalDecodesWithProtobuf(t *testing.T) {
	for i, pkt := range packets() {
		for _, v := range []any{pkt, Owned{Packet: pkt}, Owned{Packet: pkt, Recycle: true}} {
			enc, err := Codec{}.Marshal(v)
			if err != nil {
				t.Fatalf("packet %d (%T): Marshal: %v", i, v, err)
			}
			raw := enc.Materialize()
			var viaProto client.Packet
			if err := proto.Unmarshal(raw, &viaProto); err != nil {
				t.Fatalf("packet %d (%T): protobuf cannot decode it: %v", i, v, err)
			}
			if !proto.Equal(&viaProto, pkt) {
				t.Fatalf("packet %d (%T): protobuf decodes %v, want %v", i, v, &viaProto, pkt)
			}
			checkLikeProtobuf(t, raw)
		}
	}
}

// TestOwnedDataIsNotCopied is the witness that an owned packet's data goes
// to gRPC as it is, and that anything else is copied: changing the
// sender's bytes afterwards shows through only for the owned one.
func TestOwnedDataIsNotCopied(t *testing.T) {
	for _, size := range []int{10, 64 << 10} {
		data := bytes.Repeat([]byte{'a'}, size)
		pkt := dataPacket(client.PacketType_DATA, 1, "", data)
		owned, err := Codec{}.Marshal(Owned{Packet: pkt})
		if err != nil {
			t.Fatal(err)
		}
		copied, err := Codec{}.Marshal(pkt)
		if err != nil {
			t.Fatal(err)
		}
		data[0] = 'b'
		if got := owned.Materialize(); got[len(got)-size] != 'b' {
			t.Errorf("%d bytes: the owned packet's data was copied", size)
		}
		if got := copied.Materialize(); got[len(got)-size] != 'a' {
			t.Errorf("%d bytes: the packet's data was not copied", size)
		}
		copied.Free()
	}
}

// TestUnmarshalAliasesOneCopy checks that a DATA packet's Data is a copy
// of the received bytes (gRPC reuses its buffers) made once: Data shares
// the buffer the whole message was copied into, and cannot be appended
// into it.
func TestUnmarshalAliasesOneCopy(t *testing.T) {
	raw, err := proto.Marshal(dataPacket(client.PacketType_DATA, 5, "", []byte("hello, tunnel")))
	if err != nil {
		t.Fatal(err)
	}
	split := len(raw) - 4
	first, second := bytes.Clone(raw[:split]), bytes.Clone(raw[split:])
	var pkt client.Packet
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(first), mem.SliceBuffer(second)}, &pkt); err != nil {
		t.Fatal(err)
	}
	got := pkt.GetData().GetData()
	if string(got) != "hello, tunnel" {
		t.Fatalf("Data = %q", got)
	}
	first[len(first)-1], second[0] = 'X', 'Y'
	if string(got) != "hello, tunnel" {
		t.Fatalf("Data changed with gRPC's buffers: %q", got)
	}
	if cap(got) != len(got) {
		t.Fatalf("Data has capacity %d beyond its %d bytes", cap(got), len(got))
	}
}

// TestUnusualEncodingsFallBack checks packets protobuf accepts but the
// fast path does not take (fields out of order, repeated, unknown, an
// invalid UTF-8 error), and malformed ones protobuf refuses: Unmarshal
// gives exactly what protobuf gives.
func TestUnusualEncodingsFallBack(t *testing.T) {
	data := func(fields ...[]byte) []byte {
		inner := bytes.Join(fields, nil)
		b := protowire.AppendTag(nil, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(client.PacketType_DATA))
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		return protowire.AppendBytes(b, inner)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	bytesField := func(num protowire.Number, v string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	cases := map[string][]byte{
		"data before connectID":   data(bytesField(3, "abc"), varint(1, 9)),
		"data twice":              data(bytesField(3, "abc"), bytesField(3, "def")),
		"unknown field":           data(varint(1, 9), varint(15, 1), bytesField(3, "abc")),
		"invalid UTF-8 error":     data(varint(1, 9), bytesField(2, "\xff\xfe")),
		"type after payload":      append(data(varint(1, 9)), varint(1, 2)...),
		"two payloads":            append(data(varint(1, 9)), data(bytesField(3, "z"))...),
		"truncated":               data(varint(1, 9), bytesField(3, "abc"))[:9],
		"connectID as bytes":      data(bytesField(1, "abc")),
		"packet type overflowing": append(varint(1, 1<<40), data(bytesField(3, "abc"))[2:]...),
		"empty":                   {},
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			checkLikeProtobuf(t, raw)
		})
	}
}

// checkLikeProtobuf checks that Unmarshal decodes raw exactly as protobuf
// does, in one buffer and split in two.
func checkLikeProtobuf(t *testing.T, raw []byte) {
	t.Helper()
	var want client.Packet
	wantErr := proto.Unmarshal(raw, &want)
	// Split in the middle, and within the header (which then spans two of
	// gRPC's buffers).
	for _, split := range []int{len(raw), len(raw) / 2, min(len(raw), 3)} {
		in := mem.BufferSlice{mem.SliceBuffer(bytes.Clone(raw[:split]))}
		if split < len(raw) {
			in = append(in, mem.SliceBuffer(bytes.Clone(raw[split:])))
		}
		for _, c := range []Codec{{}, {Pool: true}} {
			var got client.Packet
			err := c.Unmarshal(in, &got)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("% x: Unmarshal (pool %t) error %v, protobuf's %v", raw, c.Pool, err, wantErr)
			}
			if err == nil && !proto.Equal(&got, &want) {
				t.Fatalf("% x: Unmarshal (pool %t) gives %v, protobuf %v", raw, c.Pool, &got, &want)
			}
		}
	}
}

// TestOtherMessagesUseProtobuf checks that a message other than Packet
// goes through gRPC's protobuf codec both ways.
func TestOtherMessagesUseProtobuf(t *testing.T) {
	enc, err := Codec{}.Marshal(&client.DialRequest{Address: "a:1"})
	if err != nil {
		t.Fatal(err)
	}
	var out client.DialRequest
	if err := (Codec{}).Unmarshal(enc, &out); err != nil || out.Address != "a:1" {
		t.Fatalf("DialRequest: %v, %v", &out, err)
	}
	if _, err := (Codec{}).Marshal(struct{}{}); err == nil {
		t.Fatal("Marshal of a non-message: no error")
	}
}

// TestLargePayloadsArePooled checks payloads of MinPooled bytes and more,
// split over gRPC's buffers as frames deliver them: Data is the payload
// alone in a pooled buffer, Release gives it back and a later packet gets
// it again (sync.Pool drops some items, more so with -race: one reuse in
// 20 is the witness), and a recycled Owned packet's bytes come back once
// gRPC frees what Marshal returned.
func TestLargePayloadsArePooled(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 5<<10) // 80 KiB
	raw, err := proto.Marshal(dataPacket(client.PacketType_DATA, 77, "", payload))
	if err != nil {
		t.Fatal(err)
	}
	frames := func() mem.BufferSlice {
		var in mem.BufferSlice
		for rest := raw; len(rest) > 0; {
			n := min(len(rest), 16<<10)
			in = append(in, mem.SliceBuffer(bytes.Clone(rest[:n])))
			rest = rest[n:]
		}
		return in
	}
	reused, recycled := 0, 0
	for range 20 {
		var pkt client.Packet
		if err := (Codec{Pool: true}).Unmarshal(frames(), &pkt); err != nil {
			t.Fatal(err)
		}
		got := pkt.GetData().GetData()
		if !bytes.Equal(got, payload) || pkt.GetData().GetConnectID() != 77 {
			t.Fatalf("decoded %d bytes of connection %d", len(got), pkt.GetData().GetConnectID())
		}
		if cap(got) != 128<<10 {
			t.Fatalf("the payload's buffer holds %d bytes, want its class's 128 KiB", cap(got))
		}
		Release(got)
		var again client.Packet
		if err := (Codec{Pool: true}).Unmarshal(frames(), &again); err != nil {
			t.Fatal(err)
		}
		next := again.GetData().GetData()
		if &next[0] == &got[0] {
			reused++
		}
		enc, err := Codec{}.Marshal(Owned{Packet: &again, Recycle: true})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc.Materialize(), raw) {
			t.Fatal("the recycled packet was not encoded as protobuf does")
		}
		enc.Free()
		if b := getBuffer(len(payload)); &b[0] == &next[0] {
			recycled++
		}
	}
	if reused == 0 || recycled == 0 {
		t.Fatalf("in 20 rounds a released buffer was reused %d times, a recycled one %d times", reused, recycled)
	}
}

// TestReleaseLeavesOtherBuffersAlone checks that Release keeps only
// buffers of a pooled size.
func TestReleaseLeavesOtherBuffersAlone(t *testing.T) {
	for _, c := range []int{100, MinPooled - 1, MinPooled + 1, 3 << 20, 8 << 20} {
		b := make([]byte, c)
		Release(b)
		k, ok := classOf(c)
		if !ok {
			continue
		}
		for range 10 {
			if got, _ := pools[k].Get().(*[]byte); got != nil && &(*got)[0] == &b[0] {
				t.Fatalf("a buffer of %d bytes was pooled", c)
			}
		}
	}
}

// FuzzUnmarshal feeds arbitrary bytes to Unmarshal: it never panics and
// decodes exactly what protobuf decodes (or fails where protobuf fails),
// and what it decoded Marshals back to bytes protobuf decodes the same.
func FuzzUnmarshal(f *testing.F) {
	for _, pkt := range packets() {
		raw, err := proto.Marshal(pkt)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkLikeProtobuf(t, raw)
		var pkt client.Packet
		if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, &pkt); err != nil {
			return
		}
		for _, v := range []any{&pkt, Owned{Packet: &pkt}} {
			enc, err := Codec{}.Marshal(v)
			if err != nil {
				t.Fatalf("Marshal of a decoded packet: %v", err)
			}
			var back client.Packet
			if err := proto.Unmarshal(enc.Materialize(), &back); err != nil || !proto.Equal(&back, &pkt) {
				t.Fatalf("% x: re-encoded as % x, which protobuf decodes to %v (%v), want %v", raw, enc.Materialize(), &back, err, &pkt)
			}
		}
	})
}
