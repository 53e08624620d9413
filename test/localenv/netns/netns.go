// Package netns creates the network namespaces, bridges and veth pairs of the
// local environment with iproute2, and opens sockets inside a namespace from
// a process that runs outside it. Linux only; creating namespaces needs root.
//
// Every address the local environment uses comes from 198.18.0.0/15, the
// benchmarking range: nothing here ever routes traffic anywhere else.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// runDir is where iproute2 keeps named network namespaces.
const runDir = "/run/netns"

// Path returns the file that names namespace ns.
func Path(ns string) string { return filepath.Join(runDir, ns) }

// Exists reports whether namespace ns exists.
func Exists(ns string) bool {
	_, err := os.Stat(Path(ns))
	return err == nil
}

// IP runs `ip args...` and returns its error with the command and its
// output.
func IP(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "ip", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Check fails with an explanation when this process cannot create network
// namespaces (not root, no iproute2, or the kernel refuses).
func Check(ctx context.Context) error {
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("network namespaces are unavailable: the `ip` command (iproute2) is not installed")
	}
	if os.Geteuid() != 0 {
		return errors.New("network namespaces are unavailable: creating them needs root")
	}
	probe := fmt.Sprintf("cpx-probe-%d", os.Getpid())
	if err := IP(ctx, "netns", "add", probe); err != nil {
		return fmt.Errorf("network namespaces are unavailable: %w", err)
	}
	return IP(ctx, "netns", "del", probe)
}

// Add creates namespace ns with its loopback up. An existing namespace is
// an error: the caller owns the names it creates.
func Add(ctx context.Context, ns string) error {
	if err := IP(ctx, "netns", "add", ns); err != nil {
		return err
	}
	return IP(ctx, "-n", ns, "link", "set", "lo", "up")
}

// Delete removes namespace ns (and with it every interface inside); a
// missing namespace is not an error.
func Delete(ctx context.Context, ns string) error {
	if !Exists(ns) {
		return nil
	}
	return IP(ctx, "netns", "del", ns)
}

// AddBridge creates bridge name in namespace ns with address cidr (e.g.
// "198.18.0.1/24") and brings it up.
func AddBridge(ctx context.Context, ns, name, cidr string) error {
	steps := [][]string{
		{"-n", ns, "link", "add", name, "type", "bridge"},
		{"-n", ns, "addr", "add", cidr, "dev", name},
		{"-n", ns, "link", "set", name, "up"},
	}
	for _, s := range steps {
		if err := IP(ctx, s...); err != nil {
			return err
		}
	}
	return nil
}

// Link describes one end of a veth pair.
type Link struct {
	// Namespace holds the interface; empty means this process's namespace.
	Namespace string
	// Name is the interface name (at most 15 bytes).
	Name string
	// CIDR is the address to assign, e.g. "198.18.0.11/24"; empty assigns
	// none (a bridge port).
	CIDR string
	// Bridge, when set, attaches the interface to that bridge in Namespace.
	Bridge string
	// Gateway, when set, becomes the default route of Namespace through
	// this interface.
	Gateway string
}

// AddVeth creates a veth pair between a and b and configures both ends.
func AddVeth(ctx context.Context, a, b Link) error {
	// Create both ends in this namespace, then move them.
	if err := IP(ctx, "link", "add", a.Name, "type", "veth", "peer", "name", b.Name); err != nil {
		return err
	}
	for _, l := range []Link{a, b} {
		if err := configure(ctx, l); err != nil {
			_ = IP(context.WithoutCancel(ctx), ipArgs(l, "link", "del", l.Name)...)
			return err
		}
	}
	return nil
}

func configure(ctx context.Context, l Link) error {
	if l.Namespace != "" {
		if err := IP(ctx, "link", "set", l.Name, "netns", l.Namespace); err != nil {
			return err
		}
	}
	var steps [][]string
	if l.Bridge != "" {
		steps = append(steps, []string{"link", "set", l.Name, "master", l.Bridge})
	}
	if l.CIDR != "" {
		steps = append(steps, []string{"addr", "add", l.CIDR, "dev", l.Name})
	}
	steps = append(steps, []string{"link", "set", l.Name, "up"})
	if l.Gateway != "" {
		steps = append(steps, []string{"route", "add", "default", "via", l.Gateway, "dev", l.Name})
	}
	for _, s := range steps {
		if err := IP(ctx, ipArgs(l, s...)...); err != nil {
			return err
		}
	}
	return nil
}

func ipArgs(l Link, args ...string) []string {
	if l.Namespace == "" {
		return args
	}
	return append([]string{"-n", l.Namespace}, args...)
}

// Do runs fn on an OS thread switched into namespace ns; sockets fn creates
// belong to ns for their whole life. An empty ns runs fn in place.
func Do(ns string, fn func() error) error {
	if ns == "" {
		return fn()
	}
	target, err := os.Open(Path(ns))
	if err != nil {
		return fmt.Errorf("network namespace %q: %w", ns, err)
	}
	defer func() { _ = target.Close() }()

	errc := make(chan error, 1)
	go func() {
		// The goroutine's thread is locked and never unlocked when the
		// switch back fails, so the runtime retires the thread instead of
		// reusing it in the wrong namespace.
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer func() { _ = orig.Close() }()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %q: %w", ns, err)
			return
		}
		fnErr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(fnErr, fmt.Errorf("leave network namespace %q: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// DialContext dials address over TCP from inside namespace ns.
func DialContext(ctx context.Context, ns, address string) (net.Conn, error) {
	var conn net.Conn
	err := Do(ns, func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", address)
		conn = c
		return err
	})
	return conn, err
}

// Listen listens on TCP address inside namespace ns.
func Listen(ns, address string) (net.Listener, error) {
	var l net.Listener
	err := Do(ns, func() error {
		var err error
		l, err = net.Listen("tcp", address)
		return err
	})
	return l, err
}
