package localenv

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	corev1 "k8s.io/api/core/v1"
)

// OCM's fixed names.
const (
	ocmModule          = "open-cluster-management.io/ocm"
	ocmHubNamespace    = "open-cluster-management-hub"
	klusterletNS       = "open-cluster-management-agent"
	bootstrapGroup     = "system:bootstrappers:managedcluster"
	bootstrapRole      = "open-cluster-management:bootstrap"
	webhookPort        = 9443
	webhookNetnsSuffix = "hub-webhook"
)

// ocmCRDs installs CRDs from the ocm module's manifests directory rel,
// rendering the hub addon CRDs' templates so their conversion webhook is
// OCM's addon webhook-server at conversionURL.
func ocmCRDs(ctx context.Context, cfg *rest.Config, moduleDir, rel, conversionURL string, caPEM []byte) error {
	client, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(moduleDir, rel, "*crd.yaml"))
	if err != nil {
		return err
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		tmpl, err := template.New(filepath.Base(file)).Option("missingkey=error").Parse(string(data))
		if err != nil {
			return fmt.Errorf("parse %s: %w", file, err)
		}
		var out bytes.Buffer
		if err := tmpl.Execute(&out, map[string]string{
			"AddonAPIServiceCABundle": base64.StdEncoding.EncodeToString(caPEM),
			"ClusterManagerNamespace": ocmHubNamespace,
		}); err != nil {
			return fmt.Errorf("render %s: %w", file, err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(out.Bytes(), crd); err != nil {
			return fmt.Errorf("decode %s: %w", file, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			continue
		}
		if conv := crd.Spec.Conversion; conv != nil && conv.Webhook != nil && conv.Webhook.ClientConfig != nil {
			// There is no Service routing here: point the webhook at the
			// relay to OCM's addon webhook-server instead.
			conv.Webhook.ClientConfig.Service = nil
			conv.Webhook.ClientConfig.URL = &conversionURL
		}
		if err := applyCRD(ctx, client, crd); err != nil {
			return fmt.Errorf("install %s: %w", filepath.Base(file), err)
		}
	}
	return nil
}

func applyCRD(ctx context.Context, client apiextensionsclient.Interface, crd *apiextensionsv1.CustomResourceDefinition) error {
	crds := client.ApiextensionsV1().CustomResourceDefinitions()
	existing, err := crds.Get(ctx, crd.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = crds.Create(ctx, crd, metav1.CreateOptions{})
	case err == nil:
		crd.ResourceVersion = existing.ResourceVersion
		_, err = crds.Update(ctx, crd, metav1.UpdateOptions{})
	}
	if err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		got, err := crds.Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
}

// ensureNamespace creates namespace name if it is missing.
func ensureNamespace(ctx context.Context, client kubernetes.Interface, name string) error {
	_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// bootstrapRBAC grants the bootstrap group what OCM's cluster-manager chart
// grants it (bootstrap_cluster_role.yaml): OCM's controllers do not create
// it themselves.
func bootstrapRBAC(ctx context.Context, client kubernetes.Interface) error {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapRole},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}},
			{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"create", "get", "list", "watch"}},
			{APIGroups: []string{"cluster.open-cluster-management.io"}, Resources: []string{"managedclusters"}, Verbs: []string{"get", "create", "list", "watch"}},
			{APIGroups: []string{"cluster.open-cluster-management.io"}, Resources: []string{"managedclustersets/join"}, Verbs: []string{"create"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapRole},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: bootstrapRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: bootstrapGroup}},
	}
	if _, err := client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if _, err := client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// bootstrapTokens is the hub's --token-auth-file: one bootstrap user per
// managed cluster, token "<cluster>-bootstrap-token".
func bootstrapTokens() string {
	var b strings.Builder
	for i, c := range ManagedClusters {
		fmt.Fprintf(&b, "%s,system:bootstrap:%s,bootstrap-%d,\"%s,system:bootstrappers\"\n", bootstrapToken(c), c, i, bootstrapGroup)
	}
	return b.String()
}

func bootstrapToken(cluster string) string { return cluster + "-bootstrap-token" }

// bootstrapUsers is the registration controller's auto-approved users.
func bootstrapUsers() string {
	users := make([]string, 0, len(ManagedClusters))
	for _, c := range ManagedClusters {
		users = append(users, "system:bootstrap:"+c)
	}
	return strings.Join(users, ",")
}
