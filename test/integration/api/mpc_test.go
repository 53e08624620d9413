package api_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/generated/informers/externalversions"
)

const fieldManager = "cluster-proxy-api-test"

// apply server-side applies obj and returns what the server stored.
func apply(ctx context.Context, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	if err := k8sClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()), client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		return nil, err
	}
	stored := &unstructured.Unstructured{}
	stored.SetGroupVersionKind(obj.GroupVersionKind())
	err := k8sClient.Get(ctx, types.NamespacedName{Name: obj.GetName()}, stored)
	return stored, err
}

func deleteMPC(ctx context.Context, name string) {
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}}
	Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, mpc))).To(Succeed())
}

var _ = Describe("The ManagedProxyConfiguration CRD", Label("api"), func() {
	It("is installed from the chart's crds/ and established, with printer columns", func(ctx SpecContext) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: "managedproxyconfigurations.proxy.open-cluster-management.io"}, crd)).To(Succeed())
		Expect(crd.Spec.Scope).To(Equal(apiextensionsv1.ClusterScoped))
		Expect(crd.Status.Conditions).To(ContainElement(And(
			HaveField("Type", apiextensionsv1.Established),
			HaveField("Status", apiextensionsv1.ConditionTrue),
		)))
		Expect(crd.Spec.Versions).To(HaveLen(1))
		version := crd.Spec.Versions[0]
		Expect(version.Name).To(Equal("v1alpha1"))
		Expect(version.Subresources).NotTo(BeNil())
		Expect(version.Subresources.Status).NotTo(BeNil())
		var columns []string
		for _, c := range version.AdditionalPrinterColumns {
			columns = append(columns, c.Name)
		}
		Expect(columns).To(ContainElements("Entrypoint", "Server Replicas", "Deployed", "Age"))
	})
})

