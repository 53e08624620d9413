package localenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// clusterDomain is the DNS suffix of Services.
const clusterDomain = "svc.cluster.local"

// hostsRefresh is how often the hosts files follow Services and endpoints.
const hostsRefresh = 2 * time.Second

// hosts keeps one /etc/hosts file per namespace of a cluster, the
// environment's stand-in for cluster DNS: every Service name resolves to
// its ready endpoints (pods reach them directly on the pods bridge, so
// Service ports must equal target ports), ExternalName Services to what
// their target resolves to, and the static names to fixed addresses.
type hosts struct {
	dir    string
	client kubernetes.Interface
	// apiServer is what kubernetes.default resolves to.
	apiServer string
	// static are extra names, e.g. the hub's names in a managed cluster.
	static map[string]string

	mu sync.Mutex
	// files are the files handed out, by file name: a namespace's, or a
	// pod's with hostAliases.
	files map[string]hostsFile
	table map[string][]string // fully qualified name -> addresses
}

// hostsFile is what one hosts file holds: the names of a namespace and the
// host aliases of the pod it belongs to, if any.
type hostsFile struct {
	namespace string
	aliases   []corev1.HostAlias
}

func newHosts(dir string, client kubernetes.Interface, apiServer string, static map[string]string) *hosts {
	return &hosts{dir: dir, client: client, apiServer: apiServer, static: static,
		files: map[string]hostsFile{}, table: map[string][]string{}}
}

// Path returns the hosts file of pod, writing it first if it does not exist
// yet: its namespace's file, or, for a pod with hostAliases, a file of its
// own that adds them.
func (h *hosts) Path(pod *corev1.Pod) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	name := pod.Namespace
	if len(pod.Spec.HostAliases) > 0 {
		name = pod.Namespace + "_" + string(pod.UID)
	}
	h.files[name] = hostsFile{namespace: pod.Namespace, aliases: pod.Spec.HostAliases}
	path := filepath.Join(h.dir, name)
	if _, err := os.Stat(path); err != nil {
		_ = h.write(name)
	}
	return path
}

// run refreshes the files until ctx is done.
func (h *hosts) run(ctx context.Context) {
	var failures atomic.Int32
	for {
		if err := h.refresh(ctx); err != nil && ctx.Err() == nil && failures.Add(1)%10 == 1 {
			klog.FromContext(ctx).Error(err, "Refreshing hosts files failed", "dir", h.dir)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(hostsRefresh):
		}
	}
}

func (h *hosts) refresh(ctx context.Context) error {
	services, err := h.client.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	slices, err := h.client.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	ready := map[string][]string{} // namespace/service -> addresses
	for _, s := range slices.Items {
		key := s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ready[key] = append(ready[key], e.Addresses...)
			}
		}
	}
	table := map[string][]string{}
	for name, addr := range h.static {
		table[name] = []string{addr}
	}
	table["kubernetes.default."+clusterDomain] = []string{h.apiServer}
	var external []corev1.Service
	for _, svc := range services.Items {
		fqdn := svc.Name + "." + svc.Namespace + "." + clusterDomain
		switch {
		case svc.Spec.Type == corev1.ServiceTypeExternalName:
			external = append(external, svc)
		case svc.Namespace == metav1.NamespaceDefault && svc.Name == "kubernetes":
		default:
			if addrs := ready[svc.Namespace+"/"+svc.Name]; len(addrs) > 0 {
				sort.Strings(addrs)
				table[fqdn] = addrs
			}
		}
	}
	for _, svc := range external {
		target := strings.TrimSuffix(svc.Spec.ExternalName, ".")
		addrs := table[target]
		if ip := net.ParseIP(target); ip != nil {
			addrs = []string{target}
		}
		if len(addrs) > 0 {
			table[svc.Name+"."+svc.Namespace+"."+clusterDomain] = addrs
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.table = table
	for name := range h.files {
		if err := h.write(name); err != nil {
			return err
		}
	}
	return nil
}

// write renders the file name from the table, in place (pods have it
// bind-mounted, which pins the inode), and only when it changed.
func (h *hosts) write(name string) error {
	file := h.files[name]
	namespace := file.namespace
	var b bytes.Buffer
	b.WriteString("127.0.0.1 localhost\n::1 localhost\n")
	names := make([]string, 0, len(h.table))
	for name := range h.table {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, fqdn := range names {
		aliases := []string{fqdn}
		if short, ok := strings.CutSuffix(fqdn, "."+clusterDomain); ok {
			// <svc>.<ns>.svc.cluster.local, <svc>.<ns>.svc, <svc>.<ns>, and <svc>
			// in its own namespace (the search path of a pod).
			aliases = append(aliases, short+".svc", short)
			if svc, ns, _ := strings.Cut(short, "."); ns == namespace {
				aliases = append(aliases, svc)
			}
		}
		for _, addr := range h.table[fqdn] {
			fmt.Fprintf(&b, "%s %s\n", addr, strings.Join(aliases, " "))
		}
	}
	if len(file.aliases) > 0 {
		b.WriteString("# Entries added by HostAliases.\n")
		for _, a := range file.aliases {
			fmt.Fprintf(&b, "%s %s\n", a.IP, strings.Join(a.Hostnames, " "))
		}
	}
	path := filepath.Join(h.dir, name)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b.Bytes()) {
		return nil
	}
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b.Bytes())
	return errors.Join(err, f.Close())
}

// serviceDialer dials a ready endpoint of a Service port from inside the
// namespace of the pods bridge, round-robin: the stand-in for a
// LoadBalancer in front of the Service.
func serviceDialer(client kubernetes.Interface, ns string, locate func(context.Context) (string, string, error), portName string) dialFunc {
	var next atomic.Uint32
	return func(ctx context.Context) (net.Conn, error) {
		namespace, service, err := locate(ctx)
		if err != nil {
			return nil, err
		}
		slices, err := client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + service,
		})
		if err != nil {
			return nil, err
		}
		var targets []string
		for _, s := range slices.Items {
			for _, p := range s.Ports {
				if p.Name == nil || *p.Name != portName || p.Port == nil {
					continue
				}
				for _, e := range s.Endpoints {
					if e.Conditions.Ready != nil && !*e.Conditions.Ready {
						continue
					}
					for _, a := range e.Addresses {
						targets = append(targets, net.JoinHostPort(a, fmt.Sprint(*p.Port)))
					}
				}
			}
		}
		if len(targets) == 0 {
			return nil, fmt.Errorf("service %s/%s has no ready endpoint for port %q", namespace, service, portName)
		}
		sort.Strings(targets)
		return dialIn(ns, targets[int(next.Add(1))%len(targets)])(ctx)
	}
}
