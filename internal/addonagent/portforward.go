package addonagent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// maxPodAttempts bounds how many proxy-server pods one connection tries.
const maxPodAttempts = 3

// Relay is the PortForward entrypoint: it listens on a local address and
// carries each accepted connection (from the proxy-agent) to the agent port
// of a random running proxy-server pod through the hub kube-apiserver's
// pods/portforward, trying another pod when one fails.
type Relay struct {
	// Hub lists proxy-server pods; HubConfig opens port-forward streams.
	Hub       kubernetes.Interface
	HubConfig *rest.Config
	// Namespace is the proxy-server namespace on the hub.
	Namespace string
	// Listener accepts the proxy-agent's connections (localhost:<port>).
	Listener net.Listener
	// TargetPort is the proxy-server pods' agent port.
	TargetPort int
	// Order arranges the running pods' names, in place, in the order one
	// connection tries them. Nil shuffles them, spreading connections over
	// the proxy-servers.
	Order func(pods []string)

	forwarded atomic.Bool
	requestID atomic.Int64
}

// Ready reports whether a connection has been forwarded (the PortForward
// readiness check of the health server).
func (r *Relay) Ready(context.Context) error {
	if !r.forwarded.Load() {
		return errors.New("no connection forwarded to a proxy-server yet")
	}
	return nil
}

// Run accepts connections until ctx is done.
func (r *Relay) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		_ = r.Listener.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := r.Listener.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("port-forward relay stopped accepting on %s: %w", r.Listener.Addr(), err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.handle(ctx, conn)
		}()
	}
}

// handle carries one connection, trying up to maxPodAttempts pods.
func (r *Relay) handle(ctx context.Context, conn net.Conn) {
	defer func() { _ = conn.Close() }()
	log := klog.FromContext(ctx)
	pods, err := r.runningPods(ctx)
	if err != nil {
		log.Error(err, "port-forward relay cannot find a proxy-server")
		return
	}
	order := r.Order
	if order == nil {
		order = shuffle
	}
	order(pods)
	for i, pod := range pods {
		if i == maxPodAttempts {
			break
		}
		stream, closeStreams, err := r.open(ctx, pod)
		if err != nil {
			log.Error(err, "port-forward to proxy-server failed; trying another", "pod", klog.KRef(r.Namespace, pod))
			continue
		}
		r.forwarded.Store(true)
		pipe(conn, stream)
		closeStreams()
		return
	}
	log.Info("port-forward relay dropped a connection: no proxy-server pod could be reached", "namespace", r.Namespace)
}

// shuffle is the default Order: a uniformly random one.
func shuffle(pods []string) {
	rand.Shuffle(len(pods), func(i, j int) { pods[i], pods[j] = pods[j], pods[i] })
}

func (r *Relay) runningPods(ctx context.Context) ([]string, error) {
	list, err := r.Hub.CoreV1().Pods(r.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: proxyv1alpha1.LabelComponentName + "=" + proxyv1alpha1.ComponentProxyServer,
	})
	if err != nil {
		return nil, fmt.Errorf("failed to list proxy-server pods in %s: %w", r.Namespace, err)
	}
	var names []string
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no running proxy-server pod in namespace %s", r.Namespace)
	}
	return names, nil
}

// open starts a port-forward to pod's TargetPort and returns its data stream.
// The returned function closes the streams and the connection.
func (r *Relay) open(ctx context.Context, pod string) (io.ReadWriter, func(), error) {
	transport, upgrader, err := spdy.RoundTripperFor(r.HubConfig)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to build the port-forward transport: %w", err)
	}
	url := r.Hub.CoreV1().RESTClient().Post().Resource("pods").Namespace(r.Namespace).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	conn, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to port-forward to pod %s/%s: %w", r.Namespace, pod, err)
	}
	headers := http.Header{}
	headers.Set(corev1.PortHeader, strconv.Itoa(r.TargetPort))
	headers.Set(corev1.PortForwardRequestIDHeader, strconv.FormatInt(r.requestID.Add(1), 10))
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	errorStream, err := conn.CreateStream(headers)
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("failed to open the error stream to pod %s/%s: %w", r.Namespace, pod, err)
	}
	// We only read the error stream.
	_ = errorStream.Close()
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	dataStream, err := conn.CreateStream(headers)
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("failed to open the data stream to pod %s/%s: %w", r.Namespace, pod, err)
	}
	errs := make(chan error, 1)
	go func() {
		msg, err := io.ReadAll(errorStream)
		switch {
		case err != nil:
			errs <- fmt.Errorf("failed to read the port-forward error stream: %w", err)
		case len(msg) > 0:
			errs <- fmt.Errorf("pod %s/%s port %d: %s", r.Namespace, pod, r.TargetPort, msg)
		}
		close(errs)
	}()
	return &watchedStream{Stream: dataStream, errs: errs, ctx: ctx}, func() {
		conn.RemoveStreams(errorStream, dataStream)
		_ = conn.Close()
	}, nil
}

// watchedStream logs what the pod's side reports on the error stream.
type watchedStream struct {
	httpstream.Stream
	errs <-chan error
	ctx  context.Context
	once sync.Once
}

func (s *watchedStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if err != nil {
		s.once.Do(func() {
			if e, ok := <-s.errs; ok && e != nil {
				klog.FromContext(s.ctx).Info("proxy-server side of the port-forward reported an error", "err", e.Error())
			}
		})
	}
	return n, err
}

// pipe copies both ways until either side ends.
func pipe(a io.ReadWriter, b io.ReadWriter) {
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(a, b); done <- struct{}{} }()
	go func() { _, _ = io.Copy(b, a); done <- struct{}{} }()
	<-done
}
