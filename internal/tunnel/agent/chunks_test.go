package agent

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

func TestChunkReaderGrowsWhileStreamingAndShrinksWhenIdle(t *testing.T) {
	a, b := net.Pipe()
	defer func() { _ = a.Close() }()
	// Writes of each size; net.Pipe hands a write to reads as it is, cut
	// to the reader's buffer.
	sizes := []int{10, idleReadSize, readBufferSize, readBufferSize + 7, 100, 1, idleReadSize - 1}
	var want bytes.Buffer
	go func() {
		for i, n := range sizes {
			p := bytes.Repeat([]byte{byte('a' + i)}, n)
			want.Write(p)
			_, _ = b.Write(p)
		}
		_ = b.Close()
	}()
	r := newChunkReader(a)
	var got bytes.Buffer
	var bufSizes []int
	for {
		chunk, err := r.read()
		got.Write(chunk)
		bufSizes = append(bufSizes, cap(chunk))
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	r.release()
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("read %d bytes, want %d (or different ones)", got.Len(), want.Len())
	}
	// 10 (small), idleReadSize (small, full: grow), readBufferSize (big),
	// readBufferSize (big) + 7 (big, short: shrink next), 100 (small), ...
	wantCaps := []int{idleReadSize, idleReadSize, readBufferSize, readBufferSize, readBufferSize, idleReadSize}
	for i, c := range wantCaps {
		if bufSizes[i] != c {
			t.Fatalf("read %d used a buffer of %d bytes, want %d (all: %v)", i, bufSizes[i], c, bufSizes)
		}
	}
	if r.big != nil {
		t.Fatal("release kept the pooled buffer")
	}
}