var _ = Describe("Applying a ManagedProxyConfiguration", Label("api"), func() {
	It("fills every default in from the schema when only required fields are given", func(ctx SpecContext) {
		DeferCleanup(deleteMPC, "minimal")
		obj := minimalObject("minimal")
		Expect(unstructured.SetNestedField(obj.Object, map[string]any{"type": "LoadBalancerService"}, "spec", "proxyServer", "entrypoint")).To(Succeed())
		Expect(unstructured.SetNestedField(obj.Object, map[string]any{}, "spec", "deploy")).To(Succeed())
		_, err := apply(ctx, obj)
		Expect(err).NotTo(HaveOccurred())

		mpc, err := clientset.ProxyV1alpha1().ManagedProxyConfigurations().Get(ctx, "minimal", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		spec := mpc.Spec
		Expect(spec.Authentication.Signer.Type).To(Equal(proxyv1alpha1.SignerTypeSelfSigned))
		Expect(spec.Authentication.Dump.Secrets).To(Equal(proxyv1alpha1.CertificateSigningSecrets{
			SigningProxyServerSecretName: "proxy-server",
			SigningProxyClientSecretName: "proxy-client",
			SigningAgentServerSecretName: "agent-server",
		}))
		Expect(spec.ProxyServer.Replicas).To(BeEquivalentTo(3))
		Expect(spec.ProxyServer.InClusterServiceName).To(Equal("proxy-entrypoint"))
		Expect(spec.ProxyServer.Namespace).To(Equal("open-cluster-management-cluster-proxy"))
		Expect(spec.ProxyServer.Entrypoint).NotTo(BeNil())
		Expect(spec.ProxyServer.Entrypoint.Port).To(BeEquivalentTo(8091))
		Expect(spec.ProxyAgent.Replicas).To(BeEquivalentTo(3))
		Expect(spec.Deploy).NotTo(BeNil())
		Expect(spec.Deploy.Ports).To(Equal(proxyv1alpha1.ManagedProxyConfigurationDeployPorts{
			ProxyServer: 8090, AgentServer: 8091, HealthServer: 8092, AdminServer: 8095,
		}))
	})

	It("defaults the load balancer Service name when the block is given empty", func(ctx SpecContext) {
		DeferCleanup(deleteMPC, "lb-default")
		obj := minimalObject("lb-default")
		Expect(unstructured.SetNestedField(obj.Object, map[string]any{
			"type":                "LoadBalancerService",
			"loadBalancerService": map[string]any{},
		}, "spec", "proxyServer", "entrypoint")).To(Succeed())
		stored, err := apply(ctx, obj)
		Expect(err).NotTo(HaveOccurred())
		name, _, _ := unstructured.NestedString(stored.Object, "spec", "proxyServer", "entrypoint", "loadBalancerService", "name")
		Expect(name).To(Equal("proxy-agent-entrypoint"))
	})

	It("stores what Default() fills in, so Go code reading an undefaulted object agrees with the API", func(ctx SpecContext) {
		DeferCleanup(deleteMPC, "go-defaults")
		obj := minimalObject("go-defaults")
		// The optional blocks whose fields have defaults, given empty.
		Expect(unstructured.SetNestedField(obj.Object, map[string]any{
			"type":                "LoadBalancerService",
			"loadBalancerService": map[string]any{},
		}, "spec", "proxyServer", "entrypoint")).To(Succeed())
		Expect(unstructured.SetNestedField(obj.Object, map[string]any{}, "spec", "deploy")).To(Succeed())
		stored, err := apply(ctx, obj)
		Expect(err).NotTo(HaveOccurred())
		fromServer := &proxyv1alpha1.ManagedProxyConfiguration{}
		Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(stored.Object, fromServer)).To(Succeed())

		local := &proxyv1alpha1.ManagedProxyConfiguration{}
		Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, local)).To(Succeed())
		Expect(local.Spec).NotTo(Equal(fromServer.Spec), "the object as sent lacks the defaults")
		local.Default()
		Expect(local.Spec).To(Equal(fromServer.Spec))
	})

	DescribeTable("keeps every field of an object",
		func(ctx SpecContext, path string) {
			obj := loadObject(path)
			DeferCleanup(deleteMPC, obj.GetName())
			stored, err := apply(ctx, obj)
			Expect(err).NotTo(HaveOccurred())
			Expect(subsetMismatch("spec", obj.Object["spec"], stored.Object["spec"])).To(BeEmpty())
		},
		Entry("that sets every field", "test/integration/api/testdata/full.yaml"),
		Entry("written for the existing cluster-proxy addon", "test/integration/api/testdata/existing-addon.yaml"),
		Entry("shipped as the sample", "config/samples/managedproxyconfiguration.yaml"),
		Entry("from the Hostname example", "examples/managedproxyconfiguration-hostname.yaml"),
		Entry("from the LoadBalancerService example", "examples/managedproxyconfiguration-loadbalancer.yaml"),
	)

	It("decodes a full object into the Go types without losing fields", func(ctx SpecContext) {
		obj := loadObject("test/integration/api/testdata/full.yaml")
		DeferCleanup(deleteMPC, obj.GetName())
		_, err := apply(ctx, obj)
		Expect(err).NotTo(HaveOccurred())
		mpc, err := clientset.ProxyV1alpha1().ManagedProxyConfigurations().Get(ctx, obj.GetName(), metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())

		// Round-trip the typed object back to unstructured: nothing the file set
		// may be missing, so the Go types cover every field of the schema.
		roundTripped := &unstructured.Unstructured{}
		Expect(k8sClient.Scheme().Convert(mpc, roundTripped, nil)).To(Succeed())
		Expect(subsetMismatch("spec", obj.Object["spec"], roundTripped.Object["spec"])).To(BeEmpty())
		Expect(mpc.Spec.ProxyServer.Entrypoint.LoadBalancerService.Annotations).To(ConsistOf(
			proxyv1alpha1.AnnotationValue{Key: "service.beta.kubernetes.io/aws-load-balancer-type", Value: "nlb"},
			proxyv1alpha1.AnnotationValue{Key: "example.com/empty-value"},
		))
	})
})

