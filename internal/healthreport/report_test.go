package healthreport

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
)

var testNow = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

// validReport is a report every test starts from.
func validReport() Report {
	return Report{
		Version:     Version,
		ServerID:    "proxy-server-0",
		ServerCount: 3,
		UpdateTime:  testNow,
		Clusters: []Cluster{
			{Name: "cluster2", Agents: 1},
			{Name: "cluster1", Agents: 2, Certificate: &Certificate{
				NotBefore: testNow.Add(-24 * time.Hour), NotAfter: testNow.Add(100 * 24 * time.Hour),
				Serial: "1a2b", Issuer: "open-cluster-management:cluster-proxy", Signer: "signer-0123456789abcdef0123456789abcdef",
			}},
		},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	g := NewWithT(t)
	in := validReport()
	data, err := Encode(in)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(in.Clusters[0].Name).To(Equal("cluster2"), "Encode must not reorder its argument's clusters")

	out, err := Decode(data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.Clusters).To(HaveLen(2))
	g.Expect(out.Clusters[0].Name).To(Equal("cluster1"), "clusters are sorted by name")
	g.Expect(out.Clusters[0].Certificate).To(Equal(in.Clusters[1].Certificate))
	g.Expect(out.ServerID).To(Equal(in.ServerID))
	g.Expect(out.ServerCount).To(Equal(3))
	g.Expect(out.UpdateTime).To(BeTemporally("==", testNow))

	c, ok := out.Cluster("cluster2")
	g.Expect(ok).To(BeTrue())
	g.Expect(c.Agents).To(Equal(1))
	g.Expect(c.Connected()).To(BeTrue())
	_, ok = out.Cluster("cluster3")
	g.Expect(ok).To(BeFalse())
}

func TestEncodeFormat(t *testing.T) {
	g := NewWithT(t)
	r := validReport()
	r.Clusters = nil
	data, err := Encode(r)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data)).To(MatchJSON(`{"version":1,"serverID":"proxy-server-0","serverCount":3,"updateTime":"2026-03-01T12:00:00Z","clusters":[]}`))
}

