package addonhealth

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"open-cluster-management.io/cluster-proxy/internal/healthreport"
)

var (
	now = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)
	// goodCert has 90 of its 100 days left.
	goodCert = &healthreport.Certificate{NotBefore: now.Add(-10 * day), NotAfter: now.Add(90 * day), Serial: "1a", Signer: "signer-current"}
	// expiringCert has 9 of its 100 days left.
	expiringCert = &healthreport.Certificate{NotBefore: now.Add(-91 * day), NotAfter: now.Add(9 * day), Serial: "2b", Signer: "signer-current"}
	// oldCACert was issued by a CA the hub no longer trusts.
	oldCACert = &healthreport.Certificate{NotBefore: now.Add(-10 * day), NotAfter: now.Add(90 * day), Serial: "3c",
		Issuer: "open-cluster-management:cluster-proxy", Signer: "signer-old"}
)

const (
	day       = 24 * time.Hour
	staleness = 90 * time.Second
	grace     = 2 * time.Minute
)

// server is a report of server id, written age ago, listing cluster1 as
// c (nil: not listed).
func server(id string, age time.Duration, c *healthreport.Cluster) ServerReport {
	return ServerReport{ServerID: id, ServerCount: 3, UpdateTime: now.Add(-age), Cluster: c}
}

// fresh are the three proxy-servers' reports, 10 s old, listing cluster1
// as s1, s2 and s3 say (nil: not listed).
func fresh(s1, s2, s3 *healthreport.Cluster) []ServerReport {
	return []ServerReport{server("s1", fresh10sAgo, s1), server("s2", fresh10sAgo, s2), server("s3", fresh10sAgo, s3)}
}

// agent is cluster1's entry with one agent presenting cert.
func agent(cert *healthreport.Certificate) *healthreport.Cluster {
	return &healthreport.Cluster{Name: "cluster1", Agents: 1, Certificate: cert}
}

func cond(typ string, status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message}
}

func available(status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return cond("Available", status, reason, message)
}

func degraded(status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return cond("Degraded", status, reason, message)
}

// wasAvailable are the conditions of an addon that was healthy.
var wasAvailable = []metav1.Condition{
	available(metav1.ConditionTrue, ReasonConnected, "the proxy-agent of cluster1 is connected to 3 of 3 proxy-servers"),
	degraded(metav1.ConditionFalse, ReasonHealthy, "the proxy-agent of cluster1 is connected to 3 of 3 proxy-servers"),
}

const (
	all3        = "the proxy-agent of cluster1 is connected to 3 of 3 proxy-servers"
	twoOf3      = "the proxy-agent of cluster1 is connected to 2 of 3 proxy-servers"
	none        = "the proxy-agent of cluster1 is connected to none of the 3 proxy-servers"
	goodUntil   = "; its client certificate (serial 1a) is valid until 2026-05-30T12:00:00Z"
	expiring    = "; its client certificate (serial 2b) expires at 2026-03-10T12:00:00Z, within the last 10% of its lifetime"
	untrusted   = "; its client certificate (serial 3c) was issued by open-cluster-management:cluster-proxy (signer-old), a CA the hub no longer trusts"
	missingMsg  = "no proxy-server has reported on its agents in the last 1m30s"
	fresh10sAgo = 10 * time.Second
)

