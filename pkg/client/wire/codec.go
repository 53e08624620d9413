// Package wire is the gRPC codec of cluster-proxy's proxy-server,
// proxy-agent and client library (package client's Dialer uses it). It
// speaks protobuf like gRPC's own codec, understood by every konnectivity
// peer, and moves the bytes of DATA packets, which carry everything a
// tunnel moves, with fewer copies:
//
//   - Unmarshal copies a received message once, into a buffer of its own,
//     and a DATA packet's Data aliases that buffer. gRPC's codec copies it
//     twice: into a pooled buffer, then into the bytes field protobuf
//     allocates.
//   - Marshal of an [Owned] packet hands its Data to gRPC without copying
//     it: a packet a proxy-server forwards was received whole and is not
//     used again. Other packets are copied once, as gRPC's codec does.
//
// Messages other than konnectivity's Packet, and packets whose encoding is
// not the plain one (unknown fields, fields repeated or out of order, an
// invalid error string), go through protobuf's own Marshal and Unmarshal,
// so the result is always the one protobuf gives.
package wire

import (
	"bytes"
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/proto/client"
)

// Field numbers of konnectivity's Packet and Data messages.
const (
	packetType  protowire.Number = 1
	packetData  protowire.Number = 4
	dataConnID  protowire.Number = 1
	dataError   protowire.Number = 2
	dataPayload protowire.Number = 3
)

// Codec is the codec; its Name is gRPC's protobuf codec's, so peers see
// the same content type. Use it with grpc.ForceServerCodecV2 and
// grpc.ForceCodecV2.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Owned is a packet whose sender gives up its Data: Marshal hands the
// bytes to gRPC, which writes them after SendMsg returned, so the sender
// must not change them afterwards. Send it with the stream's SendMsg.
type Owned struct{ *client.Packet }

// fallback is gRPC's protobuf codec.
func fallback() encoding.CodecV2 { return encoding.GetCodecV2(grpcproto.Name) }

// Name is "proto", gRPC's protobuf codec's name.
func (Codec) Name() string { return grpcproto.Name }

// Marshal encodes v. A DATA packet's Data is copied once, or not at all
// when v is Owned; everything else is encoded by gRPC's protobuf codec.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	var pkt *client.Packet
	owned := false
	switch m := v.(type) {
	case Owned:
		pkt, owned = m.Packet, true
	case *client.Packet:
		pkt = m
	default:
		return fallback().Marshal(v)
	}
	if pkt == nil {
		return fallback().Marshal((*client.Packet)(nil))
	}
	d := pkt.GetData()
	if d == nil || len(pkt.ProtoReflect().GetUnknown()) > 0 || len(d.ProtoReflect().GetUnknown()) > 0 {
		return fallback().Marshal(pkt)
	}
	header := appendDataHeader(make([]byte, 0, 48+len(d.Error)), pkt.Type, d)
	if owned && len(d.Data) > 0 {
		return mem.BufferSlice{mem.SliceBuffer(header), mem.SliceBuffer(d.Data)}, nil
	}
	size := len(header) + len(d.Data)
	if mem.IsBelowBufferPoolingThreshold(size) {
		return mem.BufferSlice{mem.SliceBuffer(append(header, d.Data...))}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	copy((*buf)[copy(*buf, header):], d.Data)
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// appendDataHeader appends the encoding of a packet of type typ with
// payload d, up to (not including) d's bytes, which follow it.
func appendDataHeader(b []byte, typ client.PacketType, d *client.Data) []byte {
	// protobuf leaves out fields holding their zero value.
	inner := 0
	if d.ConnectID != 0 {
		inner += protowire.SizeTag(dataConnID) + protowire.SizeVarint(uint64(d.ConnectID))
	}
	if d.Error != "" {
		inner += protowire.SizeTag(dataError) + protowire.SizeBytes(len(d.Error))
	}
	if len(d.Data) > 0 {
		inner += protowire.SizeTag(dataPayload) + protowire.SizeBytes(len(d.Data))
	}
	if typ != 0 {
		b = protowire.AppendTag(b, packetType, protowire.VarintType)
		// An enum is an int32, sign-extended like protobuf does.
		b = protowire.AppendVarint(b, uint64(int64(typ)))
	}
	b = protowire.AppendTag(b, packetData, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(inner))
	if d.ConnectID != 0 {
		b = protowire.AppendTag(b, dataConnID, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(d.ConnectID))
	}
	if d.Error != "" {
		b = protowire.AppendTag(b, dataError, protowire.BytesType)
		b = protowire.AppendString(b, d.Error)
	}
	if len(d.Data) > 0 {
		b = protowire.AppendTag(b, dataPayload, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(len(d.Data)))
	}
	return b
}

// Unmarshal decodes data into v. A Packet's message is copied once into a
// buffer of its own, which a DATA packet's Data aliases; other messages
// are decoded by gRPC's protobuf codec.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	pkt, ok := v.(*client.Packet)
	if !ok {
		return fallback().Unmarshal(data, v)
	}
	buf := materialize(data)
	if decodeData(buf, pkt) {
		return nil
	}
	if err := proto.Unmarshal(buf, pkt); err != nil {
		return fmt.Errorf("failed to decode a konnectivity packet: %w", err)
	}
	return nil
}

