package clusterprofile

import (
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	cpv1alpha1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
)

func TestMatches(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   bool
	}{
		{name: "OCM's, named", labels: map[string]string{"x-k8s.io/cluster-manager": "open-cluster-management", "open-cluster-management.io/cluster-name": "cluster1"}, want: true},
		{name: "OCM's, empty cluster name", labels: map[string]string{"x-k8s.io/cluster-manager": "open-cluster-management", "open-cluster-management.io/cluster-name": ""}, want: true},
		{name: "OCM's, no cluster name", labels: map[string]string{"x-k8s.io/cluster-manager": "open-cluster-management"}},
		{name: "another manager", labels: map[string]string{"x-k8s.io/cluster-manager": "fleet", "open-cluster-management.io/cluster-name": "cluster1"}},
		{name: "no labels"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			p := &cpv1alpha1.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Labels: tt.labels}}
			g.Expect(Matches(p)).To(Equal(tt.want))
		})
	}
}

func TestProvider(t *testing.T) {
	g := NewWithT(t)
	p := Provider("cluster1", "proxy-ns", []byte("CA PEM"))
	g.Expect(p.Name).To(Equal("open-cluster-management"))
	g.Expect(p.Cluster.Server).To(Equal("https://cluster-proxy-addon-user.proxy-ns:9092/cluster1"))
	g.Expect(p.Cluster.CertificateAuthorityData).To(Equal([]byte("CA PEM")))
	g.Expect(p.Cluster.Extensions).To(HaveLen(1))
	g.Expect(p.Cluster.Extensions[0].Name).To(Equal("client.authentication.k8s.io/exec"))
	g.Expect(p.Cluster.Extensions[0].Extension.Raw).To(MatchJSON(`{"clusterName":"cluster1"}`))
}

func TestUpsert(t *testing.T) {
	ours := Provider("cluster1", "proxy-ns", []byte("CA"))
	other := cpv1alpha1.AccessProvider{Name: "other", Cluster: clientcmdv1.Cluster{Server: "https://other.example", InsecureSkipTLSVerify: true}}
	stale := Provider("cluster1", "old-ns", []byte("old CA"))
	// The same provider as the API server returns it: the extension
	// spelled differently.
	respelled := *ours.DeepCopy()
	respelled.Cluster.Extensions[0].Extension = runtime.RawExtension{Raw: []byte(`{ "clusterName" : "cluster1" }`)}

	tests := []struct {
		name        string
		in          []cpv1alpha1.AccessProvider
		want        []cpv1alpha1.AccessProvider
		wantChanged bool
	}{
		{name: "none", in: nil, want: []cpv1alpha1.AccessProvider{ours}, wantChanged: true},
		{name: "others kept, ours appended", in: []cpv1alpha1.AccessProvider{other}, want: []cpv1alpha1.AccessProvider{other, ours}, wantChanged: true},
		{name: "stale replaced in place", in: []cpv1alpha1.AccessProvider{stale, other}, want: []cpv1alpha1.AccessProvider{ours, other}, wantChanged: true},
		{name: "up to date", in: []cpv1alpha1.AccessProvider{other, ours}, want: []cpv1alpha1.AccessProvider{other, ours}},
		{name: "up to date, spelled differently", in: []cpv1alpha1.AccessProvider{respelled}, want: []cpv1alpha1.AccessProvider{respelled}},
		{name: "every duplicate of ours replaced", in: []cpv1alpha1.AccessProvider{stale, other, stale}, want: []cpv1alpha1.AccessProvider{ours, other, ours}, wantChanged: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			var in []cpv1alpha1.AccessProvider
			for i := range tt.in {
				in = append(in, *tt.in[i].DeepCopy())
			}
			got, changed := Upsert(in, ours)
			g.Expect(changed).To(Equal(tt.wantChanged))
			g.Expect(jsonOf(t, got)).To(MatchJSON(jsonOf(t, tt.want)))
			g.Expect(jsonOf(t, in)).To(MatchJSON(jsonOf(t, tt.in)), "the input is not modified")
		})
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
