package localenv

import (
	"os"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

// TestHostsFilesWithHostAliases checks that a pod with hostAliases gets a
// file of its own: its namespace's names, kept current, plus its aliases.
func TestHostsFilesWithHostAliases(t *testing.T) {
	g := NewWithT(t)
	client := fake.NewClientset()
	h := newHosts(t.TempDir(), client, "198.18.1.1", nil)

	plain := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "agents", Name: "plain", UID: "u1"}}
	aliased := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "agents", Name: "aliased", UID: "u2"},
		Spec:       corev1.PodSpec{HostAliases: []corev1.HostAlias{{IP: "127.0.0.1", Hostnames: []string{"cluster-abc.open-cluster-management.proxy"}}}},
	}
	plainPath, aliasedPath := h.Path(plain), h.Path(aliased)
	g.Expect(aliasedPath).NotTo(Equal(plainPath))
	g.Expect(h.Path(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "agents", Name: "other"}})).To(Equal(plainPath),
		"pods without aliases share their namespace's file")

	// A Service with a ready endpoint shows up in both files.
	_, err := client.CoreV1().Services("agents").Create(t.Context(), &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "agents", Name: "web"}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = client.DiscoveryV1().EndpointSlices("agents").Create(t.Context(), &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "agents", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		Endpoints:  []discoveryv1.Endpoint{{Addresses: []string{"198.18.1.7"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(h.refresh(t.Context())).To(Succeed())

	for _, path := range []string{plainPath, aliasedPath} {
		data, err := os.ReadFile(path)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(data)).To(ContainSubstring("198.18.1.7 web.agents.svc.cluster.local web.agents.svc web.agents web\n"), path)
	}
	data, err := os.ReadFile(aliasedPath)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data)).To(HaveSuffix("# Entries added by HostAliases.\n127.0.0.1 cluster-abc.open-cluster-management.proxy\n"))
	data, err = os.ReadFile(plainPath)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data)).NotTo(ContainSubstring("cluster-abc"))
}