// materialize copies data into one new buffer. bytes.Join allocates it
// without zeroing it first (every byte is written).
func materialize(data mem.BufferSlice) []byte {
	if len(data) == 1 {
		return bytes.Clone(data[0].ReadOnlyData())
	}
	parts := make([][]byte, len(data))
	for i, b := range data {
		parts[i] = b.ReadOnlyData()
	}
	return bytes.Join(parts, nil)
}

// decodeData decodes buf into pkt when it is a packet with a Data payload
// in the plain encoding: Packet's type (optional), then its data, and
// within that connectID, error and data, each optional and in this order.
// It reports false, leaving pkt for protobuf to decode, otherwise.
func decodeData(buf []byte, pkt *client.Packet) bool {
	var typ uint64
	num, wt, n := protowire.ConsumeTag(buf)
	if n < 0 {
		return false
	}
	if num == packetType && wt == protowire.VarintType {
		if typ, n = consumeVarint(buf, n); n < 0 {
			return false
		}
		buf = buf[n:]
		if num, wt, n = protowire.ConsumeTag(buf); n < 0 {
			return false
		}
	}
	if num != packetData || wt != protowire.BytesType {
		return false
	}
	msg, m := protowire.ConsumeBytes(buf[n:])
	if m < 0 || n+m != len(buf) {
		return false
	}
	d := &client.Data{}
	last := protowire.Number(0)
	for len(msg) > 0 {
		num, wt, n := protowire.ConsumeTag(msg)
		if n < 0 || num <= last {
			return false
		}
		last = num
		switch {
		case num == dataConnID && wt == protowire.VarintType:
			var v uint64
			if v, n = consumeVarint(msg, n); n < 0 {
				return false
			}
			d.ConnectID = int64(v)
		case num == dataError && wt == protowire.BytesType:
			s, m := protowire.ConsumeBytes(msg[n:])
			if m < 0 || !utf8.Valid(s) {
				return false
			}
			d.Error = string(s)
			n += m
		case num == dataPayload && wt == protowire.BytesType:
			b, m := protowire.ConsumeBytes(msg[n:])
			if m < 0 {
				return false
			}
			// Full slice expression: an append to Data cannot reach past
			// it into the buffer.
			d.Data = b[:len(b):len(b)]
			n += m
		default:
			return false
		}
		msg = msg[n:]
	}
	pkt.Reset()
	pkt.Type = client.PacketType(int32(typ))
	pkt.Payload = &client.Packet_Data{Data: d}
	return true
}

// consumeVarint decodes the varint after a tag of n bytes at the start of
// b, returning it and the bytes both take (negative when malformed).
func consumeVarint(b []byte, n int) (uint64, int) {
	v, m := protowire.ConsumeVarint(b[n:])
	if m < 0 {
		return 0, m
	}
	return v, n + m
}
