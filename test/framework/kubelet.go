package framework

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/cri-streaming/pkg/streaming/portforward"

	"open-cluster-management.io/cluster-proxy/internal/certs"
)

// Kubelet stands in for a node's kubelet, for its port-forward endpoint only:
// the API server's pods/portforward reaches it as it would a real kubelet,
// and it serves the request with the kubelet's own streaming code
// (k8s.io/cri-streaming). The pods of its node are processes on loopback:
// forwarding to a pod port dials 127.0.0.1:<port>. No containers run here,
// which is why a stand-in is needed at all.
type Kubelet struct {
	// NodeName is the Node object registered for this kubelet.
	NodeName string
	// Port is the kubelet's HTTPS port on 127.0.0.1.
	Port int

	server *http.Server
}

// StartKubelet starts the kubelet stand-in and registers Node nodeName with
// the API server behind client (address 127.0.0.1, kubelet port Port).
func StartKubelet(ctx context.Context, client kubernetes.Interface, nodeName string) (*Kubelet, error) {
	now := time.Now()
	ca, err := certs.NewCA("kubelet-stand-in", now, time.Hour)
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := ca.Issue(certs.LeafSpec{CommonName: nodeName, SANs: []string{"127.0.0.1", "localhost"}, Usage: certs.UsageServing}, now)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("failed to load the kubelet stand-in certificate: %w", err)
	}
	listener, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, fmt.Errorf("failed to listen for the kubelet stand-in: %w", err)
	}
	k := &Kubelet{NodeName: nodeName, Port: listener.Addr().(*net.TCPAddr).Port}
	k.server = &http.Server{Handler: http.HandlerFunc(k.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = k.server.Serve(listener) }()

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	node, err = client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		_ = k.server.Close()
		return nil, fmt.Errorf("failed to register node %s: %w", nodeName, err)
	}
	node.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(k.Port)}},
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		_ = k.server.Close()
		return nil, fmt.Errorf("failed to set the status of node %s: %w", nodeName, err)
	}
	return k, nil
}

// serve handles /portForward/<namespace>/<pod>, as the kubelet does.
func (k *Kubelet) serve(w http.ResponseWriter, req *http.Request) {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	if len(parts) < 3 || parts[0] != "portForward" {
		http.NotFound(w, req)
		return
	}
	opts, err := portforward.NewV4Options(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, req, loopbackForwarder{}, parts[2], "", opts,
		5*time.Minute, 30*time.Second, []string{"portforward.k8s.io"})
}

// loopbackForwarder forwards to 127.0.0.1:<port>: the pods of the stand-in
// node are local processes.
type loopbackForwarder struct{}

func (loopbackForwarder) PortForward(ctx context.Context, _ string, _ string, port int32, stream io.ReadWriteCloser) error {
	defer func() { _ = stream.Close() }()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("failed to connect to port %d: %w", port, err)
	}
	defer func() { _ = conn.Close() }()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	<-done
	return nil
}

// RunPod registers a Running pod bound to the stand-in node.
func (k *Kubelet) RunPod(ctx context.Context, client kubernetes.Interface, namespace, name string, labels map[string]string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   k.NodeName,
			Containers: []corev1.Container{{Name: "main", Image: "local-process"}},
		},
	}
	pod, err := client.CoreV1().Pods(namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("failed to create pod %s/%s: %w", namespace, name, err)
	}
	pod.Status.Phase = corev1.PodRunning
	if _, err := client.CoreV1().Pods(namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("failed to mark pod %s/%s running: %w", namespace, name, err)
	}
	return nil
}

// Stop stops the stand-in.
func (k *Kubelet) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := k.server.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("failed to stop the kubelet stand-in: %w", err)
	}
	return nil
}
