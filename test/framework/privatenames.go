package framework

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// privateNamesScript runs in the private mount namespace unshare(1)
// created: it bind-mounts "$1" over /etc/hosts, "$2" over /etc/resolv.conf
// and, when the host has one, "$3" over /etc/nsswitch.conf, then execs the
// binary.
const privateNamesScript = `mount --bind "$1" /etc/hosts || exit 1
mount --bind "$2" /etc/resolv.conf || exit 1
if [ -e /etc/nsswitch.conf ]; then mount --bind "$3" /etc/nsswitch.conf || exit 1; fi
shift 3
exec "$@"`

// privateResolvConf names a DNS server on loopback (there is normally
// none): a query that still reaches DNS stays on the host and fails at
// once.
const privateResolvConf = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"

// privateNSSwitch resolves host names from /etc/hosts only.
const privateNSSwitch = "hosts: files\n"

// benchmarkingNet is 198.18.0.0/15 (RFC 2544), which never leaves a test
// host.
var benchmarkingNet = &net.IPNet{IP: net.IPv4(198, 18, 0, 0), Mask: net.CIDRMask(15, 32)}

// StartProcessWithPrivateNames starts binary like StartProcess, in a private
// mount namespace (unshare(1); with a user namespace when not root) whose
// name resolution is the caller's only: /etc/hosts maps each host name of
// names to its address (and localhost to 127.0.0.1), /etc/nsswitch.conf
// resolves hosts from that file only, and /etc/resolv.conf names no
// reachable server. A name missing from names therefore fails to resolve at
// once ("no such host"), and no lookup ever leaves the host. Addresses must
// be loopback (127.0.0.0/8) or benchmarking (198.18.0.0/15) ones. The
// files are written to dir as <name>.hosts, <name>.resolv.conf and
// <name>.nsswitch.conf. The process's PID is the binary's (unshare and the
// shell exec it), so Stop and signals reach it.
func StartProcessWithPrivateNames(name, binary string, args, env []string, dir string, names map[string]string) (*Process, error) {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return nil, fmt.Errorf("failed to start %s: the name %q is not a plain file name", binary, name)
	}
	hosts := []string{"127.0.0.1 localhost"}
	for host, addr := range names {
		if host == "" || strings.ContainsAny(host, " \t\r\n#") {
			return nil, fmt.Errorf("failed to start %s: invalid host name %q", name, host)
		}
		ip := net.ParseIP(addr)
		allowed := ip != nil && (ip.To4() != nil && ip.IsLoopback() || benchmarkingNet.Contains(ip))
		if !allowed {
			return nil, fmt.Errorf("failed to start %s: address %q of %s is not in 127.0.0.0/8 or 198.18.0.0/15", name, addr, host)
		}
		hosts = append(hosts, ip.String()+" "+host)
	}
	sort.Strings(hosts[1:])
	hosts = append(hosts, "::1 localhost")

	for _, tool := range []string{"unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("failed to start %s with private names: %w", name, err)
		}
	}
	unshare, _ := exec.LookPath("unshare")
	files := []struct{ suffix, content string }{
		{".hosts", strings.Join(hosts, "\n") + "\n"},
		{".resolv.conf", privateResolvConf},
		{".nsswitch.conf", privateNSSwitch},
	}
	paths := make([]string, 0, len(files))
	for _, f := range files {
		path := filepath.Join(dir, name+f.suffix)
		if err := os.WriteFile(path, []byte(f.content), 0o644); err != nil {
			return nil, fmt.Errorf("failed to write %s of %s: %w", path, name, err)
		}
		paths = append(paths, path)
	}
	absBinary, err := filepath.Abs(binary)
	if err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", name, err)
	}
	unshareArgs := []string{"--mount"}
	if os.Geteuid() != 0 {
		unshareArgs = []string{"--user", "--map-root-user", "--mount"}
	}
	unshareArgs = append(unshareArgs, "--", "/bin/sh", "-c", privateNamesScript, "sh")
	unshareArgs = append(unshareArgs, paths...)
	unshareArgs = append(unshareArgs, absBinary)
	return StartProcess(name, unshare, append(unshareArgs, args...), env, dir)
}