func TestEvaluate(t *testing.T) {
	// The reports are 10 s old: the first goes stale 80 s from now.
	staleAt := now.Add(staleness - fresh10sAgo)
	tests := []struct {
		name string
		// in's Cluster, Now, Staleness and Grace are filled in.
		in            Input
		wantAvailable metav1.Condition
		wantDegraded  metav1.Condition
		wantHold      bool
		wantShort     bool
		wantRecheckAt time.Time
	}{
		{
			name:          "connected to every proxy-server",
			in:            Input{ExpectedServers: 3, Reports: fresh(agent(goodCert), agent(goodCert), agent(goodCert))},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, all3),
			wantDegraded:  degraded(metav1.ConditionFalse, ReasonHealthy, all3+goodUntil),
			wantRecheckAt: staleAt,
		},
		{
			name:          "connected to every proxy-server, no certificate reported",
			in:            Input{ExpectedServers: 3, Reports: fresh(agent(nil), agent(nil), agent(nil))},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, all3),
			wantDegraded:  degraded(metav1.ConditionFalse, ReasonHealthy, all3),
			wantRecheckAt: staleAt,
		},
		{
			name:          "one proxy-server without the cluster's agent: partial HA",
			in:            Input{ExpectedServers: 3, Reports: fresh(agent(goodCert), agent(goodCert), nil)},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, twoOf3),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonPartiallyConnected, twoOf3),
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
		{
			name:          "a proxy-server listing the cluster with no agent does not count",
			in:            Input{ExpectedServers: 3, Reports: fresh(agent(goodCert), agent(goodCert), &healthreport.Cluster{Name: "cluster1", Agents: 0})},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, twoOf3),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonPartiallyConnected, twoOf3),
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
		{
			name: "a proxy-server that did not report counts against the agent, and the message says so",
			in: Input{ExpectedServers: 3, Reports: []ServerReport{
				server("s1", fresh10sAgo, agent(nil)), server("s2", fresh10sAgo, agent(nil)),
			}},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, twoOf3+" (1 of them did not report)"),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonPartiallyConnected, twoOf3+" (1 of them did not report)"),
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
		{
			name: "a stale report does not count",
			in: Input{ExpectedServers: 3, Reports: []ServerReport{
				server("s1", staleness, agent(nil)), server("s2", fresh10sAgo, nil), server("s3", fresh10sAgo, nil),
			}},
			wantAvailable: available(metav1.ConditionFalse, ReasonDisconnected, none),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonDisconnected, none),
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
		{
			name: "a server that reported twice counts once, as its newest report says",
			in: Input{ExpectedServers: 3, Reports: []ServerReport{
				server("s1", 20*time.Second, agent(nil)), server("s1", fresh10sAgo, nil),
				server("s2", fresh10sAgo, agent(nil)), server("s3", fresh10sAgo, agent(nil)),
			}},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, twoOf3),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonPartiallyConnected, twoOf3),
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
		{
			name: "no expected count: the reports' server count",
			in: Input{Reports: []ServerReport{
				{ServerID: "s1", ServerCount: 2, UpdateTime: now.Add(-fresh10sAgo), Cluster: agent(nil)},
				{ServerID: "s2", ServerCount: 2, UpdateTime: now.Add(-fresh10sAgo), Cluster: agent(nil)},
			}},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, "the proxy-agent of cluster1 is connected to 2 of 2 proxy-servers"),
			wantDegraded:  degraded(metav1.ConditionFalse, ReasonHealthy, "the proxy-agent of cluster1 is connected to 2 of 2 proxy-servers"),
			wantRecheckAt: staleAt,
		},
		{
			name:          "more proxy-servers than expected (a rollout's surge) is healthy",
			in:            Input{ExpectedServers: 3, Reports: append(fresh(agent(nil), agent(nil), agent(nil)), server("s4", fresh10sAgo, agent(nil)))},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, "the proxy-agent of cluster1 is connected to 4 proxy-servers (3 expected)"),
			wantDegraded:  degraded(metav1.ConditionFalse, ReasonHealthy, "the proxy-agent of cluster1 is connected to 4 proxy-servers (3 expected)"),
			wantRecheckAt: staleAt,
		},
		{
			name:          "connected to none, never was available: at once",
			in:            Input{ExpectedServers: 3, Reports: fresh(nil, nil, nil)},
			wantAvailable: available(metav1.ConditionFalse, ReasonDisconnected, none),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonDisconnected, none),
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
		{
			name:          "connected to none, was available, just fell short: held for the grace period",
			in:            Input{ExpectedServers: 3, Current: wasAvailable, Reports: fresh(nil, nil, nil)},
			wantHold:      true,
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
		{
			name: "connected to none, was available, short for almost the grace period: still held, recheck at its end",
			in: Input{ExpectedServers: 3, Current: wasAvailable, ShortSince: now.Add(-grace + time.Second), Reports: []ServerReport{
				server("s1", 0, nil), server("s2", 0, nil), server("s3", 0, nil),
			}},
			wantHold:      true,
			wantShort:     true,
			wantRecheckAt: now.Add(time.Second),
		},
		{
			name:          "connected to none, was available, short for the grace period: Available False",
			in:            Input{ExpectedServers: 3, Current: wasAvailable, ShortSince: now.Add(-grace), Reports: fresh(nil, nil, nil)},
			wantAvailable: available(metav1.ConditionFalse, ReasonDisconnected, none),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonDisconnected, none),
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
		{
			name: "connected to none, already not available: no grace",
			in: Input{ExpectedServers: 3, ShortSince: now, Current: []metav1.Condition{available(metav1.ConditionFalse, ReasonDisconnected, none)},
				Reports: fresh(nil, nil, nil)},
			wantAvailable: available(metav1.ConditionFalse, ReasonDisconnected, none),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonDisconnected, none),
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
		{
			name:          "partially connected, was fully: held for the grace period",
			in:            Input{ExpectedServers: 3, Current: wasAvailable, ShortSince: now.Add(-time.Minute), Reports: fresh(agent(nil), agent(nil), nil)},
			wantHold:      true,
			wantShort:     true,
			wantRecheckAt: now.Add(time.Minute),
		},
		{
			name: "partially connected, already reported Degraded: an improvement shows at once",
			in: Input{ExpectedServers: 3, ShortSince: now.Add(-time.Second), Current: []metav1.Condition{
				available(metav1.ConditionTrue, ReasonConnected, "the proxy-agent of cluster1 is connected to 1 of 3 proxy-servers"),
				degraded(metav1.ConditionTrue, ReasonPartiallyConnected, "the proxy-agent of cluster1 is connected to 1 of 3 proxy-servers"),
			}, Reports: fresh(agent(nil), agent(nil), nil)},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, twoOf3),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonPartiallyConnected, twoOf3),
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
		{
			name: "connected to none, Available but Degraded by its certificate: no grace",
			in: Input{ExpectedServers: 3, ShortSince: now.Add(-time.Second), Current: []metav1.Condition{
				available(metav1.ConditionTrue, ReasonConnected, all3),
				degraded(metav1.ConditionTrue, ReasonCertificateExpiring, all3+expiring),
			}, Reports: fresh(nil, nil, nil)},
			wantAvailable: available(metav1.ConditionFalse, ReasonDisconnected, none),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonDisconnected, none),
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
		{
			name: "connected to none, Available by the Lease prober with no Degraded: held",
			in: Input{ExpectedServers: 3, ShortSince: now.Add(-time.Second), Current: []metav1.Condition{
				available(metav1.ConditionTrue, "ManagedClusterAddOnLeaseUpdated", "cluster-proxy add-on is available."),
			}, Reports: []ServerReport{server("s1", 0, nil), server("s2", 0, nil), server("s3", 0, nil)}},
			wantHold:      true,
			wantShort:     true,
			wantRecheckAt: now.Add(staleness),
		},
		{
			name:          "no report at all",
			in:            Input{ExpectedServers: 3},
			wantAvailable: available(metav1.ConditionUnknown, ReasonReportsMissing, missingMsg),
			wantDegraded:  degraded(metav1.ConditionUnknown, ReasonReportsMissing, missingMsg),
			wantShort:     true,
		},
		{
			name: "only stale reports",
			in: Input{ExpectedServers: 3, Reports: []ServerReport{
				server("s1", staleness, agent(nil)), server("s2", time.Hour, agent(nil)),
			}},
			wantAvailable: available(metav1.ConditionUnknown, ReasonReportsMissing, missingMsg),
			wantDegraded:  degraded(metav1.ConditionUnknown, ReasonReportsMissing, missingMsg),
			wantShort:     true,
		},
		{
			name:          "reports missing on an addon that was available: held for the grace period",
			in:            Input{ExpectedServers: 3, Current: wasAvailable, ShortSince: now.Add(-time.Minute)},
			wantHold:      true,
			wantShort:     true,
			wantRecheckAt: now.Add(time.Minute),
		},
		{
			name:          "a certificate in the last tenth of its lifetime",
			in:            Input{ExpectedServers: 3, Reports: fresh(agent(expiringCert), agent(expiringCert), agent(expiringCert))},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, all3),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonCertificateExpiring, all3+expiring),
			wantRecheckAt: staleAt,
		},
		{
			name:          "the certificate that expires first counts",
			in:            Input{ExpectedServers: 3, Reports: fresh(agent(goodCert), agent(expiringCert), agent(goodCert))},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, all3),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonCertificateExpiring, all3+expiring),
			wantRecheckAt: staleAt,
		},
		{
			name: "a certificate right at the last tenth",
			in: Input{ExpectedServers: 1, Staleness: 100 * day, Reports: []ServerReport{
				server("s1", 0, agent(&healthreport.Certificate{NotBefore: now.Add(-90 * day), NotAfter: now.Add(10 * day)})),
			}},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, "the proxy-agent of cluster1 is connected to 1 of 1 proxy-servers"),
			wantDegraded: degraded(metav1.ConditionTrue, ReasonCertificateExpiring,
				"the proxy-agent of cluster1 is connected to 1 of 1 proxy-servers; its client certificate expires at 2026-03-11T12:00:00Z, within the last 10% of its lifetime"),
			wantRecheckAt: now.Add(10 * day),
		},
		{
			name: "a certificate a second before its last tenth: recheck then",
			in: Input{ExpectedServers: 1, Staleness: 100 * day, Reports: []ServerReport{
				server("s1", 0, agent(&healthreport.Certificate{NotBefore: now.Add(-90 * day), NotAfter: now.Add(10*day + time.Second)})),
			}},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, "the proxy-agent of cluster1 is connected to 1 of 1 proxy-servers"),
			wantDegraded: degraded(metav1.ConditionFalse, ReasonHealthy,
				"the proxy-agent of cluster1 is connected to 1 of 1 proxy-servers; its client certificate is valid until 2026-03-11T12:00:01Z"),
			wantRecheckAt: now.Add(time.Second - time.Second/10),
		},
		{
			name: "an expired certificate on a connection that lives on",
			in: Input{ExpectedServers: 1, Reports: []ServerReport{
				server("s1", fresh10sAgo, agent(&healthreport.Certificate{NotBefore: now.Add(-100 * day), NotAfter: now, Serial: "4d"})),
			}},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, "the proxy-agent of cluster1 is connected to 1 of 1 proxy-servers"),
			wantDegraded: degraded(metav1.ConditionTrue, ReasonCertificateExpiring,
				"the proxy-agent of cluster1 is connected to 1 of 1 proxy-servers; its client certificate (serial 4d) expired at 2026-03-01T12:00:00Z"),
			wantRecheckAt: staleAt,
		},
		{
			name:          "a certificate from a CA the hub no longer trusts",
			in:            Input{ExpectedServers: 3, TrustedSigners: []string{"signer-current"}, Reports: fresh(agent(oldCACert), agent(oldCACert), agent(oldCACert))},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, all3),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonCertificateUntrusted, all3+untrusted),
			wantRecheckAt: staleAt,
		},
		{
			name:          "no trusted signers given: the issuer is not checked",
			in:            Input{ExpectedServers: 3, Reports: fresh(agent(oldCACert), agent(oldCACert), agent(oldCACert))},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, all3),
			wantDegraded:  degraded(metav1.ConditionFalse, ReasonHealthy, all3+"; its client certificate (serial 3c) is valid until 2026-05-30T12:00:00Z"),
			wantRecheckAt: staleAt,
		},
		{
			name:          "every problem at once: the most serious names the reason, the message has them all",
			in:            Input{ExpectedServers: 3, TrustedSigners: []string{"signer-current"}, Reports: fresh(agent(oldCACert), agent(expiringCert), nil)},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, twoOf3),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonCertificateUntrusted, twoOf3+untrusted+expiring),
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
		{
			name:          "partially connected with an expiring certificate: the certificate names the reason",
			in:            Input{ExpectedServers: 3, Reports: fresh(agent(expiringCert), agent(expiringCert), nil)},
			wantAvailable: available(metav1.ConditionTrue, ReasonConnected, twoOf3),
			wantDegraded:  degraded(metav1.ConditionTrue, ReasonCertificateExpiring, twoOf3+expiring),
			wantShort:     true,
			wantRecheckAt: staleAt,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			in := tt.in
			in.Cluster, in.Now, in.Grace = "cluster1", now, grace
			if in.Staleness == 0 {
				in.Staleness = staleness
			}
			res := Evaluate(in)
			g.Expect(res.Available).To(Equal(tt.wantAvailable))
			g.Expect(res.Degraded).To(Equal(tt.wantDegraded))
			g.Expect(res.Hold).To(Equal(tt.wantHold))
			g.Expect(res.Short).To(Equal(tt.wantShort))
			g.Expect(res.RecheckAt).To(BeTemporally("==", tt.wantRecheckAt))
		})
	}
}