func TestEncodeRefusesInvalidReports(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Report)
		want   []string
	}{
		{name: "another version", mutate: func(r *Report) { r.Version = 2; r.ServerID = "" },
			want: []string{`version: Invalid value: 2: this build reads version 1`}},
		{name: "no server ID", mutate: func(r *Report) { r.ServerID = "" }, want: []string{"serverID: Required value"}},
		{name: "no server count", mutate: func(r *Report) { r.ServerCount = 0 }, want: []string{"serverCount: Invalid value: 0: must be at least 1"}},
		{name: "no update time", mutate: func(r *Report) { r.UpdateTime = time.Time{} }, want: []string{"updateTime: Required value"}},
		{name: "a cluster name that is no DNS label", mutate: func(r *Report) { r.Clusters[0].Name = "a.b" },
			want: []string{`clusters[0].name: Invalid value: "a.b"`}},
		{name: "an empty cluster name", mutate: func(r *Report) { r.Clusters[0].Name = "" }, want: []string{`clusters[0].name: Invalid value: ""`}},
		{name: "a cluster twice", mutate: func(r *Report) { r.Clusters[0].Name = "cluster1" }, want: []string{`clusters[1].name: Duplicate value: "cluster1"`}},
		{name: "negative agents", mutate: func(r *Report) { r.Clusters[0].Agents = -1 }, want: []string{"clusters[1].agents: Invalid value: -1"}},
		{name: "a certificate without notBefore", mutate: func(r *Report) { r.Clusters[1].Certificate.NotBefore = time.Time{} },
			want: []string{"clusters[0].certificate.notBefore: Required value"}},
		{name: "a certificate ending before it starts", mutate: func(r *Report) {
			r.Clusters[1].Certificate.NotAfter = r.Clusters[1].Certificate.NotBefore
		}, want: []string{"clusters[0].certificate.notAfter: Invalid value: \"2026-02-28T12:00:00Z\": must be after notBefore"}},
		{name: "a trusted signer that is no signer unit", mutate: func(r *Report) { r.TrustedSigners = []string{"signer-ab", "ab"} },
			want: []string{`trustedSigners[1]: Invalid value: "ab": must be a signer organizational unit`}},
		{name: "a serving signer that is no signer unit", mutate: func(r *Report) { r.ServingSigners = []string{""} },
			want: []string{`servingSigners[0]: Invalid value: ""`}},
		{name: "several problems at once", mutate: func(r *Report) { r.ServerID = ""; r.ServerCount = -1 },
			want: []string{"serverID: Required value", "serverCount: Invalid value: -1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			r := validReport()
			tt.mutate(&r)
			_, err := Encode(r)
			g.Expect(err).To(HaveOccurred())
			for _, w := range tt.want {
				g.Expect(err.Error()).To(ContainSubstring(w))
			}
		})
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		wantErr string
		check   func(g Gomega, r Report)
	}{
		{
			name: "unknown fields are ignored",
			data: `{"version":1,"serverID":"s","serverCount":1,"updateTime":"2026-03-01T12:00:00Z","future":true,
				"clusters":[{"name":"c","agents":1,"zone":"a"}]}`,
			check: func(g Gomega, r Report) { g.Expect(r.Clusters).To(HaveLen(1)) },
		},
		{
			name: "unsorted clusters come back sorted",
			data: `{"version":1,"serverID":"s","serverCount":1,"updateTime":"2026-03-01T12:00:00Z",
				"clusters":[{"name":"c","agents":1},{"name":"a","agents":1},{"name":"b","agents":0}]}`,
			check: func(g Gomega, r Report) {
				g.Expect([]string{r.Clusters[0].Name, r.Clusters[1].Name, r.Clusters[2].Name}).To(Equal([]string{"a", "b", "c"}))
				b, ok := r.Cluster("b")
				g.Expect(ok).To(BeTrue())
				g.Expect(b.Connected()).To(BeFalse())
			},
		},
		{
			name:    "a duplicate found after sorting",
			data:    `{"version":1,"serverID":"s","serverCount":1,"updateTime":"2026-03-01T12:00:00Z","clusters":[{"name":"b"},{"name":"a"},{"name":"b"}]}`,
			wantErr: `clusters[2].name: Duplicate value: "b"`,
		},
		{name: "a wrong type names the field", data: `{"version":1,"clusters":[{"name":"a","agents":"two"}]}`, wantErr: "clusters.agents"},
		{name: "a bad time names the field", data: `{"version":1,"updateTime":"yesterday"}`, wantErr: `parsing time "yesterday"`},
		{name: "a newer version", data: `{"version":2,"whatever":[]}`, wantErr: "version: Invalid value: 2: this build reads version 1"},
		{name: "no version", data: `{"serverID":"s"}`, wantErr: "version: Invalid value: 0"},
		{name: "not JSON", data: `serverID: s`, wantErr: "failed to parse the health report"},
		{name: "trailing data", data: `{"version":1} {}`, wantErr: "data after the JSON object"},
		{name: "empty", data: ``, wantErr: "failed to parse the health report: EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			r, err := Decode([]byte(tt.data))
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			tt.check(g, r)
		})
	}
}

// toConfigMap turns the apply configuration into the object the API server
// would store.
func toConfigMap(g Gomega, r Report, owner Owner) *corev1.ConfigMap {
	data, err := Encode(r)
	g.Expect(err).NotTo(HaveOccurred())
	ac, err := configMap("ns", owner, data)
	g.Expect(err).NotTo(HaveOccurred())
	cm := &corev1.ConfigMap{Data: ac.Data, BinaryData: ac.BinaryData}
	cm.Name, cm.Namespace, cm.Labels = *ac.Name, *ac.Namespace, ac.Labels
	for _, ref := range ac.OwnerReferences {
		g.Expect(ref.BlockOwnerDeletion).To(BeNil())
		g.Expect(*ref.Kind).To(Equal("Pod"))
		g.Expect(*ref.UID).To(Equal(owner.PodUID))
	}
	g.Expect(ac.OwnerReferences).To(HaveLen(map[bool]int{true: 1, false: 0}[owner.PodUID != ""]))
	return cm
}

