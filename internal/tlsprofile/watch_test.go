package tlsprofile_test

import (
	"crypto/tls"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"open-cluster-management.io/cluster-proxy/internal/tlsprofile"
)

func TestWatcherFollowsTheConfigMap(t *testing.T) {
	g := NewWithT(t)
	ctx := t.Context()
	const ns = "agent"
	client := fake.NewClientset()
	w := tlsprofile.NewWatcher(client, ns)
	g.Expect(w.Current()).To(Equal(tlsprofile.Default()), "before the first read")
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	g.Eventually(w.Read()).WithTimeout(10 * time.Second).Should(BeClosed())
	g.Expect(w.Current()).To(Equal(tlsprofile.Default()), "absent")

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tlsprofile.ConfigMapName}, Data: map[string]string{tlsprofile.KeyMinVersion: "VersionTLS13"}}
	_, err := client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(w.Current).Should(Equal(tlsprofile.Profile{MinVersion: tls.VersionTLS13}), "created")

	cm.Data = map[string]string{tlsprofile.KeyCipherSuites: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"}
	_, err = client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	want := tlsprofile.Profile{MinVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}
	g.Eventually(w.Current).Should(Equal(want), "changed: the missing key gets its default")

	cm.Data = map[string]string{tlsprofile.KeyMinVersion: "TLS9000"}
	_, err = client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Consistently(w.Current).WithTimeout(500*time.Millisecond).Should(Equal(want), "invalid: the last good profile stays")

	// Another ConfigMap in the namespace is not the profile.
	_, err = client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other"},
		Data: map[string]string{tlsprofile.KeyMinVersion: "VersionTLS11"}}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	g.Expect(client.CoreV1().ConfigMaps(ns).Delete(ctx, tlsprofile.ConfigMapName, metav1.DeleteOptions{})).To(Succeed())
	g.Eventually(w.Current).Should(Equal(tlsprofile.Default()), "deleted")
	g.Consistently(w.Current).WithTimeout(300 * time.Millisecond).Should(Equal(tlsprofile.Default()))
}

func TestWatcherStartsFromAnInvalidConfigMapWithTheDefault(t *testing.T) {
	g := NewWithT(t)
	const ns = "agent"
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tlsprofile.ConfigMapName},
		Data: map[string]string{tlsprofile.KeyMinVersion: "VersionTLS9"}})
	w := tlsprofile.NewWatcher(client, ns)
	go func() { _ = w.Run(t.Context()) }()
	g.Eventually(w.Read()).WithTimeout(10 * time.Second).Should(BeClosed())
	g.Expect(w.Current()).To(Equal(tlsprofile.Default()))
}

func TestWatcherReadsAnExistingConfigMapBeforeReporting(t *testing.T) {
	g := NewWithT(t)
	const ns = "agent"
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: tlsprofile.ConfigMapName},
		Data: map[string]string{tlsprofile.KeyMinVersion: "VersionTLS13"}})
	w := tlsprofile.NewWatcher(client, ns)
	go func() { _ = w.Run(t.Context()) }()
	g.Eventually(w.Read()).WithTimeout(10 * time.Second).Should(BeClosed())
	g.Expect(w.Current()).To(Equal(tlsprofile.Profile{MinVersion: tls.VersionTLS13}), "in force as soon as Read is closed")
}
