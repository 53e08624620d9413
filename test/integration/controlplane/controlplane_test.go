package controlplane_test

import (
	"context"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	// controllerTimeout bounds how long a spec waits for a controller to act.
	controllerTimeout = 60 * time.Second
	// testFinalizer holds a dependent in deletion so the foreground spec can
	// watch its owner wait.
	testFinalizer = "test.open-cluster-management.io/hold"
)

// createNamespace creates a namespace with a generated name and deletes it
// (in the background) when the spec ends.
func createNamespace(ctx context.Context) string {
	ns, err := kubeClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "controlplane-"},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(deleteNamespace, ns.Name)
	return ns.Name
}

// deleteNamespace deletes the namespace if it still exists.
func deleteNamespace(ctx context.Context, name string) {
	err := kubeClient.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if !apierrors.IsNotFound(err) {
		Expect(err).NotTo(HaveOccurred())
	}
}

// releaseFinalizers removes every finalizer from the ConfigMap if it still
// exists.
func releaseFinalizers(ctx context.Context, cm *corev1.ConfigMap) {
	_, err := kubeClient.CoreV1().ConfigMaps(cm.Namespace).Patch(ctx, cm.Name, types.JSONPatchType,
		[]byte(`[{"op":"replace","path":"/metadata/finalizers","value":[]}]`), metav1.PatchOptions{})
	if !apierrors.IsNotFound(err) {
		Expect(err).NotTo(HaveOccurred())
	}
}

// createOwnerAndDependent creates two ConfigMaps in namespace; the dependent
// names the owner as its controller and blocks the owner's foreground
// deletion.
func createOwnerAndDependent(ctx context.Context, namespace string, dependentFinalizers ...string) (owner, dependent *corev1.ConfigMap) {
	configMaps := kubeClient.CoreV1().ConfigMaps(namespace)
	owner, err := configMaps.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "owner"},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	dependent, err = configMaps.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:       "dependent",
			Finalizers: dependentFinalizers,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion:         "v1",
				Kind:               "ConfigMap",
				Name:               owner.Name,
				UID:                owner.UID,
				Controller:         new(true),
				BlockOwnerDeletion: new(true),
			}},
		},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return owner, dependent
}

// configMapGone reports whether the ConfigMap no longer exists (a ConfigMap
// with the same name but another UID counts as gone).
func configMapGone(ctx context.Context, cm *corev1.ConfigMap) (bool, error) {
	got, err := kubeClient.CoreV1().ConfigMaps(cm.Namespace).Get(ctx, cm.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return got.UID != cm.UID, nil
}

func getConfigMap(ctx context.Context, cm *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	return kubeClient.CoreV1().ConfigMaps(cm.Namespace).Get(ctx, cm.Name, metav1.GetOptions{})
}

var _ = Describe("kube-controller-manager's garbage collector", Label("controlplane"), func() {
	It("deletes a dependent after its owner is deleted in the background", func(ctx SpecContext) {
		namespace := createNamespace(ctx)
		owner, dependent := createOwnerAndDependent(ctx, namespace)

		Expect(kubeClient.CoreV1().ConfigMaps(namespace).Delete(ctx, owner.Name, metav1.DeleteOptions{
			PropagationPolicy: new(metav1.DeletePropagationBackground),
		})).To(Succeed())
		// Background deletion removes the owner at once; the dependent is
		// the garbage collector's job.
		Expect(configMapGone(ctx, owner)).To(BeTrue())
		Eventually(configMapGone).WithContext(ctx).WithArguments(dependent).
			WithTimeout(controllerTimeout).Should(BeTrue(), "the garbage collector should delete the dependent")
	})

	It("keeps an owner deleted in the foreground until its dependent is gone", func(ctx SpecContext) {
		namespace := createNamespace(ctx)
		// The finalizer holds the dependent in deletion, so the owner's wait
		// can be observed however fast the garbage collector is.
		owner, dependent := createOwnerAndDependent(ctx, namespace, testFinalizer)
		// Release the dependent even when the spec fails half-way.
		DeferCleanup(releaseFinalizers, dependent)

		Expect(kubeClient.CoreV1().ConfigMaps(namespace).Delete(ctx, owner.Name, metav1.DeleteOptions{
			PropagationPolicy: new(metav1.DeletePropagationForeground),
		})).To(Succeed())

		By("the garbage collector deleting the dependent while the owner waits")
		Eventually(getConfigMap).WithContext(ctx).WithArguments(dependent).WithTimeout(controllerTimeout).
			Should(HaveField("DeletionTimestamp", Not(BeNil())), "the garbage collector should delete the dependent")
		Consistently(getConfigMap).WithContext(ctx).WithArguments(owner).WithTimeout(3*time.Second).Should(And(
			HaveField("UID", owner.UID),
			HaveField("DeletionTimestamp", Not(BeNil())),
			HaveField("Finalizers", ContainElement(metav1.FinalizerDeleteDependents)),
		), "the owner should wait for its blocking dependent")

		By("the owner going once the dependent is gone")
		releaseFinalizers(ctx, dependent)
		Eventually(configMapGone).WithContext(ctx).WithArguments(dependent).WithTimeout(controllerTimeout).Should(BeTrue())
		Eventually(configMapGone).WithContext(ctx).WithArguments(owner).WithTimeout(controllerTimeout).
			Should(BeTrue(), "the garbage collector should remove the owner's foregroundDeletion finalizer")
	})
})

var _ = Describe("kube-controller-manager's namespace controller", Label("controlplane"), func() {
	It("empties and removes a deleted namespace", func(ctx SpecContext) {
		namespace := createNamespace(ctx)
		_, err := kubeClient.CoreV1().ConfigMaps(namespace).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "content"},
			Data:       map[string]string{"key": "value"},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		Expect(kubeClient.CoreV1().Namespaces().Delete(ctx, namespace, metav1.DeleteOptions{})).To(Succeed())
		Eventually(func(ctx context.Context) error {
			_, err := kubeClient.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
			return err
		}).WithContext(ctx).WithTimeout(controllerTimeout).
			Should(Satisfy(apierrors.IsNotFound), "the namespace controller should finalise the namespace")
	})
})

var _ = Describe("StartControllerManager", Label("controlplane"), func() {
	It("runs the named controllers and Stop ends the process and removes its files", func() {
		m, err := framework.StartControllerManager(apiServer, "namespace")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(m.Stop)
		Expect(m.Controllers).To(Equal([]string{"namespace"}))
		Expect(m.Port).NotTo(Equal(controllerManager.Port))
		Expect(m.LogPath).To(BeAnExistingFile())

		Expect(m.Stop()).To(Succeed())
		Expect(syscall.Kill(m.PID, 0)).To(MatchError(syscall.ESRCH), "the process should be gone")
		Expect(m.LogPath).NotTo(BeAnExistingFile())
		Expect(m.Stop()).To(Succeed(), "a second Stop should be harmless")
	})

	It("fails with the end of the log when the process exits", func() {
		_, err := framework.StartControllerManager(apiServer, "no-such-controller")
		Expect(err).To(MatchError(And(
			ContainSubstring("failed to start kube-controller-manager"),
			ContainSubstring("no-such-controller"),
		)))
	})

	It("fails naming the make target when the binary is missing", Serial, func() {
		empty := GinkgoT().TempDir()
		GinkgoT().Setenv("KUBEBUILDER_ASSETS", empty)

		_, err := framework.StartControllerManager(apiServer)
		Expect(err).To(MatchError(ContainSubstring(framework.ControlPlaneMakeTarget)))
	})
})
