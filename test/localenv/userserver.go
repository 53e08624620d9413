package localenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// The hub identity the local environment's user-server kubeconfigs carry:
// a hub ServiceAccount, which every managed cluster lets read workloads
// (ClusterRole ViewerName, bound to the impersonated user
// cluster:hub:system:serviceaccount:...). Not the built-in view role: the
// environment's controller-manager does not aggregate ClusterRoles.
const (
	ViewerNamespace = "default"
	ViewerName      = "cluster-proxy-viewer"
	// ViewerUser is the viewer as managed clusters see it.
	ViewerUser = "cluster:hub:system:serviceaccount:" + ViewerNamespace + ":" + ViewerName
)

// UserServerURL is the user-server's base URL from the root namespace (a
// relay on the hub's uplink address; the chart names that address in the
// serving certificate).
func UserServerURL() string {
	return "https://" + net.JoinHostPort(HubUplinkIP, strconv.Itoa(UserServerPort))
}

// UserServerKubeconfig is the kubeconfig, written by Up, that reaches
// cluster through the user-server as the viewer.
func UserServerKubeconfig(stateDir, cluster string) string {
	return filepath.Join(stateDir, "kubeconfigs", cluster+"-via-user-server.kubeconfig")
}

// HelmValues are the chart values the environment installs with: agents
// dial the hub's entrypoint host name, and the service-proxy and the
// user-server run (its certificate naming the hub's uplink address, where
// the root namespace reaches it) and forwards to the test workload's
// hello Service.
func HelmValues() []string {
	return []string{
		"--set", "proxyServer.entrypointAddress=" + EntrypointHostname,
		"--set", "enableServiceProxy=true",
		"--set", "userServer.enabled=true",
		"--set", "userServer.additionalSANs={" + HubUplinkIP + "}",
		"--set", exposedServicesValue(),
	}
}

// WriteUserServerAccess creates the viewer (hub ServiceAccount, view on
// every managed cluster) and writes, with `cluster-proxy kubeconfig`, one
// kubeconfig per managed cluster that reaches it through the user-server.
func WriteUserServerAccess(ctx context.Context, env *Env, clusterProxy string) error {
	hubCfg, err := clientcmd.BuildConfigFromFlags("", env.HubKubeconfig)
	if err != nil {
		return err
	}
	hub, err := kubernetes.NewForConfig(hubCfg)
	if err != nil {
		return err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: ViewerName, Namespace: ViewerNamespace}}
	if _, err := hub.CoreV1().ServiceAccounts(ViewerNamespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create ServiceAccount %s/%s on the hub: %w", ViewerNamespace, ViewerName, err)
	}
	token, err := hub.CoreV1().ServiceAccounts(ViewerNamespace).CreateToken(ctx, ViewerName, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](int64((7 * 24 * time.Hour).Seconds()))},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create a token for %s/%s on the hub: %w", ViewerNamespace, ViewerName, err)
	}
	for _, c := range ManagedClusters {
		cfg, err := clientcmd.BuildConfigFromFlags("", env.Clusters[c].Kubeconfig)
		if err != nil {
			return err
		}
		managed, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		role := &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: ViewerName},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Verbs: []string{"get", "list", "watch"}, Resources: []string{
					"pods", "pods/log", "services", "endpoints", "configmaps", "namespaces", "events", "nodes", "serviceaccounts",
				}},
				{APIGroups: []string{"apps", "batch", "discovery.k8s.io"}, Verbs: []string{"get", "list", "watch"}, Resources: []string{"*"}},
			},
		}
		if _, err := managed.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create ClusterRole %s on %s: %w", ViewerName, c, err)
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: ViewerName},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ViewerName},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: ViewerUser}},
		}
		if err := ensureBinding(ctx, managed, binding); err != nil {
			return fmt.Errorf("bind ClusterRole %s to %s on %s: %w", ViewerName, ViewerUser, c, err)
		}
		// The manager issues the user-server's certificate once the chart's
		// configuration asks for it: retry until the CA Secret is there.
		var out, stderr bytes.Buffer
		err = wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			out.Reset()
			stderr.Reset()
			cmd := exec.CommandContext(ctx, clusterProxy, "kubeconfig", "--kubeconfig="+env.HubKubeconfig,
				"--cluster="+c, "--server="+UserServerURL(), "--token="+token.Status.Token)
			cmd.Stdout, cmd.Stderr = &out, &stderr
			return cmd.Run() == nil, nil
		})
		if err != nil {
			return fmt.Errorf("cluster-proxy kubeconfig --cluster=%s: %w: %s", c, err, stderr.String())
		}
		if err := writeFile(UserServerKubeconfig(env.StateDir, c), out.Bytes(), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// ensureBinding creates binding, or replaces one of the same name that
// binds another role or subjects (a binding's role cannot be updated).
func ensureBinding(ctx context.Context, client kubernetes.Interface, binding *rbacv1.ClusterRoleBinding) error {
	existing, err := client.RbacV1().ClusterRoleBindings().Get(ctx, binding.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return err
	case existing.RoleRef == binding.RoleRef && equality.Semantic.DeepEqual(existing.Subjects, binding.Subjects):
		return nil
	default:
		if err := client.RbacV1().ClusterRoleBindings().Delete(ctx, binding.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	_, err = client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{})
	return err
}
