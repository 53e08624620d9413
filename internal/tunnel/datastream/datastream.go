// Package datastream is cluster-proxy's extension of the konnectivity agent
// protocol: a gRPC stream of its own for every tunnelled connection between
// our proxy-server and our proxy-agent, so HTTP/2's per-stream flow control
// applies to each connection. A connection whose reader stops then stalls
// only its own stream; with konnectivity's one stream per agent it stalls
// every connection of that agent.
//
// The agent offers the extension with the Offer header on its konnectivity
// Connect stream; the server accepts by echoing the header in its response
// headers. Dials still travel as DIAL_REQ packets on the Connect stream.
// Once both sides agreed, the agent answers a successful dial by opening an
// Accept stream on the same gRPC connection, naming the dial in the DialID
// header, instead of sending a DIAL_RSP (a failed dial is still a DIAL_RSP
// with its error). The stream then carries the connection's bytes both
// ways as BytesValue messages; either side ending the stream closes the
// connection. Against apiserver-network-proxy's binaries, which never send
// or echo the header, both sides keep to konnectivity's protocol.
package datastream

import (
	"context"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	// Offer is the header, on the Connect stream, by which the agent offers
	// data streams and the server accepts them.
	Offer = "x-cluster-proxy-data-streams"
	// Version is the Offer header's value for this protocol.
	Version = "v1"
	// DialID is the header of an Accept stream naming the dial (the
	// DIAL_REQ's random) it answers.
	DialID = "x-cluster-proxy-dial-id"

	// serviceName and acceptMethod name the gRPC service on the
	// proxy-server's agent port.
	serviceName  = "clusterproxy.tunnel.v1.DataStreams"
	acceptMethod = "Accept"
)

// Handler serves Accept streams on the proxy-server.
type Handler interface {
	// Accept serves one connection's stream; returning ends it.
	Accept(stream grpc.ServerStream) error
}

var streamDesc = grpc.StreamDesc{StreamName: acceptMethod, ServerStreams: true, ClientStreams: true}

// Register serves h's Accept streams on s.
func Register(s grpc.ServiceRegistrar, h Handler) {
	desc := streamDesc
	desc.Handler = func(srv any, stream grpc.ServerStream) error { return srv.(Handler).Accept(stream) }
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: serviceName,
		HandlerType: (*Handler)(nil),
		Streams:     []grpc.StreamDesc{desc},
	}, h)
}

// Open opens the Accept stream answering dial random on conn, the gRPC
// connection whose Connect stream carried the DIAL_REQ. md is sent with
// it (the agent's ID).
func Open(ctx context.Context, conn grpc.ClientConnInterface, random int64, md metadata.MD) (grpc.ClientStream, error) {
	md = metadata.Join(md, metadata.Pairs(DialID, strconv.FormatInt(random, 10)))
	return conn.NewStream(metadata.NewOutgoingContext(ctx, md), &streamDesc, "/"+serviceName+"/"+acceptMethod)
}

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

// DialIDOf returns the dial an Accept stream answers.
func DialIDOf(md metadata.MD) (int64, bool) {
	v := md.Get(DialID)
	if len(v) != 1 {
		return 0, false
	}
	id, err := strconv.ParseInt(v[0], 10, 64)
	return id, err == nil
}

// Message is one chunk of a connection's bytes on a data stream.
type Message = wrapperspb.BytesValue
