// Package addonhealth tells, on the hub, whether the cluster-proxy addon of
// each managed cluster works: it sets the Available and Degraded conditions
// of every ManagedClusterAddOn named AddonName from the proxy-servers'
// health reports (internal/healthreport). Evaluate is the pure rule;
// Reconciler applies it.
//
//   - Available is True while the cluster's proxy-agent is connected to at
//     least one proxy-server, False (ProxyAgentDisconnected) when it is
//     connected to none, Unknown (ProxyServerReportsMissing) when no
//     proxy-server has reported lately.
//   - Degraded is True when the agent is connected to fewer proxy-servers
//     than run (ProxyAgentPartiallyConnected), to none, or its client
//     certificate is in the last tenth of its lifetime
//     (ProxyAgentCertificateExpiring) or was issued by a CA the hub no
//     longer trusts (ProxyAgentCertificateUntrusted).
//
// A proxy-server rollout briefly leaves agents connected to fewer servers:
// an addon that was healthy (Available, not Degraded) keeps its conditions
// for a grace period after its connections fell short, so rollouts cause
// no flapping.
//
// # Wiring
//
// The agent addon's health prober is HealthProberTypeNone, so OCM's
// registration agent no longer owns Available through a Lease; the
// proxy-servers write their reports (--health-report); internal/addonmanager
// sets the Reconciler up on its manager (ConfigurationName =
// agentaddon.ConfigurationName, TrustedSigners = the cluster-proxy CA) and
// its cache holds the report ConfigMaps in every namespace.
package addonhealth

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"

	"open-cluster-management.io/cluster-proxy/internal/healthreport"
)

// Reasons of the Available and Degraded conditions this package sets.
const (
	// ReasonConnected: the agent is connected to at least one
	// proxy-server (Available True).
	ReasonConnected = "ProxyAgentConnected"
	// ReasonHealthy: connected to every proxy-server with a certificate
	// in good standing (Degraded False).
	ReasonHealthy = "ProxyAgentHealthy"
	// ReasonDisconnected: connected to no proxy-server, so no tunnel
	// reaches the cluster (Available False, Degraded True).
	ReasonDisconnected = "ProxyAgentDisconnected"
	// ReasonPartiallyConnected: connected to fewer proxy-servers than run
	// (Degraded True).
	ReasonPartiallyConnected = "ProxyAgentPartiallyConnected"
	// ReasonCertificateExpiring: the agent's client certificate is in the
	// last tenth of its lifetime, or past it (Degraded True).
	ReasonCertificateExpiring = "ProxyAgentCertificateExpiring"
	// ReasonCertificateUntrusted: the agent's client certificate was
	// issued by a CA the hub no longer trusts (Degraded True).
	ReasonCertificateUntrusted = "ProxyAgentCertificateUntrusted"
	// ReasonReportsMissing: no proxy-server has reported lately (both
	// conditions Unknown).
	ReasonReportsMissing = "ProxyServerReportsMissing"
)

// expiringPercent is the last part of a certificate's lifetime, in
// percent, that makes it Degraded.
const expiringPercent = 10

// ServerReport is one proxy-server's report, as far as one cluster goes.
type ServerReport struct {
	// ServerID, ServerCount and UpdateTime are the report's.
	ServerID    string
	ServerCount int
	UpdateTime  time.Time
	// Cluster is the report's entry for the cluster; nil when it does not
	// list the cluster.
	Cluster *healthreport.Cluster
}

// ForCluster narrows a report to one cluster.
func ForCluster(r *healthreport.Report, cluster string) ServerReport {
	c, _ := r.Cluster(cluster)
	return ServerReport{ServerID: r.ServerID, ServerCount: r.ServerCount, UpdateTime: r.UpdateTime, Cluster: c}
}