func TestConfigMap(t *testing.T) {
	tests := []struct {
		name     string
		clusters int
		owner    Owner
		gzipped  bool
	}{
		{name: "a small report is readable JSON, owned by its pod", clusters: 10, owner: Owner{PodName: "p", PodUID: "uid-1"}},
		{name: "a report without a pod has no owner", clusters: 0, owner: Owner{PodName: "p"}},
		{name: "ten thousand clusters are gzipped", clusters: 10000, owner: Owner{PodName: "p", PodUID: "uid-1"}, gzipped: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			r := validReport()
			r.Clusters = nil
			for i := range tt.clusters {
				r.Clusters = append(r.Clusters, Cluster{Name: fmt.Sprintf("cluster-%05d", i), Agents: 1, Certificate: &Certificate{
					NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(180 * 24 * time.Hour), Serial: fmt.Sprintf("%032x", i),
					Issuer: "open-cluster-management:cluster-proxy", Signer: "signer-0123456789abcdef0123456789abcdef",
				}})
			}
			cm := toConfigMap(g, r, tt.owner)
			g.Expect(cm.Name).To(Equal("cluster-proxy-health-p"))
			g.Expect(IsReport(cm.Labels)).To(BeTrue())
			g.Expect(Selector().Matches(labels.Set(cm.Labels))).To(BeTrue())
			g.Expect(cm.Labels).To(HaveKeyWithValue("proxy.open-cluster-management.io/component-name", "proxy-server"))
			if tt.gzipped {
				g.Expect(cm.Data).To(BeEmpty())
				g.Expect(cm.BinaryData).To(HaveKey(GzipDataKey))
				g.Expect(len(cm.BinaryData[GzipDataKey])).To(BeNumerically("<", 512<<10), "a compressed report stays far from 1 MiB")
			} else {
				g.Expect(cm.BinaryData).To(BeEmpty())
				g.Expect(cm.Data).To(HaveKey(DataKey))
			}
			got, err := FromConfigMap(cm)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.Clusters).To(HaveLen(tt.clusters))
			if tt.clusters > 0 {
				last, ok := got.Cluster(fmt.Sprintf("cluster-%05d", tt.clusters-1))
				g.Expect(ok).To(BeTrue())
				g.Expect(last.Certificate.Serial).To(Equal(fmt.Sprintf("%032x", tt.clusters-1)))
			}
		})
	}
}

func TestFromConfigMapRefusesWhatIsNoReport(t *testing.T) {
	tests := []struct {
		name    string
		cm      *corev1.ConfigMap
		wantErr string
	}{
		{name: "no key", cm: &corev1.ConfigMap{Data: map[string]string{"other": "x"}}, wantErr: "holds no health report"},
		{name: "not gzip", cm: &corev1.ConfigMap{BinaryData: map[string][]byte{GzipDataKey: []byte("plain")}}, wantErr: "failed to decompress"},
		{name: "invalid JSON report", cm: &corev1.ConfigMap{Data: map[string]string{DataKey: `{"version":1}`}}, wantErr: "serverID: Required value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := FromConfigMap(tt.cm)
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
}

func TestWriterOptionsValidate(t *testing.T) {
	g := NewWithT(t)
	o := WriterOptions{Period: -time.Second, MinInterval: -time.Second}
	err := o.Validate()
	g.Expect(err).To(HaveOccurred())
	for _, w := range []string{"Client", "Namespace", "Owner.PodName", "the Period must not be negative", "the MinInterval must not be negative", "Snapshot"} {
		g.Expect(err.Error()).To(ContainSubstring(w))
	}
	g.Expect(strings.Count(err.Error(), "\n")).To(Equal(5), "one line per problem")

	o = WriterOptions{Client: fake.NewClientset().CoreV1(), Namespace: "ns", Owner: Owner{PodName: "p"}, Snapshot: func() Report { return Report{} }}
	g.Expect(o.Validate()).To(Succeed())
}

// TestWriterSpacesTriggeredWrites: triggers within MinInterval of the last
// write are merged into one write at its end.
func TestWriterSpacesTriggeredWrites(t *testing.T) {
	g := NewWithT(t)
	clk := clocktesting.NewFakeClock(testNow)
	var writes atomic.Int32
	w, err := NewWriter(WriterOptions{
		Client: fake.NewClientset().CoreV1(), Namespace: "ns", Owner: Owner{PodName: "p"},
		Period: time.Hour, MinInterval: time.Second, Clock: clk,
		Snapshot: func() Report {
			writes.Add(1)
			return Report{ServerID: "s", ServerCount: 1}
		},
	})
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		g.Expect(<-done).To(Succeed())
	}()

	g.Eventually(writes.Load).Should(BeEquivalentTo(1), "the write at start")
	for range 5 {
		w.Trigger()
	}
	g.Consistently(writes.Load, 200*time.Millisecond).Should(BeEquivalentTo(1), "a write sooner than MinInterval after the last")
	clk.Step(time.Second)
	g.Eventually(writes.Load).Should(BeEquivalentTo(2), "the triggers' write once MinInterval passed")
	g.Consistently(writes.Load, 200*time.Millisecond).Should(BeEquivalentTo(2), "the merged triggers wrote once")
}