func TestForCluster(t *testing.T) {
	g := NewWithT(t)
	data, err := healthreport.Encode(healthreport.Report{
		Version: healthreport.Version, ServerID: "s1", ServerCount: 2, UpdateTime: now,
		Clusters: []healthreport.Cluster{{Name: "cluster2", Agents: 1}, {Name: "cluster1", Agents: 2}},
	})
	g.Expect(err).NotTo(HaveOccurred())
	r, err := healthreport.Decode(data)
	g.Expect(err).NotTo(HaveOccurred())

	got := ForCluster(&r, "cluster1")
	g.Expect(got.ServerID).To(Equal("s1"))
	g.Expect(got.ServerCount).To(Equal(2))
	g.Expect(got.UpdateTime).To(BeTemporally("==", now))
	g.Expect(got.Cluster).NotTo(BeNil())
	g.Expect(got.Cluster.Agents).To(Equal(2))
	g.Expect(ForCluster(&r, "cluster3").Cluster).To(BeNil())
}

func TestChangedClusters(t *testing.T) {
	tests := []struct {
		name          string
		before, after []healthreport.Cluster
		want          []string
	}{
		{name: "nothing changed but the agent count", before: []healthreport.Cluster{{Name: "a", Agents: 1}}, after: []healthreport.Cluster{{Name: "a", Agents: 2}}},
		{name: "a cluster came and one went", before: []healthreport.Cluster{{Name: "a", Agents: 1}, {Name: "c", Agents: 1}},
			after: []healthreport.Cluster{{Name: "b", Agents: 1}, {Name: "c", Agents: 1}}, want: []string{"a", "b"}},
		{name: "the last agent left but the entry stays", before: []healthreport.Cluster{{Name: "a", Agents: 1}}, after: []healthreport.Cluster{{Name: "a"}}, want: []string{"a"}},
		{name: "a certificate appeared", before: []healthreport.Cluster{{Name: "a", Agents: 1}},
			after: []healthreport.Cluster{{Name: "a", Agents: 1, Certificate: goodCert}}, want: []string{"a"}},
		{name: "a certificate was renewed", before: []healthreport.Cluster{{Name: "a", Agents: 1, Certificate: expiringCert}},
			after: []healthreport.Cluster{{Name: "a", Agents: 1, Certificate: goodCert}}, want: []string{"a"}},
		{name: "the same certificate", before: []healthreport.Cluster{{Name: "a", Agents: 1, Certificate: goodCert}},
			after: []healthreport.Cluster{{Name: "a", Agents: 1, Certificate: new(*goodCert)}}},
		{name: "all gone", before: []healthreport.Cluster{{Name: "a", Agents: 1}, {Name: "b", Agents: 1}}, want: []string{"a", "b"}},
		{name: "all new", after: []healthreport.Cluster{{Name: "a", Agents: 1}, {Name: "b", Agents: 1}}, want: []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got := changedClusters(&healthreport.Report{Clusters: tt.before}, &healthreport.Report{Clusters: tt.after})
			g.Expect(got).To(Equal(tt.want))
		})
	}
}

func TestShortTracker(t *testing.T) {
	g := NewWithT(t)
	var tr shortTracker
	g.Expect(tr.since("c")).To(BeZero())
	tr.update("c", true, now)
	tr.update("c", true, now.Add(time.Minute))
	g.Expect(tr.since("c")).To(Equal(now), "a stretch keeps its start")
	tr.update("c", false, now.Add(2*time.Minute))
	g.Expect(tr.since("c")).To(BeZero())
	tr.update("c", true, now.Add(3*time.Minute))
	g.Expect(tr.since("c")).To(Equal(now.Add(3 * time.Minute)))
	tr.forget("c")
	g.Expect(tr.since("c")).To(BeZero())
}
