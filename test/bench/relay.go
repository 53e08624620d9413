package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"time"

	"open-cluster-management.io/cluster-proxy/internal/certs"
)

// startTopologyLimit starts the tunnel's shape with no protocol: a plain
// TCP relay (the proxy-server's place) that forwards each connection over
// TLS to a second relay (the agent's place), which forwards it to target.
// What it carries is the most any two-hop tunnel with TLS on the agent hop
// can carry on this machine. stop closes both listeners.
func startTopologyLimit(target string) (p *path, stop func(), err error) {
	now := time.Now()
	ca, err := certs.NewCA("bench CA", now, time.Hour)
	if err != nil {
		return nil, nil, err
	}
	certPEM, keyPEM, err := ca.Issue(certs.LeafSpec{CommonName: "relay", SANs: []string{"127.0.0.1"}, Usage: certs.UsageServing}, now)
	if err != nil {
		return nil, nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	far, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, nil, fmt.Errorf("failed to listen for the far relay: %w", err)
	}
	near, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = far.Close()
		return nil, nil, fmt.Errorf("failed to listen for the near relay: %w", err)
	}
	go relay(far, func() (net.Conn, error) { return net.Dial("tcp", target) })
	farAddr := far.Addr().String()
	go relay(near, func() (net.Conn, error) {
		return tls.Dial("tcp", farAddr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
	})
	nearAddr := near.Addr().String()
	p = &path{name: "topology limit", dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", nearAddr)
	}}
	return p, func() { _ = near.Close(); _ = far.Close() }, nil
}

// relay accepts connections on l until it is closed and copies each, both
// ways, to a connection from dial.
func relay(l net.Listener, dial func() (net.Conn, error)) {
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer func() { _ = in.Close() }()
			out, err := dial()
			if err != nil {
				return
			}
			defer func() { _ = out.Close() }()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(out, in)
			go pipe(in, out)
			<-done
			<-done
		}()
	}
}
