package signer

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"open-cluster-management.io/cluster-proxy/internal/certs"
)

var testNow = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

func newTestCA(t *testing.T, now time.Time) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA(certs.CACommonName, now, certs.CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// TestRotationPhases walks a rotation through the Secret: each phase reads
// back as written, trusts the right CAs and signs with the right one.
func TestRotationPhases(t *testing.T) {
	g := NewWithT(t)
	old := newTestCA(t, testNow)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "signer",
		Annotations: map[string]string{AnnotationRotate: "ticket-1", "other": "kept"}},
		Data: map[string][]byte{CertKey: old.CertPEM, KeyKey: old.KeyPEM, "other": []byte("kept")}}

	a, err := authorityFromSecret(secret)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(a.Phase).To(Equal(PhaseNone))
	g.Expect(a.RotateRequested).To(Equal("ticket-1"))
	g.Expect(a.Trusted()).To(HaveLen(1))
	g.Expect(a.BundlePEM()).To(Equal(old.CertPEM))

	var created *certs.CA
	newCA := func(now time.Time) (*certs.CA, error) {
		created = newTestCA(t, now)
		return created, nil
	}
	step := func(a *Authority, at time.Time) *Authority {
		t.Helper()
		next, err := a.advanced(at, newCA)
		g.Expect(err).NotTo(HaveOccurred())
		next.toSecret(secret)
		back, err := authorityFromSecret(secret)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(back.Phase).To(Equal(next.Phase))
		g.Expect(back.BundlePEM()).To(Equal(next.BundlePEM()))
		g.Expect(secret.Data).To(HaveKeyWithValue("other", []byte("kept")))
		g.Expect(secret.Annotations).To(HaveKeyWithValue("other", "kept"))
		return back
	}

	trusting := step(a, testNow.Add(time.Hour))
	g.Expect(trusting.Phase).To(Equal(PhaseTrusting))
	g.Expect(trusting.PhaseSince).To(BeTemporally("==", testNow.Add(time.Hour)))
	g.Expect(trusting.Signing.Cert.Equal(old.Cert)).To(BeTrue(), "the old CA still signs")
	g.Expect(trusting.Next.Cert.Equal(created.Cert)).To(BeTrue())
	g.Expect(trusting.BundlePEM()).To(Equal(append(append([]byte{}, old.CertPEM...), created.CertPEM...)))

	signing := step(trusting, testNow.Add(2*time.Hour))
	g.Expect(signing.Phase).To(Equal(PhaseSigning))
	g.Expect(signing.Signing.Cert.Equal(created.Cert)).To(BeTrue(), "the new CA signs")
	g.Expect(signing.Previous.Equal(old.Cert)).To(BeTrue())
	g.Expect(secret.Data).NotTo(HaveKey(NextKeyKey))
	g.Expect(secret.Data).To(HaveKeyWithValue(KeyKey, created.KeyPEM), "only the signing CA's key is kept")
	g.Expect(secret.Data).NotTo(ContainElement(old.KeyPEM), "the previous CA's key is gone")
	g.Expect(signing.BundlePEM()).To(Equal(append(append([]byte{}, created.CertPEM...), old.CertPEM...)))

	done := step(signing, testNow.Add(3*time.Hour))
	g.Expect(done.Phase).To(Equal(PhaseNone))
	g.Expect(done.BundlePEM()).To(Equal(created.CertPEM), "the old CA is gone")
	g.Expect(secret.Data).NotTo(HaveKey(PreviousCertKey))
	g.Expect(secret.Annotations).NotTo(HaveKey(AnnotationPhase))
	g.Expect(secret.Annotations).NotTo(HaveKey(AnnotationPhaseSince))
}

func TestAuthorityFromSecretNamesWhatIsWrong(t *testing.T) {
	ca := newTestCA(t, testNow)
	base := func(annotations map[string]string, extra map[string][]byte) *corev1.Secret {
		data := map[string][]byte{CertKey: ca.CertPEM, KeyKey: ca.KeyPEM}
		for k, v := range extra {
			data[k] = v
		}
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "signer", Annotations: annotations}, Data: data}
	}
	since := testNow.Format(time.RFC3339)
	tests := []struct {
		name    string
		secret  *corev1.Secret
		wantErr string
	}{
		{"no key", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "signer"}, Data: map[string][]byte{CertKey: ca.CertPEM}},
			`CA secret ns/signer lacks "ca.crt" or "ca.key"`},
		{"unknown phase", base(map[string]string{AnnotationPhase: "Dropping", AnnotationPhaseSince: since}, nil),
			`has unknown phase "Dropping"`},
		{"no phase time", base(map[string]string{AnnotationPhase: "Trusting"}, nil), AnnotationPhaseSince},
		{"trusting without the next CA", base(map[string]string{AnnotationPhase: "Trusting", AnnotationPhaseSince: since}, nil),
			`in phase Trusting: "next-ca.crt" and "next-ca.key" hold no usable CA`},
		{"signing without the previous CA", base(map[string]string{AnnotationPhase: "Signing", AnnotationPhaseSince: since}, nil),
			`in phase Signing: "previous-ca.crt"`},
		{"a handled request", base(map[string]string{AnnotationRotate: "a", AnnotationRotateHandled: "a"}, nil), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			a, err := authorityFromSecret(tt.secret)
			if tt.wantErr == "" {
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(a.RotateRequested).To(BeEmpty())
				return
			}
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
}

// TestUnusedKeysAreNotTrusted: a next CA left in a Secret outside
// PhaseTrusting is not trusted.
func TestUnusedKeysAreNotTrusted(t *testing.T) {
	g := NewWithT(t)
	ca, stray := newTestCA(t, testNow), newTestCA(t, testNow)
	a, err := authorityFromSecret(&corev1.Secret{Data: map[string][]byte{
		CertKey: ca.CertPEM, KeyKey: ca.KeyPEM, NextCertKey: stray.CertPEM, NextKeyKey: stray.KeyPEM, PreviousCertKey: stray.CertPEM,
	}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(a.BundlePEM()).To(Equal(ca.CertPEM))
}
