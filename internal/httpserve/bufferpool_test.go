package httpserve

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestBufferPool(t *testing.T) {
	for _, c := range []struct {
		name string
		put  []byte
		// reusable says whether the buffer put may come back.
		reusable bool
	}{
		{name: "a buffer of the pool's size is kept", put: make([]byte, proxyBufferSize), reusable: true},
		{name: "a shortened buffer of the pool's size comes back whole", put: make([]byte, proxyBufferSize)[:10], reusable: true},
		{name: "a buffer of another size is dropped", put: make([]byte, 100)},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			p := &BufferPool{}
			g.Expect(p.Get()).To(HaveLen(proxyBufferSize))
			p.Put(c.put)
			// sync.Pool may drop what it holds at any time, so only the
			// size is certain; a kept buffer is the same array.
			got := p.Get()
			g.Expect(got).To(HaveLen(proxyBufferSize))
			if !c.reusable {
				g.Expect(&got[0]).NotTo(BeIdenticalTo(&c.put[0]))
			}
		})
	}
}
