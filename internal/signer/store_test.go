package signer

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// TestAuthorityReadsTheSecretOnce counts the store's requests: creating
// the CA costs one GET (not found) and one CREATE, and every later
// Authority or LoadOrCreate one GET, as every reconcile calls them.
func TestAuthorityReadsTheSecretOnce(t *testing.T) {
	g := NewWithT(t)
	var gets, creates atomic.Int32
	c := fake.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			gets.Add(1)
			return c.Get(ctx, key, obj, opts...)
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			creates.Add(1)
			return c.Create(ctx, obj, opts...)
		},
	}).Build()
	store := &Store{Client: c, Namespace: "ns", Name: "signer", Clock: clocktesting.NewFakePassiveClock(time.Now())}

	created, err := store.Authority(t.Context())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect([]int32{gets.Load(), creates.Load()}).To(Equal([]int32{1, 1}), "GETs and CREATEs to create the CA")
	g.Expect(store.Trusted()).To(HaveLen(1))

	loaded, err := store.Authority(t.Context())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(loaded.Signing.CertPEM).To(Equal(created.Signing.CertPEM))
	g.Expect(gets.Load()).To(Equal(int32(2)), "one GET per Authority")

	ca, err := store.LoadOrCreate(t.Context())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ca.CertPEM).To(Equal(created.Signing.CertPEM))
	g.Expect(gets.Load()).To(Equal(int32(3)), "one GET per LoadOrCreate")
	g.Expect(store.Certificate()).To(Equal(created.Signing.Cert))
}