var _ = Describe("Validation of a ManagedProxyConfiguration", Label("api"), func() {
	type mutation func(obj map[string]any)
	set := func(value any, fields ...string) mutation {
		return func(obj map[string]any) {
			Expect(unstructured.SetNestedField(obj, value, fields...)).To(Succeed())
		}
	}
	remove := func(fields ...string) mutation {
		return func(obj map[string]any) { unstructured.RemoveNestedField(obj, fields...) }
	}

	DescribeTable("rejects an invalid object with a message naming the field",
		func(ctx SpecContext, mutate mutation, want []string) {
			obj := minimalObject("invalid")
			mutate(obj.Object)
			err := k8sClient.Create(ctx, obj)
			if err == nil {
				deleteMPC(ctx, "invalid")
			}
			Expect(err).To(HaveOccurred(), "the server accepted an invalid object")
			Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want an Invalid error, got %v", err)
			for _, s := range want {
				Expect(err.Error()).To(ContainSubstring(s))
			}
		},
		Entry("entrypoint type outside the enum",
			set(map[string]any{"type": "Ingress"}, "spec", "proxyServer", "entrypoint"),
			[]string{"spec.proxyServer.entrypoint.type", `Unsupported value: "Ingress"`, `"Hostname", "LoadBalancerService", "PortForward"`}),
		Entry("entrypoint port 0",
			set(map[string]any{"type": "PortForward", "port": int64(0)}, "spec", "proxyServer", "entrypoint"),
			[]string{"spec.proxyServer.entrypoint.port", "greater than or equal to 1"}),
		Entry("entrypoint port above 65535",
			set(map[string]any{"type": "PortForward", "port": int64(70000)}, "spec", "proxyServer", "entrypoint"),
			[]string{"spec.proxyServer.entrypoint.port", "less than or equal to 65535"}),
		Entry("missing proxyServer.image",
			remove("spec", "proxyServer", "image"),
			[]string{"spec.proxyServer.image", "Required value"}),
		Entry("empty proxyAgent.image",
			set("", "spec", "proxyAgent", "image"),
			[]string{"spec.proxyAgent.image", "at least 1 chars long"}),
		Entry("missing proxyAgent",
			remove("spec", "proxyAgent"),
			[]string{"spec.proxyAgent", "Required value"}),
		Entry("missing authentication",
			remove("spec", "authentication"),
			[]string{"spec.authentication", "Required value"}),
		Entry("wrong signer type",
			set(map[string]any{"type": "Vault"}, "spec", "authentication", "signer"),
			[]string{"spec.authentication.signer.type", `Unsupported value: "Vault"`, `"SelfSigned", "Provided", "CertManager"`}),
		Entry("Hostname entrypoint without a hostname",
			set(map[string]any{"type": "Hostname"}, "spec", "proxyServer", "entrypoint"),
			[]string{"spec.proxyServer.entrypoint", "hostname is required when type is Hostname"}),
		Entry("Hostname entrypoint with an empty value",
			set(map[string]any{"type": "Hostname", "hostname": map[string]any{"value": ""}}, "spec", "proxyServer", "entrypoint"),
			[]string{"spec.proxyServer.entrypoint.hostname.value"}),
		Entry("zero proxy-server replicas",
			set(int64(0), "spec", "proxyServer", "replicas"),
			[]string{"spec.proxyServer.replicas", "greater than or equal to 1"}),
		Entry("a namespace that is not a DNS label",
			set("Not_A_Namespace", "spec", "proxyServer", "namespace"),
			[]string{"spec.proxyServer.namespace", "should match"}),
		Entry("a load balancer annotation key Kubernetes would refuse",
			set(map[string]any{"type": "LoadBalancerService", "loadBalancerService": map[string]any{
				"annotations": []any{map[string]any{"key": "bad key!", "value": "x"}},
			}}, "spec", "proxyServer", "entrypoint"),
			[]string{"spec.proxyServer.entrypoint.loadBalancerService.annotations[0].key", "should match"}),
		Entry("a duplicated load balancer annotation key",
			set(map[string]any{"type": "LoadBalancerService", "loadBalancerService": map[string]any{
				"annotations": []any{map[string]any{"key": "a", "value": "1"}, map[string]any{"key": "a", "value": "2"}},
			}}, "spec", "proxyServer", "entrypoint"),
			[]string{"spec.proxyServer.entrypoint.loadBalancerService.annotations[1]", "Duplicate value"}),
		Entry("a deploy port of 0",
			set(map[string]any{"ports": map[string]any{"agentServer": int64(0)}}, "spec", "deploy"),
			[]string{"spec.deploy.ports.agentServer", "greater than or equal to 1"}),
	)

	It("is what kubectl apply reports for a bad object", func(ctx SpecContext) {
		kubectl, err := exec.LookPath("kubectl")
		Expect(err).NotTo(HaveOccurred(), "kubectl must be on PATH for this spec")
		dir := GinkgoT().TempDir()
		kubeconfig := filepath.Join(dir, "kubeconfig")
		Expect(os.WriteFile(kubeconfig, apiServer.KubeConfig, 0o600)).To(Succeed())
		manifest := filepath.Join(dir, "bad.yaml")
		Expect(os.WriteFile(manifest, []byte(`apiVersion: proxy.open-cluster-management.io/v1alpha1
kind: ManagedProxyConfiguration
metadata:
  name: bad-from-kubectl
spec:
  authentication: {}
  proxyServer:
    image: example.com/proxy:v1
    entrypoint:
      type: Route
  proxyAgent:
    image: example.com/proxy:v1
`), 0o600)).To(Succeed())

		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig, "apply", "-f", manifest)
		cmd.Stderr = &stderr
		Expect(cmd.Run()).NotTo(Succeed())
		Expect(stderr.String()).To(ContainSubstring(`spec.proxyServer.entrypoint.type: Unsupported value: "Route"`))
	})

	It("shows the printer columns in kubectl get", func(ctx SpecContext) {
		kubectl, err := exec.LookPath("kubectl")
		Expect(err).NotTo(HaveOccurred(), "kubectl must be on PATH for this spec")
		obj := loadObject("config/samples/managedproxyconfiguration.yaml")
		DeferCleanup(deleteMPC, obj.GetName())
		_, err = apply(ctx, obj)
		Expect(err).NotTo(HaveOccurred())

		kubeconfig := filepath.Join(GinkgoT().TempDir(), "kubeconfig")
		Expect(os.WriteFile(kubeconfig, apiServer.KubeConfig, 0o600)).To(Succeed())
		out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig, "get", "managedproxyconfigurations").Output()
		Expect(err).NotTo(HaveOccurred())
		Expect(string(out)).To(MatchRegexp(`NAME\s+ENTRYPOINT\s+SERVER REPLICAS\s+DEPLOYED\s+AGE`))
		Expect(string(out)).To(MatchRegexp(`cluster-proxy\s+PortForward\s+1\s+`))
	})
})

