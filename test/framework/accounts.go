package framework

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ServiceAccountToken creates the service account name in namespace (which
// must exist) and returns a token of it from the TokenRequest API, valid
// for the API's default hour. The token authenticates for real: a
// TokenReview of it succeeds.
func ServiceAccountToken(ctx context.Context, c kubernetes.Interface, namespace, name string) (string, error) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("failed to create service account %s/%s: %w", namespace, name, err)
	}
	tr, err := c.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("failed to request a token of service account %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// BindClusterRole creates the ClusterRole name with rules and a
// ClusterRoleBinding of the same name that grants it to subject. (The
// control plane runs no kube-controller-manager, so aggregated roles such
// as "view" have no rules: grant what a test needs this way.)
func BindClusterRole(ctx context.Context, c kubernetes.Interface, name string, subject rbacv1.Subject, rules ...rbacv1.PolicyRule) error {
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}
	if _, err := c.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("failed to create ClusterRole %s: %w", name, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{subject},
	}
	if _, err := c.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("failed to create ClusterRoleBinding %s: %w", name, err)
	}
	return nil
}