// Input is what Evaluate decides from.
type Input struct {
	// Cluster is the managed cluster's name.
	Cluster string
	// Reports are the proxy-servers' reports, fresh or not.
	Reports []ServerReport
	// ExpectedServers is how many proxy-servers should run (the
	// ManagedProxyConfiguration's replicas); 0 means the largest server
	// count the fresh reports give.
	ExpectedServers int
	// Now is the current time.
	Now time.Time
	// Staleness is how old a report may be and still count.
	Staleness time.Duration
	// Grace is how long an addon that was healthy (Available, not
	// Degraded) keeps its conditions after its connections fell short (a
	// rollout of the proxy-servers).
	Grace time.Duration
	// ShortSince is when the cluster was first seen short of connections
	// (fewer than expected, or no fresh report) in the current stretch;
	// zero means now. Evaluate's Result.Short tells the caller when to
	// start and end a stretch.
	ShortSince time.Time
	// TrustedSigners are the signer organizational units
	// (identity.SignerOU) of the CAs the hub trusts; empty skips the
	// check.
	TrustedSigners []string
	// Current are the addon's conditions now.
	Current []metav1.Condition
}

// Result is what Evaluate decided.
type Result struct {
	// Available and Degraded are the conditions to set (Type, Status,
	// Reason and Message; the caller dates them). Both are zero when Hold.
	Available, Degraded metav1.Condition
	// Hold says to keep the current conditions: the connections fell short
	// less than Grace ago on an addon that was healthy.
	Hold bool
	// Short says the cluster is short of connections; the caller keeps
	// the time it first was (Input.ShortSince) until it no longer is.
	Short bool
	// RecheckAt is when the result may change with no new report (a report
	// going stale, the grace ending, the certificate entering its last
	// tenth or expiring); zero when nothing is due.
	RecheckAt time.Time
}

// observation is what the fresh reports say of a cluster.
type observation struct {
	fresh     int
	connected int
	expected  int
	// cert is the certificate that expires first; untrusted the first one
	// issued by an untrusted CA.
	cert, untrusted *healthreport.Certificate
	// staleAt is when the first fresh report goes stale.
	staleAt time.Time
}

func observe(in *Input) observation {
	var o observation
	servers := map[string]bool{}
	maxCount := 0
	// Newest first, so a server that reported twice counts once, as it is
	// now.
	reports := slices.Clone(in.Reports)
	slices.SortStableFunc(reports, func(a, b ServerReport) int { return b.UpdateTime.Compare(a.UpdateTime) })
	for _, r := range reports {
		staleAt := r.UpdateTime.Add(in.Staleness)
		if !in.Now.Before(staleAt) || servers[r.ServerID] {
			continue
		}
		servers[r.ServerID] = true
		o.fresh++
		maxCount = max(maxCount, r.ServerCount)
		o.staleAt = earliest(o.staleAt, staleAt)
		if r.Cluster == nil || !r.Cluster.Connected() {
			continue
		}
		o.connected++
		if c := r.Cluster.Certificate; c != nil {
			if o.cert == nil || c.NotAfter.Before(o.cert.NotAfter) {
				o.cert = c
			}
			if o.untrusted == nil && len(in.TrustedSigners) > 0 && !slices.Contains(in.TrustedSigners, c.Signer) {
				o.untrusted = c
			}
		}
	}
	o.expected = in.ExpectedServers
	if o.expected <= 0 {
		o.expected = maxCount
	}
	return o
}

