package localenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"open-cluster-management.io/cluster-proxy/internal/certs"
)

// The test workload every managed cluster runs in TestNamespace (programs
// of package workload, image TestWorkloadImage):
//   - Deployment and Service HelloService: hello-server on HelloHTTPPort
//     and HelloHTTPSPort (a certificate from the cluster's CA, which the
//     service-proxy trusts), answering with the cluster's name;
//   - Deployment and Service PrometheusService: prometheus-api on
//     PrometheusPort, a stand-in for a Prometheus server (its HTTP API's
//     instant queries over a scrape of its own request counter);
//   - Pod LoggerPod: log-writer, a numbered line every second;
//   - Pod ShellPod: pause, to exec into (echo, cat, hostname).
//
// The chart's exposedServices list HelloService on both ports and
// PrometheusService over HTTP, and the
// viewer may exec into and port-forward to the namespace's pods.
const (
	TestNamespace     = "cpx-test"
	TestWorkloadImage = "cpx.test/test-workload"
	HelloService      = "hello"
	HelloHTTPPort     = 8080
	HelloHTTPSPort    = 8443
	PrometheusService = "prometheus"
	PrometheusPort    = 9090
	LoggerPod         = "logger"
	ShellPod          = "shell"
	// helloTLSSecret holds hello-server's serving certificate.
	helloTLSSecret = "hello-tls"
	// workloadImageRef is the image the workload's containers name.
	workloadImageRef = TestWorkloadImage + ":latest"
)

// LoggerPrefix is what each line of LoggerPod's log in cluster starts
// with.
func LoggerPrefix(cluster string) string { return "logger of " + cluster }

// exposedServicesValue is the chart's exposedServices value: HelloService
// over HTTP and HTTPS, PrometheusService over HTTP.
func exposedServicesValue() string {
	return fmt.Sprintf("exposedServices[0].namespace=%[1]s,exposedServices[0].service=%[2]s,exposedServices[0].port=%[3]d,exposedServices[0].protocol=http,"+
		"exposedServices[1].namespace=%[1]s,exposedServices[1].service=%[2]s,exposedServices[1].port=%[4]d,exposedServices[1].protocol=https,"+
		"exposedServices[2].namespace=%[1]s,exposedServices[2].service=%[5]s,exposedServices[2].port=%[6]d,exposedServices[2].protocol=http",
		TestNamespace, HelloService, HelloHTTPPort, HelloHTTPSPort, PrometheusService, PrometheusPort)
}

// DeployTestWorkloads creates (or updates) the test workload on every
// managed cluster and waits until its pods are Ready.
func DeployTestWorkloads(ctx context.Context, env *Env, out io.Writer) error {
	for _, c := range ManagedClusters {
		cfg, err := clientcmd.BuildConfigFromFlags("", env.Clusters[c].Kubeconfig)
		if err != nil {
			return err
		}
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		if err := deployWorkload(ctx, client, c, PKI{Dir: filepath.Join(env.StateDir, c, "pki")}); err != nil {
			return fmt.Errorf("test workload on %s: %w", c, err)
		}
	}
	var waiting []string
	err := wait.PollUntilContextTimeout(ctx, time.Second, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		waiting = waiting[:0]
		for _, c := range ManagedClusters {
			cfg, err := clientcmd.BuildConfigFromFlags("", env.Clusters[c].Kubeconfig)
			if err != nil {
				return false, err
			}
			client, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return false, err
			}
			pods, err := client.CoreV1().Pods(TestNamespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				waiting = append(waiting, c+": "+err.Error())
				continue
			}
			ready := map[string]bool{}
			for _, p := range pods.Items {
				for _, cond := range p.Status.Conditions {
					if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
						ready[p.Labels["app"]] = true
					}
				}
			}
			for _, app := range []string{HelloService, PrometheusService, LoggerPod, ShellPod} {
				if !ready[app] {
					waiting = append(waiting, c+"/"+app)
				}
			}
		}
		return len(waiting) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("the test workload is not ready (%s): %w", strings.Join(waiting, ", "), err)
	}
	_, _ = fmt.Fprintf(out, "test workload ready in namespace %s of %s\n", TestNamespace, strings.Join(ManagedClusters, ", "))
	return nil
}

