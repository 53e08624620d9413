package helm_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// managerSubject is the addon-manager's ServiceAccount as an RBAC subject.
var managerSubject = rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "cluster-proxy-addon-manager", Namespace: releaseNamespace}

// grant is one permission: a verb on a resource (of a group, possibly
// limited to one name).
type grant struct {
	group, resource, name, verb string
}

func (g grant) String() string {
	s := fmt.Sprintf("%s %s.%s", g.verb, g.resource, g.group)
	if g.name != "" {
		s += "/" + g.name
	}
	return s
}

// grants expands rules into single permissions, so that rules written in a
// different order or grouping compare equal.
func grants(rules []rbacv1.PolicyRule) []grant {
	set := map[grant]bool{}
	for _, r := range rules {
		Expect(r.NonResourceURLs).To(BeEmpty(), "the addon-manager needs no non-resource URLs")
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, n := range names {
					for _, v := range r.Verbs {
						set[grant{g, res, n, v}] = true
					}
				}
			}
		}
	}
	out := make([]grant, 0, len(set))
	for g := range set {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// diffGrants lists what want has and got lacks, and the reverse.
func diffGrants(want, got []grant) (missing, extra []string) {
	in := func(gs []grant, g grant) bool {
		for _, x := range gs {
			if x == g {
				return true
			}
		}
		return false
	}
	for _, g := range want {
		if !in(got, g) {
			missing = append(missing, g.String())
		}
	}
	for _, g := range got {
		if !in(want, g) {
			extra = append(extra, g.String())
		}
	}
	return missing, extra
}

// generatedRBAC reads config/rbac/role.yaml, what `make manifests`
// generates from the code's +kubebuilder:rbac markers: the cluster-wide
// rules (ClusterRole) and the rules for the manager's own namespace (Roles;
// their namespace stands for the release namespace).
func generatedRBAC() (cluster, namespaced []rbacv1.PolicyRule) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", "role.yaml"))
	Expect(err).NotTo(HaveOccurred(), "run `make manifests`")
	objs, err := parseObjects(string(data))
	Expect(err).NotTo(HaveOccurred())
	for _, u := range objs {
		switch u.GetKind() {
		case "ClusterRole":
			cr := &rbacv1.ClusterRole{}
			Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, cr)).To(Succeed())
			cluster = append(cluster, cr.Rules...)
		case "Role":
			role := &rbacv1.Role{}
			Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, role)).To(Succeed())
			namespaced = append(namespaced, role.Rules...)
		default:
			Fail("unexpected " + key(u) + " in config/rbac/role.yaml")
		}
	}
	Expect(cluster).NotTo(BeEmpty())
	return cluster, namespaced
}

// managerRBAC collects what a render grants the addon-manager's
// ServiceAccount: the rules of the ClusterRoles bound to it cluster-wide, and
// of the Roles bound to it in the release namespace.
func managerRBAC(objs rendered) (cluster, namespaced []rbacv1.PolicyRule) {
	boundTo := func(subjects []rbacv1.Subject) bool {
		for _, s := range subjects {
			if s.Kind == managerSubject.Kind && s.Name == managerSubject.Name && s.Namespace == managerSubject.Namespace {
				return true
			}
		}
		return false
	}
	for _, u := range objs {
		switch u.GetKind() {
		case "ClusterRoleBinding":
			b := &rbacv1.ClusterRoleBinding{}
			objs.into(key(u), b)
			if boundTo(b.Subjects) {
				Expect(b.RoleRef.Kind).To(Equal("ClusterRole"))
				cr := &rbacv1.ClusterRole{}
				objs.into("ClusterRole/"+b.RoleRef.Name, cr)
				cluster = append(cluster, cr.Rules...)
			}
		case "RoleBinding":
			b := &rbacv1.RoleBinding{}
			objs.into(key(u), b)
			if boundTo(b.Subjects) {
				Expect(b.Namespace).To(Equal(releaseNamespace))
				Expect(b.RoleRef.Kind).To(Equal("Role"), "a ClusterRole bound in the namespace would hide namespaced rules among cluster-wide ones")
				role := &rbacv1.Role{}
				objs.into("Role/"+releaseNamespace+"/"+b.RoleRef.Name, role)
				namespaced = append(namespaced, role.Rules...)
			}
		}
	}
	return cluster, namespaced
}

// clusterProfileGroup is the API group of the generated rules the chart
// grants only with featureGates.clusterProfile=true (the ClusterProfile
// reconciler's, internal/clusterprofile).
const clusterProfileGroup = "multicluster.x-k8s.io"

// clusterProfileGateOn tells whether the values of profile switch the
// ClusterProfile feature gate on.
func clusterProfileGateOn(profile []string) bool {
	return slices.ContainsFunc(profile, func(arg string) bool { return strings.Contains(arg, "featureGates.clusterProfile=true") })
}

// gatedGrants returns the grants of rules a render should hold: all of them
// with the ClusterProfile gate on; without it, all but the ClusterProfile
// ones.
func gatedGrants(rules []rbacv1.PolicyRule, clusterProfile bool) []grant {
	var out []grant
	for _, g := range grants(rules) {
		if clusterProfile || g.group != clusterProfileGroup {
			out = append(out, g)
		}
	}
	return out
}

var _ = Describe("The addon-manager's RBAC", Label("helm", "static"), func() {
	It("grants exactly the rules generated from the code's markers, the ClusterProfile ones only with the gate on, whatever the values", func(ctx SpecContext) {
		wantCluster, wantNamespaced := generatedRBAC()
		Expect(slices.ContainsFunc(grants(wantCluster), func(g grant) bool { return g.group == clusterProfileGroup })).To(BeTrue(),
			"the generated role has the ClusterProfile rules")
		gateOn := 0
		for _, profile := range acceptedProfiles {
			gotCluster, gotNamespaced := managerRBAC(mustRender(ctx, profile...))
			if clusterProfileGateOn(profile) {
				gateOn++
			}
			missing, extra := diffGrants(gatedGrants(wantCluster, clusterProfileGateOn(profile)), grants(gotCluster))
			Expect(missing).To(BeEmpty(), "templates/clusterrole.yaml lacks rules of config/rbac/role.yaml's ClusterRole (profile %v)", profile)
			Expect(extra).To(BeEmpty(), "templates/clusterrole.yaml grants rules the markers do not ask for (profile %v)", profile)
			missing, extra = diffGrants(grants(wantNamespaced), grants(gotNamespaced))
			Expect(missing).To(BeEmpty(), "templates/role.yaml lacks rules of config/rbac/role.yaml's Role (profile %v)", profile)
			Expect(extra).To(BeEmpty(), "templates/role.yaml grants rules the markers do not ask for (profile %v)", profile)
		}
		Expect(gateOn).To(BeNumerically(">", 0), "a profile switches the ClusterProfile gate on")
		Expect(gateOn).To(BeNumerically("<", len(acceptedProfiles)), "a profile leaves the ClusterProfile gate off")
	})
})