// Evaluate decides the Available and Degraded conditions of one cluster's
// addon.
func Evaluate(in Input) Result {
	o := observe(&in)
	res := Result{Short: o.fresh == 0 || o.connected < o.expected, RecheckAt: o.staleAt}
	if res.Short {
		since := in.ShortSince
		if since.IsZero() {
			since = in.Now
		}
		graceEnd := since.Add(in.Grace)
		if in.Now.Before(graceEnd) && healthy(in.Current) {
			res.Hold = true
			res.RecheckAt = earliest(res.RecheckAt, graceEnd)
			return res
		}
	}
	if o.fresh == 0 {
		msg := fmt.Sprintf("no proxy-server has reported on its agents in the last %s", in.Staleness)
		res.Available = condition(addonapiv1beta1.ManagedClusterAddOnConditionAvailable, metav1.ConditionUnknown, ReasonReportsMissing, msg)
		res.Degraded = condition(addonapiv1beta1.ManagedClusterAddOnConditionDegraded, metav1.ConditionUnknown, ReasonReportsMissing, msg)
		return res
	}

	connection := connectionMessage(in.Cluster, &o)
	if o.connected == 0 {
		res.Available = condition(addonapiv1beta1.ManagedClusterAddOnConditionAvailable, metav1.ConditionFalse, ReasonDisconnected, connection)
		res.Degraded = condition(addonapiv1beta1.ManagedClusterAddOnConditionDegraded, metav1.ConditionTrue, ReasonDisconnected, connection)
		return res
	}
	res.Available = condition(addonapiv1beta1.ManagedClusterAddOnConditionAvailable, metav1.ConditionTrue, ReasonConnected, connection)

	// The connection first, then what is wrong with the certificate; the
	// most serious problem names the reason.
	var reasons, problems []string
	if c := o.untrusted; c != nil {
		reasons = append(reasons, ReasonCertificateUntrusted)
		problems = append(problems, fmt.Sprintf("its client certificate%s was issued by %s, a CA the hub no longer trusts", serial(c), issuer(c)))
	}
	if c := o.cert; c != nil {
		expiringAt := expiringFrom(c)
		switch {
		case !in.Now.Before(c.NotAfter):
			reasons = append(reasons, ReasonCertificateExpiring)
			problems = append(problems, fmt.Sprintf("its client certificate%s expired at %s", serial(c), timestamp(c.NotAfter)))
		case !in.Now.Before(expiringAt):
			reasons = append(reasons, ReasonCertificateExpiring)
			problems = append(problems, fmt.Sprintf("its client certificate%s expires at %s, within the last %d%% of its lifetime",
				serial(c), timestamp(c.NotAfter), expiringPercent))
			res.RecheckAt = earliest(res.RecheckAt, c.NotAfter)
		default:
			res.RecheckAt = earliest(res.RecheckAt, expiringAt)
		}
	}
	if o.connected < o.expected {
		reasons = append(reasons, ReasonPartiallyConnected)
	}
	if len(reasons) == 0 {
		msg := connection
		if c := o.cert; c != nil {
			msg += fmt.Sprintf("; its client certificate%s is valid until %s", serial(c), timestamp(c.NotAfter))
		}
		res.Degraded = condition(addonapiv1beta1.ManagedClusterAddOnConditionDegraded, metav1.ConditionFalse, ReasonHealthy, msg)
		return res
	}
	res.Degraded = condition(addonapiv1beta1.ManagedClusterAddOnConditionDegraded, metav1.ConditionTrue, reasons[0],
		strings.Join(append([]string{connection}, problems...), "; "))
	return res
}

// healthy reports whether conditions say Available and not Degraded: only
// such an addon rides out a shortfall, so one already reported short shows
// every change at once, better or worse.
func healthy(conditions []metav1.Condition) bool {
	return meta.IsStatusConditionTrue(conditions, addonapiv1beta1.ManagedClusterAddOnConditionAvailable) &&
		!meta.IsStatusConditionTrue(conditions, addonapiv1beta1.ManagedClusterAddOnConditionDegraded)
}

// connectionMessage says how many proxy-servers the agent of cluster is
// connected to.
func connectionMessage(cluster string, o *observation) string {
	agent := "the proxy-agent of " + cluster
	switch {
	case o.connected == 0:
		return fmt.Sprintf("%s is connected to none of the %d proxy-servers", agent, o.expected)
	case o.connected > o.expected:
		return fmt.Sprintf("%s is connected to %d proxy-servers (%d expected)", agent, o.connected, o.expected)
	}
	msg := fmt.Sprintf("%s is connected to %d of %d proxy-servers", agent, o.connected, o.expected)
	if missing := o.expected - o.fresh; missing > 0 {
		msg += fmt.Sprintf(" (%d of them did not report)", missing)
	}
	return msg
}

// expiringFrom is when c enters the last expiringPercent of its lifetime.
func expiringFrom(c *healthreport.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Add(-life / 100 * expiringPercent)
}

func serial(c *healthreport.Certificate) string {
	if c.Serial == "" {
		return ""
	}
	return " (serial " + c.Serial + ")"
}

func issuer(c *healthreport.Certificate) string {
	switch {
	case c.Issuer != "" && c.Signer != "":
		return c.Issuer + " (" + c.Signer + ")"
	case c.Signer != "":
		return c.Signer
	case c.Issuer != "":
		return c.Issuer
	}
	return "an unnamed CA"
}

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func condition(typ string, status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message}
}

// earliest returns the earlier of a and b, ignoring zero times.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
