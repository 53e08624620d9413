package proxyconfig_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/signer"
)

var _ = Describe("The CA store's certificate, for the expiry metric", Label("proxyconfig", "signer", "metrics"), func() {
	It("is the CA last created or loaded, and none before or after a failed load", func(ctx SpecContext) {
		const secretName = "metrics-signer"
		DeferCleanup(func(ctx SpecContext) {
			secret := &corev1.Secret{}
			secret.Namespace, secret.Name = managerNamespace, secretName
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, secret))).To(Succeed())
		})
		creator := &signer.Store{Client: k8sClient, Namespace: managerNamespace, Name: secretName, Clock: fakeClock}
		Expect(creator.Certificate()).To(BeNil())
		created, err := creator.LoadOrCreate(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(creator.Certificate()).To(Equal(created.Cert))

		loader := &signer.Store{Client: k8sClient, Namespace: managerNamespace, Name: secretName, Clock: fakeClock}
		loaded, err := loader.LoadOrCreate(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(loader.Certificate().Raw).To(Equal(created.Cert.Raw))
		Expect(loader.Certificate()).To(Equal(loaded.Cert))

		broken := &corev1.Secret{Data: map[string][]byte{"ca.crt": []byte("not a certificate"), "ca.key": []byte("nope")}}
		broken.Namespace, broken.Name = managerNamespace, "metrics-broken-signer"
		Expect(k8sClient.Create(ctx, broken)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, broken))).To(Succeed()) })
		failing := &signer.Store{Client: k8sClient, Namespace: managerNamespace, Name: broken.Name, Clock: fakeClock}
		_, err = failing.LoadOrCreate(ctx)
		Expect(err).To(HaveOccurred(), "the witness that the load ran")
		Expect(failing.Certificate()).To(BeNil())
	})
})
