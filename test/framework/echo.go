package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// EchoServer is a TCP backend on 127.0.0.1 that writes back what it reads,
// on every connection, until Close.
type EchoServer struct {
	listener net.Listener
	port     int

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// StartEchoServer starts an EchoServer on a free loopback port.
func StartEchoServer() (*EchoServer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("failed to listen for the echo server: %w", err)
	}
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		_ = l.Close()
		return nil, fmt.Errorf("failed to listen for the echo server: unexpected address %s", l.Addr())
	}
	s := &EchoServer{listener: l, port: addr.Port, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the server's host:port.
func (s *EchoServer) Addr() string { return s.listener.Addr().String() }

// Port is the server's port on 127.0.0.1.
func (s *EchoServer) Port() int { return s.port }

// accept echoes every accepted connection until the listener closes.
func (s *EchoServer) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.listener.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.echo(conn)
	}
}

// echo copies conn back to itself, then closes and forgets it.
func (s *EchoServer) echo(conn net.Conn) {
	defer s.wg.Done()
	_, _ = io.Copy(conn, conn)
	_ = conn.Close()
	s.mu.Lock()
	delete(s.conns, conn)
	s.mu.Unlock()
}

// Close stops accepting, closes open connections and waits for their
// goroutines.
func (s *EchoServer) Close() {
	_ = s.listener.Close()
	s.mu.Lock()
	for conn := range s.conns {
		_ = conn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// DialFunc opens a connection to address, as net.Dialer.DialContext does
// for "tcp".
type DialFunc func(ctx context.Context, address string) (net.Conn, error)

// EchoConcurrently opens n connections to the echo server at address with
// dial, all at once, sends a payload of size bytes of its own over each
// (n up to 255 keeps them distinct), and checks each comes back whole and
// unmixed. It returns every connection's failure.
func EchoConcurrently(ctx context.Context, dial DialFunc, address string, n, size int) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if err := echoOnce(ctx, dial, address, bytes.Repeat([]byte{byte(i + 1)}, size)); err != nil {
				errs[i] = fmt.Errorf("connection %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// echoOnce sends payload over a new connection to address while reading
// the echo, and checks the echo is payload.
func echoOnce(ctx context.Context, dial DialFunc, address string, payload []byte) error {
	conn, err := dial(ctx, address)
	if err != nil {
		return fmt.Errorf("failed to dial %s: %w", address, err)
	}
	defer func() { _ = conn.Close() }()
	go func() { _, _ = conn.Write(payload) }()
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(conn, got); err != nil {
		return fmt.Errorf("failed to read the echo: %w", err)
	}
	if !bytes.Equal(got, payload) {
		return errors.New("the echo brought other bytes back")
	}
	return nil
}
