package localenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
)

// etcNetns is where `ip netns exec` finds per-namespace /etc files: it
// bind-mounts /etc/netns/<ns>/hosts over /etc/hosts for processes it runs.
const etcNetns = "/etc/netns"

// rootUplink is the root namespace's interface on the uplink.
const rootUplink = "cpx-uplink"

// setupNetworks creates the namespaces, bridges and links of the layout
// (see the package documentation) and the node hosts files, recording
// every namespace so removeNetworks can delete them.
func setupNetworks(ctx context.Context, stateDir string) error {
	if err := netns.Check(ctx); err != nil {
		return err
	}
	hub := Clusters()[0]
	names := []string{netnsPrefix + webhookNetnsSuffix}
	for _, c := range Clusters() {
		names = append(names, c.Netns())
	}
	for _, ns := range names {
		if netns.Exists(ns) {
			return fmt.Errorf("network namespace %s already exists: run `make local-down` first", ns)
		}
	}
	for _, ns := range names {
		if err := appendLine(filepath.Join(stateDir, netnsFile), ns); err != nil {
			return err
		}
		if err := netns.Add(ctx, ns); err != nil {
			return err
		}
	}
	if err := netns.AddBridge(ctx, hub.Netns(), uplinkBridge, HubUplinkIP+"/24"); err != nil {
		return err
	}
	if err := netns.AddVeth(ctx,
		netns.Link{Name: rootUplink, CIDR: RootUplinkIP + "/24"},
		netns.Link{Namespace: hub.Netns(), Name: "root", Bridge: uplinkBridge}); err != nil {
		return err
	}
	for _, c := range Clusters() {
		if err := netns.AddBridge(ctx, c.Netns(), podsBridge, c.Gateway()+"/24"); err != nil {
			return err
		}
		hostsFile := fmt.Sprintf("127.0.0.1 localhost\n%s %s\n", "127.0.0.1", HubHostname)
		if !c.Hub {
			if err := netns.AddVeth(ctx,
				netns.Link{Namespace: c.Netns(), Name: "uplink", CIDR: c.UplinkIP() + "/24"},
				netns.Link{Namespace: hub.Netns(), Name: "up-" + c.Name, Bridge: uplinkBridge}); err != nil {
				return err
			}
			hostsFile = fmt.Sprintf("127.0.0.1 localhost\n%s %s %s\n", HubUplinkIP, HubHostname, EntrypointHostname)
		}
		if err := writeFile(filepath.Join(etcNetns, c.Netns(), "hosts"), []byte(hostsFile), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// removeNetworks deletes the recorded namespaces (pod namespaces first)
// and their /etc/netns files. Missing ones are fine.
func removeNetworks(ctx context.Context, stateDir string) error {
	data, err := os.ReadFile(filepath.Join(stateDir, netnsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	// Pod namespaces of the kubelet stand-ins, by their recorded prefixes.
	entries, _ := os.ReadDir("/run/netns")
	for _, c := range Clusters() {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), c.PodNetnsPrefix()) {
				errs = append(errs, netns.Delete(ctx, e.Name()))
			}
		}
	}
	for _, ns := range strings.Fields(string(data)) {
		if !strings.HasPrefix(ns, netnsPrefix) {
			continue
		}
		errs = append(errs, netns.Delete(ctx, ns))
		if err := os.RemoveAll(filepath.Join(etcNetns, ns)); err != nil {
			errs = append(errs, err)
		}
	}
	// A deleted namespace lives on in the kernel while sockets of it linger
	// (TIME_WAIT), and with it the root end of the uplink: delete the pair.
	if _, err := os.Stat(filepath.Join("/sys/class/net", rootUplink)); err == nil {
		errs = append(errs, netns.IP(ctx, "link", "del", rootUplink))
	}
	// /etc/netns itself only if we left it empty.
	_ = os.Remove(etcNetns)
	return errors.Join(errs...)
}

func appendLine(path, line string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, line)
	return errors.Join(err, f.Close())
}
