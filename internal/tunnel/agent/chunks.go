package agent

import (
	"net"
	"sync"
)

// idleReadSize is the buffer a backend connection is read into while it
// is idle or sends little: most connections are idle most of the time,
// and each holds its buffer while it waits in Read.
const idleReadSize = 4 << 10

// bigBuffers are readBufferSize buffers for connections that stream.
var bigBuffers = sync.Pool{New: func() any {
	b := make([]byte, readBufferSize)
	return &b
}}

// chunkReader reads a backend connection in chunks: into a small buffer
// of its own until a read fills it, then into a pooled readBufferSize one
// until a read returns less than the small buffer holds. The chunk it
// returns is valid until the next read.
type chunkReader struct {
	conn  net.Conn
	small []byte
	big   *[]byte
	// shrink gives big back before the next read: the last one was small.
	shrink bool
}

func newChunkReader(conn net.Conn) *chunkReader {
	return &chunkReader{conn: conn, small: make([]byte, idleReadSize)}
}

// read reads the next chunk.
func (r *chunkReader) read() ([]byte, error) {
	if r.shrink {
		r.release()
	}
	buf := r.small
	if r.big != nil {
		buf = *r.big
	}
	n, err := r.conn.Read(buf)
	switch {
	case r.big == nil && n == len(r.small):
		r.big = bigBuffers.Get().(*[]byte)
	case r.big != nil && n < len(r.small):
		r.shrink = true
	}
	return buf[:n], err
}

// release gives the pooled buffer back; the last chunk is invalid after.
func (r *chunkReader) release() {
	if r.big != nil {
		bigBuffers.Put(r.big)
		r.big = nil
	}
	r.shrink = false
}
