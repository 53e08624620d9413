package wire

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

const (
	// MinPooled is the smallest DATA payload Unmarshal copies into a
	// pooled buffer; smaller ones share the message's buffer.
	MinPooled = 1 << minClass
	// minClass and maxClass bound the pooled buffers' sizes: powers of two
	// from 4 KiB to 4 MiB (gRPC's default largest message).
	minClass, maxClass = 12, 22
)

// pools holds released buffers by size class: pools[k] those of 1<<(k +
// minClass) bytes.
var pools [maxClass - minClass + 1]sync.Pool

// classOf returns the class of the smallest pooled buffer that holds n
// bytes; ok is false when n is larger than the largest.
func classOf(n int) (int, bool) {
	k := max(bits.Len(uint(n-1)), minClass) - minClass
	return k, k < len(pools)
}

// getBuffer returns n bytes to write a payload into: a released buffer of
// n bytes' class when there is one.
func getBuffer(n int) []byte {
	k, ok := classOf(n)
	if !ok {
		return make([]byte, n)
	}
	if b, _ := pools[k].Get().(*[]byte); b != nil {
		return (*b)[:n]
	}
	return make([]byte, n, 1<<(k+minClass))
}

// Release gives the bytes of a received DATA packet's Data back for the
// next packets once nothing uses them any more. Only the last holder of a
// received packet may call it, after its last use of the bytes (written to
// the backend, or handed to gRPC in an Owned packet with Recycle, which
// calls it once written): the bytes are overwritten by a later packet.
// Bytes of any other size than a pooled buffer's are left to the garbage
// collector.
func Release(data []byte) {
	c := cap(data)
	if c < MinPooled || c&(c-1) != 0 {
		return
	}
	k, ok := classOf(c)
	if !ok {
		return
	}
	b := data[:c]
	pools[k].Put(&b)
}

// releasePool is the mem.BufferPool of recycled Owned packets' bytes: gRPC
// puts them back once it wrote them.
type releasePool struct{}

var _ mem.BufferPool = releasePool{}

func (releasePool) Get(n int) *[]byte {
	b := getBuffer(n)
	return &b
}

func (releasePool) Put(b *[]byte) { Release(*b) }
