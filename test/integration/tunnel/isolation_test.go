package tunnel_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"open-cluster-management.io/cluster-proxy/pkg/client"
)

const (
	// stalledSize is what the stalled connection asks for: its reader
	// stops after stalledPrefix, so the rest is pending behind it, minus
	// what the flow-control windows on the way hold (gRPC grows a
	// stream's window up to 16 MiB per hop).
	stalledSize   = 128 << 20
	stalledPrefix = 1 << 20
	// stalledPendingMin is what must stay pending behind the stopped
	// reader at the backend.
	stalledPendingMin = 64 << 20
	// fastSize is what the other connection moves meanwhile: half the
	// bench's 256 MiB, because the suite's client is konnectivity-client,
	// which closes a connection whose reader consumed nothing for 10 s,
	// and this process runs with the race detector (~50 MB/s).
	fastSize = 128 << 20
	// stallLimit keeps the stalled reader's pause below konnectivity-client's
	// read timeout.
	stallLimit = 8 * time.Second
)

var _ = Describe("Isolation between the connections of one agent", Label("tunnel", "isolation"), func() {
	It("moves another connection's 128 MiB while one connection's reader is stopped with at least 64 MiB pending, and loses nothing of either", func(ctx SpecContext) {
		source := startPatternSource()
		t := startTunnel("isolation", binaries.proxyServer, binaries.proxyAgent)
		dialer := newDialer(t.serverPorts.Server)

		stalled := dialPattern(ctx, dialer, source, stalledSize)
		Expect(stalled.readPattern(stalledPrefix)).To(Succeed())
		// The backend is held back: it stops getting its bytes out well
		// before the end, so nothing piles up without bound in between.
		Eventually(source.progressOf(stalled.id)).WithTimeout(5*time.Second).WithPolling(100*time.Millisecond).
			Should(BeStalled(), "the stalled connection's backend kept writing")
		held := source.written(stalled.id)
		GinkgoWriter.Printf("the stalled connection's backend wrote %d MiB of %d MiB, then waited\n", held>>20, stalledSize>>20)
		Expect(stalledSize-held).To(BeNumerically(">=", stalledPendingMin), "too little is pending behind the stopped reader")

		start := time.Now()
		fast := dialPattern(ctx, dialer, source, fastSize)
		Expect(fast.readPattern(fastSize)).To(Succeed(), "the other connection, while the first is stalled")
		took := time.Since(start)
		GinkgoWriter.Printf("the other connection moved %d MiB in %v while the first was stalled\n", fastSize>>20, took)
		// The windows may grow while the other connection moves data on
		// the same gRPC connections, but they stay bounded.
		GinkgoWriter.Printf("meanwhile the stalled connection's backend got out %d MiB\n", source.written(stalled.id)>>20)
		Expect(stalledSize-source.written(stalled.id)).To(BeNumerically(">=", stalledPendingMin),
			"the stalled connection's bytes piled up somewhere in between")
		Expect(took).To(BeNumerically("<", stallLimit),
			"the other connection took too long for the stalled reader to stay under konnectivity-client's read timeout; the result says nothing")

		// The stalled reader resumes: every byte arrives, in order.
		Expect(stalled.readPattern(stalledSize - stalledPrefix)).To(Succeed())
		Expect(stalled.Close()).To(Succeed())
		Expect(fast.Close()).To(Succeed())
	})
})

// patternSource is a TCP backend on 127.0.0.1: a client sends an 8-byte
// connection id and an 8-byte size, and it writes that many bytes of a
// pattern (byte i is patternByte(i)), counting what each write got out.
type patternSource struct {
	listener net.Listener
	port     int

	mu      sync.Mutex
	counts  map[uint64]*atomic.Int64
	nextID  atomic.Uint64
	handled sync.WaitGroup
}

func patternByte(i int64) byte { return byte(i % 251) }

// patternChunk is the pattern from offset 0, long enough that any chunk of
// up to patternChunkMax bytes at any offset off is a slice of it starting
// at off % 251 (checked and filled with copy and bytes.Equal, not byte by
// byte: the suite runs with the race detector).
var patternChunk = func() []byte {
	b := make([]byte, patternChunkMax+251)
	for i := range b {
		b[i] = patternByte(int64(i))
	}
	return b
}()

const patternChunkMax = 256 << 10