// deployWorkload creates or updates the workload's objects in one cluster.
func deployWorkload(ctx context.Context, client kubernetes.Interface, cluster string, pki PKI) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: TestNamespace}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	certPEM, keyPEM, err := helloCertificate(pki)
	if err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: helloTLSSecret, Namespace: TestNamespace},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}
	labels := func(app string) map[string]string { return map[string]string{"app": app} }
	container := func(name, program string, args ...string) corev1.Container {
		return corev1.Container{Name: name, Image: workloadImageRef, Command: []string{"/" + program}, Args: args}
	}
	hello := container("hello", "hello-server", "--name="+cluster, "--cert=/tls/tls.crt", "--key=/tls/tls.key",
		"--http-port="+strconv.Itoa(HelloHTTPPort), "--https-port="+strconv.Itoa(HelloHTTPSPort))
	hello.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: HelloHTTPPort}, {Name: "https", ContainerPort: HelloHTTPSPort}}
	hello.VolumeMounts = []corev1.VolumeMount{{Name: "tls", MountPath: "/tls", ReadOnly: true}}
	hello.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(HelloHTTPPort)}},
		PeriodSeconds: 2}
	deployment := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: HelloService, Namespace: TestNamespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels(HelloService)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(HelloService)},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{hello},
					Volumes:    []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: helloTLSSecret}}}},
				},
			},
		},
	}
	service := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: HelloService, Namespace: TestNamespace},
		Spec: corev1.ServiceSpec{
			Selector: labels(HelloService),
			Ports: []corev1.ServicePort{
				{Name: "http", Port: HelloHTTPPort, TargetPort: intstr.FromInt32(HelloHTTPPort)},
				{Name: "https", Port: HelloHTTPSPort, TargetPort: intstr.FromInt32(HelloHTTPSPort)},
			},
		},
	}
	prom := container("prometheus", "prometheus-api", "--cluster="+cluster, "--port="+strconv.Itoa(PrometheusPort))
	prom.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: PrometheusPort}}
	prom.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/-/ready", Port: intstr.FromInt32(PrometheusPort)}},
		PeriodSeconds: 2}
	promDeployment := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: PrometheusService, Namespace: TestNamespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels(PrometheusService)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(PrometheusService)},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{prom}},
			},
		},
	}
	promService := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: PrometheusService, Namespace: TestNamespace},
		Spec: corev1.ServiceSpec{
			Selector: labels(PrometheusService),
			Ports:    []corev1.ServicePort{{Name: "http", Port: PrometheusPort, TargetPort: intstr.FromInt32(PrometheusPort)}},
		},
	}
	pod := func(name string, c corev1.Container) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: TestNamespace, Labels: labels(name)},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: ptr.To[int64](5)},
		}
	}
	// The viewer may exec into and port-forward to the workload's pods.
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: ViewerName, Namespace: TestNamespace},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods/exec", "pods/portforward"}, Verbs: []string{"get", "create"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ViewerName, Namespace: TestNamespace},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: ViewerName},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: ViewerUser}},
	}
	core, apps, rbac := client.CoreV1(), client.AppsV1(), client.RbacV1()
	steps := []struct {
		what           string
		create, update func() error
	}{
		{"Secret " + helloTLSSecret,
			func() error {
				_, err := core.Secrets(TestNamespace).Create(ctx, secret, metav1.CreateOptions{})
				return err
			},
			func() error {
				_, err := core.Secrets(TestNamespace).Update(ctx, secret, metav1.UpdateOptions{})
				return err
			}},
		{"Deployment " + HelloService,
			func() error {
				_, err := apps.Deployments(TestNamespace).Create(ctx, deployment, metav1.CreateOptions{})
				return err
			},
			func() error {
				_, err := apps.Deployments(TestNamespace).Update(ctx, deployment, metav1.UpdateOptions{})
				return err
			}},
		{"Service " + HelloService,
			func() error {
				_, err := core.Services(TestNamespace).Create(ctx, service, metav1.CreateOptions{})
				return err
			},
			nil}, // unchanged: its ClusterIP is immutable
		{"Deployment " + PrometheusService,
			func() error {
				_, err := apps.Deployments(TestNamespace).Create(ctx, promDeployment, metav1.CreateOptions{})
				return err
			},
			func() error {
				_, err := apps.Deployments(TestNamespace).Update(ctx, promDeployment, metav1.UpdateOptions{})
				return err
			}},
		{"Service " + PrometheusService,
			func() error {
				_, err := core.Services(TestNamespace).Create(ctx, promService, metav1.CreateOptions{})
				return err
			},
			nil}, // unchanged: its ClusterIP is immutable
		{"Pod " + LoggerPod,
			func() error {
				_, err := core.Pods(TestNamespace).Create(ctx, pod(LoggerPod, container("log", "log-writer", "--prefix="+LoggerPrefix(cluster))), metav1.CreateOptions{})
				return err
			}, nil},
		{"Pod " + ShellPod,
			func() error {
				_, err := core.Pods(TestNamespace).Create(ctx, pod(ShellPod, container("shell", "pause")), metav1.CreateOptions{})
				return err
			}, nil},
		{"Role " + ViewerName,
			func() error {
				_, err := rbac.Roles(TestNamespace).Create(ctx, role, metav1.CreateOptions{})
				return err
			},
			func() error {
				_, err := rbac.Roles(TestNamespace).Update(ctx, role, metav1.UpdateOptions{})
				return err
			}},
		{"RoleBinding " + ViewerName,
			func() error {
				_, err := rbac.RoleBindings(TestNamespace).Create(ctx, binding, metav1.CreateOptions{})
				return err
			},
			nil},
	}
	for _, s := range steps {
		err := s.create()
		if apierrors.IsAlreadyExists(err) && s.update != nil {
			err = s.update()
		} else if apierrors.IsAlreadyExists(err) {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

// helloCertificate issues hello-server's serving certificate from the
// cluster's CA, for the names the service-proxy dials.
func helloCertificate(pki PKI) (certPEM, keyPEM []byte, err error) {
	caPEM, err1 := os.ReadFile(pki.Path(caCert))
	caKeyPEM, err2 := os.ReadFile(pki.Path(caKey))
	if err := errors.Join(err1, err2); err != nil {
		return nil, nil, fmt.Errorf("read the cluster CA: %w", err)
	}
	ca, err := certs.ParseCA(caPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	svc := HelloService + "." + TestNamespace
	return ca.Issue(certs.LeafSpec{
		CommonName: svc + ".svc",
		SANs:       []string{HelloService, svc, svc + ".svc", svc + "." + clusterDomain},
		Usage:      certs.UsageServing, Validity: pkiValidity,
	}, time.Now())
}
