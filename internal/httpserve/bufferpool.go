package httpserve

import "sync"

// proxyBufferSize is the size of the buffers a reverse proxy copies bodies
// with: httputil.ReverseProxy's own default.
const proxyBufferSize = 32 << 10

// BufferPool is an httputil.BufferPool that reuses body-copy buffers. A
// ReverseProxy without one allocates a new 32 KiB buffer for every
// response, which on a small request is most of what a forwarding hop
// allocates, and so most of its garbage collection.
type BufferPool struct {
	pool sync.Pool
}

// Get returns a buffer of 32 KiB.
func (p *BufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, proxyBufferSize)
}

// Put returns b to the pool; a buffer of another size is dropped.
func (p *BufferPool) Put(b []byte) {
	if cap(b) != proxyBufferSize {
		return
	}
	b = b[:proxyBufferSize]
	p.pool.Put(&b)
}