var _ = Describe("The generated clientset", Label("api", "clientset"), func() {
	It("creates, gets, lists, watches, updates status and deletes", func(ctx SpecContext) {
		mpcs := clientset.ProxyV1alpha1().ManagedProxyConfigurations()
		w, err := mpcs.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=typed"})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(w.Stop)

		// A Go client leaves defaulted fields at their zero values; the server
		// fills them in.
		created, err := mpcs.Create(ctx, &proxyv1alpha1.ManagedProxyConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "typed"},
			Spec: proxyv1alpha1.ManagedProxyConfigurationSpec{
				ProxyServer: proxyv1alpha1.ManagedProxyConfigurationProxyServer{Image: "example.com/proxy:v1"},
				ProxyAgent:  proxyv1alpha1.ManagedProxyConfigurationProxyAgent{Image: "example.com/proxy:v1"},
			},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(deleteMPC, "typed")
		Expect(created.Spec.Authentication.Signer.Type).To(Equal(proxyv1alpha1.SignerTypeSelfSigned))
		Expect(created.Spec.ProxyServer.Replicas).To(BeEquivalentTo(3))
		Expect(created.Generation).To(BeEquivalentTo(1))

		got, err := mpcs.Get(ctx, "typed", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(got.UID).To(Equal(created.UID))

		list, err := mpcs.List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(list.Items).To(ContainElement(HaveField("Name", "typed")))

		// The status subresource: status writes go through UpdateStatus only,
		// and do not bump the generation.
		got.Status.LastObservedGeneration = got.Generation
		got.Status.Conditions = []metav1.Condition{{
			Type:               proxyv1alpha1.ConditionTypeProxyServerDeployed,
			Status:             metav1.ConditionTrue,
			Reason:             proxyv1alpha1.ReasonSuccessfullyDeployed,
			Message:            "Replicas: 3",
			LastTransitionTime: metav1.Now(),
		}}
		updated, err := mpcs.UpdateStatus(ctx, got, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(updated.Generation).To(BeEquivalentTo(1))
		Expect(updated.Status.Conditions).To(HaveLen(1))

		updated.Spec.ProxyServer.Replicas = 5
		updated.Status.Conditions = nil
		updated, err = mpcs.Update(ctx, updated, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(updated.Generation).To(BeEquivalentTo(2))
		Expect(updated.Status.Conditions).To(HaveLen(1), "a spec update must not change status")

		Expect(mpcs.Delete(ctx, "typed", metav1.DeleteOptions{})).To(Succeed())

		var events []string
		Eventually(func(g Gomega) {
			select {
			case e := <-w.ResultChan():
				events = append(events, string(e.Type))
			case <-time.After(100 * time.Millisecond):
			}
			g.Expect(events).To(Equal([]string{"ADDED", "MODIFIED", "MODIFIED", "DELETED"}))
		}).WithContext(ctx).WithTimeout(10 * time.Second).Should(Succeed())
	})
})

var _ = Describe("The generated informers and listers", Label("api", "clientset"), func() {
	It("see objects as they are created and deleted", func(ctx SpecContext) {
		factory := externalversions.NewSharedInformerFactory(clientset, 0)
		lister := factory.Proxy().V1alpha1().ManagedProxyConfigurations().Lister()
		factory.Start(ctx.Done())
		DeferCleanup(factory.Shutdown)
		for typ, synced := range factory.WaitForCacheSync(ctx.Done()) {
			Expect(synced).To(BeTrue(), "informer for %v did not sync", typ)
		}

		obj := minimalObject("informed")
		DeferCleanup(deleteMPC, "informed")
		Expect(k8sClient.Create(ctx, obj)).To(Succeed())
		Eventually(func(g Gomega) {
			mpc, err := lister.Get("informed")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(mpc.Spec.ProxyServer.Image).To(Equal("example.com/proxy-server:v1"))
		}).WithContext(ctx).Should(Succeed())

		deleteMPC(ctx, "informed")
		Eventually(func() bool {
			_, err := lister.Get("informed")
			return apierrors.IsNotFound(err)
		}).WithContext(ctx).Should(BeTrue())
	})
})
