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
		for _, v := range []any{pkt, Owned{pkt}} {
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
			var viaCodec client.Packet
			if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, &viaCodec); err != nil {
				t.Fatalf("packet %d (%T): Unmarshal: %v", i, v, err)
			}
			if !proto.Equal(&viaCodec, pkt) {
				t.Fatalf("packet %d (%T): Unmarshal gives %v, want %v", i, v, &viaCodec, pkt)
			}
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
		owned, err := Codec{}.Marshal(Owned{pkt})
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
	for _, split := range []int{len(raw), len(raw) / 2} {
		in := mem.BufferSlice{mem.SliceBuffer(bytes.Clone(raw[:split]))}
		if split < len(raw) {
			in = append(in, mem.SliceBuffer(bytes.Clone(raw[split:])))
		}
		var got client.Packet
		err := Codec{}.Unmarshal(in, &got)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("% x: Unmarshal error %v, protobuf's %v", raw, err, wantErr)
		}
		if err == nil && !proto.Equal(&got, &want) {
			t.Fatalf("% x: Unmarshal gives %v, protobuf %v", raw, &got, &want)
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
		for _, v := range []any{&pkt, Owned{&pkt}} {
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
