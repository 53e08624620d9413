package client_test

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/client"
)

// A hub program lists the namespaces of managed cluster "cluster1". hub
// reaches the hub kube-apiserver; managed carries credentials the managed
// kube-apiserver accepts (for instance a ServiceAccount token and the
// cluster's kube-root-ca.crt).
func Example() {
	ctx := context.Background()
	var hub, managed *rest.Config // loaded by the caller

	tlsConfig, err := client.TLSConfigForHub(ctx, hub, proxyv1alpha1.DefaultName)
	if err != nil {
		fmt.Println(err)
		return
	}
	// In the hub cluster; elsewhere, the address that exposes the
	// proxy-entrypoint Service.
	dialer, err := client.NewDialer("proxy-entrypoint.open-cluster-management-cluster-proxy:8090", tlsConfig)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = dialer.Close() }()

	cfg, err := client.RESTConfigForCluster(dialer, managed, "cluster1", client.ClusterOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	kubeClient, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	namespaces, err := kubeClient.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		// A *client.NoAgentError when cluster1's agent is not connected.
		fmt.Println(err)
		return
	}
	fmt.Println(len(namespaces.Items))
}
