package kubelet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
)

// Addresses BridgeNetwork gives pods: <Prefix>.10 to <Prefix>.250.
const (
	firstPodOctet = 10
	lastPodOctet  = 250
)

// BridgeNetwork is a PodNetwork that puts each pod in its own network
// namespace, <NetnsPrefix><first 8 characters of the pod UID>, linked by a
// veth pair to Bridge in NodeNetns: "eth0" in the pod, with an address
// from the bridge's /24 and a default route through Gateway. Addresses are
// reused once freed.
type BridgeNetwork struct {
	// NodeNetns is the namespace that holds Bridge, e.g. "cpx-cluster1".
	NodeNetns string
	// Bridge is the bridge in NodeNetns, e.g. "pods".
	Bridge string
	// Prefix is the first three octets of the pods' /24, e.g. "198.18.17".
	Prefix string
	// Gateway is the bridge's address, e.g. "198.18.17.1".
	Gateway string
	// NetnsPrefix starts the name of every pod namespace, e.g. "cpx-c1-".
	NetnsPrefix string

	mu   sync.Mutex
	used map[int]string // last octet -> pod UID
}

// Validate checks the network's fields.
func (n *BridgeNetwork) Validate() error {
	var errs []error
	if n.NodeNetns == "" || n.Bridge == "" || n.NetnsPrefix == "" {
		errs = append(errs, errors.New("NodeNetns, Bridge and NetnsPrefix are required"))
	}
	if ip := net.ParseIP(n.Prefix + ".1").To4(); ip == nil || strings.Count(n.Prefix, ".") != 2 {
		errs = append(errs, fmt.Errorf("the prefix %q is not the first three octets of an IPv4 address", n.Prefix))
	}
	if !strings.HasPrefix(n.Gateway, n.Prefix+".") || net.ParseIP(n.Gateway) == nil {
		errs = append(errs, fmt.Errorf("the gateway %q is not an address in %s.0/24", n.Gateway, n.Prefix))
	}
	if len(n.NetnsPrefix)+8 > 255 {
		errs = append(errs, fmt.Errorf("NetnsPrefix %q is too long", n.NetnsPrefix))
	}
	return errors.Join(errs...)
}

// Setup creates the pod's namespace, replacing one left by an earlier run,
// and returns its name and the pod's IP.
func (n *BridgeNetwork) Setup(ctx context.Context, podUID string) (string, string, error) {
	if len(podUID) < 8 {
		return "", "", fmt.Errorf("invalid pod UID %q", podUID)
	}
	ns := n.netnsName(podUID)
	n.mu.Lock()
	if n.used == nil {
		n.used = map[int]string{}
	}
	octet := 0
	for _, uid := range n.used {
		if uid != podUID && n.netnsName(uid) == ns {
			n.mu.Unlock()
			return "", "", fmt.Errorf("pods %s and %s would share network namespace %s", uid, podUID, ns)
		}
	}
	for i := firstPodOctet; i <= lastPodOctet && octet == 0; i++ {
		if uid, taken := n.used[i]; !taken || uid == podUID {
			octet = i
		}
	}
	if octet != 0 {
		n.used[octet] = podUID
	}
	n.mu.Unlock()
	if octet == 0 {
		return "", "", fmt.Errorf("no free pod address left in %s.0/24", n.Prefix)
	}
	ip, hostEnd := fmt.Sprintf("%s.%d", n.Prefix, octet), "veth"+podUID[:8]
	err := n.remove(ctx, podUID[:8])
	if err == nil {
		err = netns.Add(ctx, ns)
	}
	// Created from inside the pod namespace, so "eth0" cannot clash with
	// an interface of this process's namespace.
	for _, args := range [][]string{
		{"-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", hostEnd, "netns", n.NodeNetns},
		{"-n", n.NodeNetns, "link", "set", hostEnd, "master", n.Bridge, "up"},
		{"-n", ns, "addr", "add", ip + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "default", "via", n.Gateway},
	} {
		if err != nil {
			break
		}
		err = netns.IP(ctx, args...)
	}
	if err != nil {
		return "", "", errors.Join(fmt.Errorf("failed to set up the network of pod %s: %w", podUID, err),
			n.Teardown(context.WithoutCancel(ctx), podUID))
	}
	return ns, ip, nil
}

// Teardown deletes the pod's namespace (its veth pair dies with it) and
// frees its address.
func (n *BridgeNetwork) Teardown(ctx context.Context, podUID string) error {
	n.mu.Lock()
	for octet, uid := range n.used {
		if uid == podUID {
			delete(n.used, octet)
		}
	}
	n.mu.Unlock()
	if len(podUID) < 8 {
		return nil
	}
	return n.remove(ctx, podUID[:8])
}

// remove deletes the namespace of the pod whose UID starts with id. The
// host end of its veth pair goes first: the kernel removes a namespace's
// interfaces asynchronously, and a new Setup must not find the old one.
func (n *BridgeNetwork) remove(ctx context.Context, id string) error {
	if !netns.Exists(n.NetnsPrefix + id) {
		return nil
	}
	_ = netns.IP(ctx, "-n", n.NodeNetns, "link", "del", "veth"+id)
	return netns.Delete(ctx, n.NetnsPrefix+id)
}

// Cleanup deletes every namespace whose name starts with NetnsPrefix and
// forgets every address.
func (n *BridgeNetwork) Cleanup(ctx context.Context) error {
	n.mu.Lock()
	n.used = nil
	n.mu.Unlock()
	entries, err := os.ReadDir(netns.Path(""))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to list network namespaces: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if id, ok := strings.CutPrefix(e.Name(), n.NetnsPrefix); ok {
			errs = append(errs, n.remove(ctx, id))
		}
	}
	return errors.Join(errs...)
}

func (n *BridgeNetwork) netnsName(podUID string) string { return n.NetnsPrefix + podUID[:8] }

// resolverFiles make a pod's name lookups use its hosts file alone, the
// environment's stand-in for cluster DNS: nsswitch.conf names only files,
// and resolv.conf a loopback server no one runs, for resolvers that ignore
// nsswitch.conf.
var resolverFiles = []struct{ name, target, content string }{
	{name: "nsswitch.conf", target: "/etc/nsswitch.conf", content: "hosts: files\n"},
	{name: "resolv.conf", target: "/etc/resolv.conf", content: "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n"},
}

// writeResolverFiles writes resolverFiles into dir.
func writeResolverFiles(dir string) error {
	for _, f := range resolverFiles {
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(f.content), 0o644); err != nil {
			return fmt.Errorf("failed to write the pods' %s: %w", f.target, err)
		}
	}
	return nil
}
