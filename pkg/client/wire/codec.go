// Package wire is the gRPC codec of cluster-proxy's proxy-server,
// proxy-agent and client library (package client's Dialer uses it). It
// speaks protobuf like gRPC's own codec, understood by every konnectivity
// peer, and moves the bytes of DATA packets, which carry everything a
// tunnel moves, with fewer copies:
//
//   - Unmarshal copies a DATA packet's bytes once, into a buffer of its
//     own (from a pool with Codec.Pool, for payloads of MinPooled bytes
//     and more). gRPC's codec copies them twice: into a pooled buffer,
//     then into the bytes field protobuf allocates.
//   - Marshal of an [Owned] packet hands its Data to gRPC without copying
//     it: a packet a proxy-server forwards was received whole and is not
//     used again. Other packets are copied once, as gRPC's codec does.
//   - [Release] gives a received payload's buffer back to the pool once
//     the proxy-agent wrote it to its backend; gRPC releases those of
//     Owned packets with Recycle once it wrote them. Without that the
//     garbage collector runs every few megabytes a tunnel moves.
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
type Codec struct {
	// Pool makes Unmarshal copy payloads of MinPooled bytes and more into
	// buffers of a pool, for a process that gives them back (Release);
	// without it each payload gets a buffer of its own, which the garbage
	// collector reclaims.
	Pool bool
}

var _ encoding.CodecV2 = Codec{}

// Owned is a packet whose sender gives up its Data: Marshal hands the
// bytes to gRPC, which writes them after SendMsg returned, so the sender
// must not change them afterwards. Send it with the stream's SendMsg.
type Owned struct {
	*client.Packet
	// Recycle says the Data is a received packet's and nothing reads it
	// after this send: gRPC Releases it once written.
	Recycle bool
}

// fallback is gRPC's protobuf codec.
func fallback() encoding.CodecV2 { return encoding.GetCodecV2(grpcproto.Name) }

// Name is "proto", gRPC's protobuf codec's name.
func (Codec) Name() string { return grpcproto.Name }

// Marshal encodes v. A DATA packet's Data is copied once, or not at all
// when v is Owned; everything else is encoded by gRPC's protobuf codec.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	var pkt *client.Packet
	owned := false
	recycle := false
	switch m := v.(type) {
	case Owned:
		pkt, owned, recycle = m.Packet, true, m.Recycle
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
		payload := mem.Buffer(mem.SliceBuffer(d.Data))
		if recycle {
			b := d.Data
			payload = mem.NewBuffer(&b, releasePool{})
		}
		return mem.BufferSlice{mem.SliceBuffer(header), payload}, nil
	}
	size := len(header) + len(d.Data)
	if mem.IsBelowBufferPoolingThreshold(size) {
		return mem.BufferSlice{mem.SliceBuffer(append(header, d.Data...))}, nil
	}
	// A buffer of the pool, which gRPC gives back once written; unlike
	// gRPC's own pool it is not zeroed first: every byte is written here.
	buf := getBuffer(size)
	copy(buf[copy(buf, header):], d.Data)
	return mem.BufferSlice{mem.NewBuffer(&buf, releasePool{})}, nil
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

// Unmarshal decodes data into v. A DATA packet's bytes are copied once:
// with Pool, from MinPooled bytes on, into a buffer of a pool (see
// Release); otherwise with the message into a buffer its Data aliases.
// Other messages are decoded by gRPC's protobuf codec.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	pkt, ok := v.(*client.Packet)
	if !ok {
		return fallback().Unmarshal(data, v)
	}
	total := data.Len()
	if c.Pool && len(data) > 0 && total >= MinPooled {
		// The header is nearly always in the first of gRPC's buffers.
		if h, ok := parseHeader(data[0].ReadOnlyData(), total); ok && h.size >= MinPooled {
			payload := getBuffer(h.size)
			copyFrom(data, h.offset, payload)
			h.set(pkt, payload)
			return nil
		}
	}
	buf := materialize(data)
	if h, ok := parseHeader(buf, total); ok {
		// Full slice expression: an append to Data cannot reach past it
		// into the buffer.
		end := h.offset + h.size
		h.set(pkt, buf[h.offset:end:end])
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

// copyFrom copies data, from offset on, into dst.
func copyFrom(data mem.BufferSlice, offset int, dst []byte) {
	for _, b := range data {
		r := b.ReadOnlyData()
		if offset >= len(r) {
			offset -= len(r)
			continue
		}
		dst = dst[copy(dst, r[offset:]):]
		offset = 0
	}
}

// header is what precedes a DATA packet's bytes in the plain encoding.
type header struct {
	typ        uint64
	connID     uint64
	errText    string
	hasPayload bool
	// offset and size locate the payload in the message.
	offset, size int
}

// set makes pkt the packet h describes, with payload as its Data.
func (h *header) set(pkt *client.Packet, payload []byte) {
	d := &client.Data{ConnectID: int64(h.connID), Error: h.errText}
	if h.hasPayload {
		d.Data = payload
	}
	pkt.Reset()
	pkt.Type = client.PacketType(int32(h.typ))
	pkt.Payload = &client.Packet_Data{Data: d}
}

// parseHeader parses the start b of a message of total bytes when it is a
// packet with a Data payload in the plain encoding: Packet's type
// (optional), then its data, and within that connectID, error and data,
// each optional and in this order, the data last in the message. It
// reports false, leaving the message for protobuf to decode, otherwise,
// and when b ends before the payload's bytes start.
func parseHeader(b []byte, total int) (header, bool) {
	var h header
	pos := 0
	// field reads the next tag; it fails at the end of b.
	field := func() (protowire.Number, protowire.Type, bool) {
		num, wt, n := protowire.ConsumeTag(b[pos:])
		if n < 0 {
			return 0, 0, false
		}
		pos += n
		return num, wt, true
	}
	varint := func(v *uint64) bool {
		x, n := protowire.ConsumeVarint(b[pos:])
		if n < 0 {
			return false
		}
		*v, pos = x, pos+n
		return true
	}
	num, wt, ok := field()
	if !ok {
		return h, false
	}
	if num == packetType && wt == protowire.VarintType {
		if !varint(&h.typ) {
			return h, false
		}
		if num, wt, ok = field(); !ok {
			return h, false
		}
	}
	var inner uint64
	if num != packetData || wt != protowire.BytesType || !varint(&inner) || uint64(total-pos) != inner {
		return h, false
	}
	last := protowire.Number(0)
	for pos < total {
		num, wt, ok := field()
		if !ok || num <= last {
			return h, false
		}
		last = num
		switch {
		case num == dataConnID && wt == protowire.VarintType:
			if !varint(&h.connID) {
				return h, false
			}
		case num == dataError && wt == protowire.BytesType:
			s, n := protowire.ConsumeBytes(b[pos:])
			if n < 0 || !utf8.Valid(s) {
				return h, false
			}
			h.errText = string(s)
			pos += n
		case num == dataPayload && wt == protowire.BytesType:
			var size uint64
			if !varint(&size) || uint64(total-pos) != size {
				return h, false
			}
			h.hasPayload, h.offset, h.size = true, pos, int(size)
			return h, true
		default:
			return h, false
		}
	}
	return h, pos == total
}
