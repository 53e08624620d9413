package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// Issue 15's isolation scenario: one connection's reader stops with at
// least isolationPendingMin pending behind it, and another connection of
// the same agent moves isolationSize meanwhile.
const (
	isolationSize = 256 << 20
	// isolationStalledSize is what the stalled connection asks for; its
	// reader takes isolationPrefix, then stops.
	isolationStalledSize = 1 << 30
	isolationPrefix      = 1 << 20
	isolationPendingMin  = 64 << 20
	// isolationFill is how long the stalled connection's backend gets to
	// write what the path lets through before the other connection starts.
	isolationFill = time.Second
	// isolationLimit bounds the other connection's transfer: the client
	// (konnectivity-client, under pkg/client) closes a connection whose
	// reader took nothing for 10 s, so the stall must end before that.
	isolationLimit = 7 * time.Second
	// isolationGoal is the bar: the other connection at half its
	// solo speed or better.
	isolationGoal = 0.5
)

// The isolation rows of the tunnel table.
const (
	isolationPendingRow = "isolation: pending behind a stopped reader, MiB"
	isolationRatioRow   = "isolation: that, ÷ its speed alone"
)

// stalledWritten counts what the backend wrote to the connection that asked
// with 'S' (one at a time).
var stalledWritten atomic.Int64

// isolation is one path's isolation figures.
type isolation struct {
	// solo and beside are the other connection's speeds, Gbit/s, alone
	// and beside the stalled one; moved is what it moved beside it.
	solo, beside float64
	moved        int64
	// pending is what was left to send behind the stopped reader when
	// the other connection started.
	pending int64
}

// measureIsolation measures issue 15's isolation scenario on p, and checks
// that the stalled connection then gets every byte.
func measureIsolation(ctx context.Context, p *path) (isolation, error) {
	var iso isolation
	start := time.Now()
	if err := transfer(ctx, p, 'D', isolationSize); err != nil {
		return iso, fmt.Errorf("solo: %w", err)
	}
	iso.solo = gbps(isolationSize, time.Since(start))

	stalled, err := p.dial(ctx)
	if err != nil {
		return iso, fmt.Errorf("failed to dial the stalled connection: %w", err)
	}
	defer func() { _ = stalled.Close() }()
	stalledWritten.Store(0)
	if _, err := stalled.Write(append([]byte{'S'}, binary.BigEndian.AppendUint64(nil, isolationStalledSize)...)); err != nil {
		return iso, err
	}
	if _, err := io.CopyN(io.Discard, stalled, isolationPrefix); err != nil {
		return iso, fmt.Errorf("the stalled connection's first bytes: %w", err)
	}
	time.Sleep(isolationFill)
	iso.pending = isolationStalledSize - stalledWritten.Load()

	// The other connection's dial and transfer, within isolationLimit:
	// where the stalled connection holds up its agent's stream, even the
	// dial's answer waits behind it.
	start = time.Now()
	dialCtx, cancel := context.WithDeadline(ctx, start.Add(isolationLimit))
	other, err := p.dial(dialCtx)
	cancel()
	if err == nil {
		_ = other.SetReadDeadline(start.Add(isolationLimit))
		if _, err = other.Write(append([]byte{'D'}, binary.BigEndian.AppendUint64(nil, isolationSize)...)); err == nil {
			iso.moved, err = io.CopyBuffer(io.Discard, io.LimitReader(other, isolationSize), make([]byte, 256<<10))
		}
		_ = other.Close()
	}
	iso.beside = gbps(iso.moved, time.Since(start))
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) && time.Since(start) < isolationLimit {
		return iso, fmt.Errorf("the other connection: %w", err)
	}

	// The stalled connection resumes and gets the rest.
	_ = stalled.SetReadDeadline(time.Now().Add(2 * time.Minute))
	rest, err := io.CopyBuffer(io.Discard, io.LimitReader(stalled, isolationStalledSize-isolationPrefix), make([]byte, 256<<10))
	if err != nil {
		return iso, fmt.Errorf("the stalled connection resumed and got %d of %d bytes: %w", rest, isolationStalledSize-isolationPrefix, err)
	}
	if rest != isolationStalledSize-isolationPrefix {
		return iso, fmt.Errorf("the stalled connection resumed and got %d of %d bytes before its end", rest, isolationStalledSize-isolationPrefix)
	}
	return iso, nil
}

func gbps(n int64, d time.Duration) float64 {
	return float64(n*8) / d.Seconds() / 1e9
}

// serveStalled answers 'S': like 'D', counting what it wrote in
// stalledWritten.
func serveStalled(conn net.Conn) {
	var n int64
	if err := binary.Read(conn, binary.BigEndian, &n); err != nil {
		return
	}
	for n > 0 {
		w, err := conn.Write(zeros[:min(n, int64(len(zeros)))])
		stalledWritten.Add(int64(w))
		if err != nil {
			return
		}
		n -= int64(w)
	}
}