// patternAt is the pattern's n bytes at offset off.
func patternAt(off, n int64) []byte { return patternChunk[off%251 : off%251+n] }

// startPatternSource listens on a free loopback port until the node's
// cleanup.
func startPatternSource() *patternSource {
	GinkgoHelper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	s := &patternSource{listener: l, port: l.Addr().(*net.TCPAddr).Port, counts: map[uint64]*atomic.Int64{}}
	s.handled.Add(1)
	go func() {
		defer s.handled.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			s.handled.Add(1)
			go func() {
				defer s.handled.Done()
				s.serve(conn)
			}()
		}
	}()
	DeferCleanup(func() {
		_ = l.Close()
		s.handled.Wait()
	})
	return s
}

func (s *patternSource) counter(id uint64) *atomic.Int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts[id]
	if c == nil {
		c = &atomic.Int64{}
		s.counts[id] = c
	}
	return c
}

func (s *patternSource) serve(conn net.Conn) {
	defer func() { _ = conn.Close() }()
	var req [16]byte
	if _, err := io.ReadFull(conn, req[:]); err != nil {
		return
	}
	count := s.counter(binary.BigEndian.Uint64(req[:8]))
	size := int64(binary.BigEndian.Uint64(req[8:]))
	buf := make([]byte, 64<<10)
	for off := int64(0); off < size; {
		n := min(int64(len(buf)), size-off)
		copy(buf, patternAt(off, n))
		w, err := conn.Write(buf[:n])
		off += int64(w)
		count.Add(int64(w))
		if err != nil {
			return
		}
	}
	// Wait for the client to close, so the connection ends from its side.
	_, _ = io.Copy(io.Discard, conn)
}

// written returns how many bytes the source got out on connection id.
func (s *patternSource) written(id uint64) int64 { return s.counter(id).Load() }

// progressOf samples written(id) for BeStalled.
func (s *patternSource) progressOf(id uint64) func() int64 {
	return func() int64 { return s.written(id) }
}

// stalledSamples is how many samples in a row BeStalled wants equal.
const stalledSamples = 5

// BeStalled succeeds once the sampled value stayed the same over the last
// stalledSamples samples.
func BeStalled() OmegaMatcher {
	var last []int64
	return WithTransform(func(v int64) bool {
		last = append(last, v)
		if len(last) > stalledSamples {
			last = last[1:]
		}
		if len(last) < stalledSamples {
			return false
		}
		for _, x := range last {
			if x != last[0] {
				return false
			}
		}
		return true
	}, BeTrue())
}

// patternConn is a connection through the tunnel to the pattern source.
type patternConn struct {
	net.Conn
	id  uint64
	off int64
	got atomic.Int64
}

// dialPattern dials the source through dialer and asks it for size bytes.
func dialPattern(ctx context.Context, dialer *client.Dialer, s *patternSource, size int64) *patternConn {
	GinkgoHelper()
	conn, err := dialer.DialContext(ctx, "tcp", net.JoinHostPort(cluster, strconv.Itoa(s.port)))
	Expect(err).NotTo(HaveOccurred())
	c := &patternConn{Conn: conn, id: s.nextID.Add(1)}
	var req [16]byte
	binary.BigEndian.PutUint64(req[:8], c.id)
	binary.BigEndian.PutUint64(req[8:], uint64(size))
	_, err = conn.Write(req[:])
	Expect(err).NotTo(HaveOccurred())
	return c
}

// readPattern reads n more bytes and checks each against the pattern.
func (c *patternConn) readPattern(n int64) error {
	buf := make([]byte, patternChunkMax)
	for n > 0 {
		r, err := c.Read(buf[:min(int64(len(buf)), n)])
		if !bytes.Equal(buf[:r], patternAt(c.off, int64(r))) {
			for i := range int64(r) {
				if buf[i] != patternByte(c.off+i) {
					return fmt.Errorf("byte %d is %d, want %d", c.off+i, buf[i], patternByte(c.off+i))
				}
			}
		}
		c.off += int64(r)
		c.got.Add(int64(r))
		n -= int64(r)
		if err != nil {
			if errors.Is(err, io.EOF) && n == 0 {
				return nil
			}
			return fmt.Errorf("after %d bytes: %w", c.off, err)
		}
	}
	return nil
}
