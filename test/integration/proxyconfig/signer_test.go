package proxyconfig_test

import (
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/signer"
)

var _ = Describe("The CA store", Label("proxyconfig", "signer"), func() {
	It("ends with one CA when several managers create it at once", func(ctx SpecContext) {
		const racers = 8
		const secretName = "raced-signer"
		DeferCleanup(func(ctx SpecContext) {
			secret := &corev1.Secret{}
			secret.Namespace, secret.Name = managerNamespace, secretName
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, secret))).To(Succeed())
		})

		// Each racer is a separate manager: its own client and connection.
		stores := make([]*signer.Store, racers)
		for i := range stores {
			c, err := client.New(apiServer.Config, client.Options{Scheme: scheme})
			Expect(err).NotTo(HaveOccurred())
			stores[i] = &signer.Store{Client: c, Namespace: managerNamespace, Name: secretName, Clock: fakeClock}
		}
		cas := make([]*certs.CA, racers)
		errs := make([]error, racers)
		var start, done sync.WaitGroup
		start.Add(1)
		for i := range stores {
			done.Add(1)
			go func() {
				defer done.Done()
				start.Wait()
				cas[i], errs[i] = stores[i].LoadOrCreate(ctx)
			}()
		}
		start.Done()
		done.Wait()

		for i := range cas {
			Expect(errs[i]).NotTo(HaveOccurred())
			Expect(cas[i].Cert.Equal(cas[0].Cert)).To(BeTrue(), "racer %d uses a different CA", i)
		}
		secret := &corev1.Secret{}
		Expect(get(ctx, managerNamespace, secretName, secret)).To(Succeed())
		stored, err := certs.ParseCA(secret.Data["ca.crt"], secret.Data["ca.key"])
		Expect(err).NotTo(HaveOccurred())
		Expect(stored.Cert.Equal(cas[0].Cert)).To(BeTrue(), "the racers must use the CA that was stored")
	})

	It("loads a CA written by the existing addon (RSA key, PKCS#8)", func(ctx SpecContext) {
		// The existing addon stores an RSA-2048 CA; an upgrade must keep it so
		// agent certificates stay valid.
		existing := rsaCA()
		secret := &corev1.Secret{Data: map[string][]byte{"ca.crt": existing.certPEM, "ca.key": existing.keyPEM}}
		secret.Namespace, secret.Name = managerNamespace, "existing-signer"
		Expect(k8sClient.Create(ctx, secret)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, secret))).To(Succeed()) })

		store := &signer.Store{Client: k8sClient, Namespace: managerNamespace, Name: "existing-signer", Clock: fakeClock}
		ca, err := store.LoadOrCreate(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(ca.Cert.Raw).To(Equal(existing.cert.Raw))
	})

	It("refuses a CA Secret that holds no usable CA, naming it", func(ctx SpecContext) {
		secret := &corev1.Secret{Data: map[string][]byte{"ca.crt": []byte("not a certificate"), "ca.key": []byte("nope")}}
		secret.Namespace, secret.Name = managerNamespace, "broken-signer"
		Expect(k8sClient.Create(ctx, secret)).To(Succeed())
		DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, secret))).To(Succeed()) })

		store := &signer.Store{Client: k8sClient, Namespace: managerNamespace, Name: "broken-signer", Clock: fakeClock}
		_, err := store.LoadOrCreate(ctx)
		Expect(err).To(MatchError(ContainSubstring("CA secret " + managerNamespace + "/broken-signer holds no usable CA")))
		Expect(get(ctx, managerNamespace, "broken-signer", secret)).To(Succeed())
		Expect(secret.Data["ca.crt"]).To(Equal([]byte("not a certificate")), "a broken CA Secret must never be overwritten")
	})
})
