package localenv

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"

	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
)

// dialFunc opens the far side of a relayed connection.
type dialFunc func(ctx context.Context) (net.Conn, error)

// dialIn dials a fixed address from inside a namespace.
func dialIn(ns, address string) dialFunc {
	return func(ctx context.Context) (net.Conn, error) { return netns.DialContext(ctx, ns, address) }
}

// relay listens on address inside namespace ns (the root namespace when
// ns is empty) and copies every accepted connection to one that dial
// opens: the environment's stand-in for NAT, port mappings and load
// balancers. It stops when ctx is done. It returns the bound address.
func relay(ctx context.Context, name, ns, address string, dial dialFunc) (string, error) {
	l, err := netns.Listen(ns, address)
	if err != nil {
		return "", err
	}
	logger := klog.FromContext(ctx).WithValues("relay", name, "listen", l.Addr().String())
	var wg sync.WaitGroup
	go func() {
		<-ctx.Done()
		_ = l.Close()
	}()
	go func() {
		defer wg.Wait()
		for {
			conn, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					logger.Error(err, "Accept failed")
				}
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				pipe(ctx, logger, conn, dial)
			}()
		}
	}()
	return l.Addr().String(), nil
}

func pipe(ctx context.Context, logger klog.Logger, conn net.Conn, dial dialFunc) {
	defer func() { _ = conn.Close() }()
	far, err := dial(ctx)
	if err != nil {
		logger.V(2).Info("Dial failed", "err", err.Error())
		return
	}
	defer func() { _ = far.Close() }()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close(); _ = far.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	copyHalf := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go copyHalf(far, conn)
	go copyHalf(conn, far)
	<-done
	<-done
}
