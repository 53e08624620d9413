package kubelet

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"golang.org/x/sys/unix"
)

const (
	// heartbeatInterval is how often the Node's status and Lease are
	// renewed.
	heartbeatInterval = 10 * time.Second
	// leaseDuration is the node Lease's duration.
	leaseDuration = 40
	// kubeletVersion is what the Node reports as its kubelet version.
	kubeletVersion = "v1.36.1-localenv"
)

func (k *Kubelet) nodeLabels() map[string]string {
	return map[string]string{
		corev1.LabelHostname:   k.opts.NodeName,
		corev1.LabelOSStable:   runtime.GOOS,
		corev1.LabelArchStable: runtime.GOARCH,
	}
}

// allocatable is the node's capacity: the host's CPUs and memory.
func allocatable() corev1.ResourceList {
	memory := int64(8 << 30)
	var info unix.Sysinfo_t
	if unix.Sysinfo(&info) == nil {
		memory = int64(info.Totalram) * int64(info.Unit)
	}
	return corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(runtime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(memory, resource.BinarySI),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
}

// registerNode creates the Node (or adds its labels to an existing one)
// and posts its status.
func (k *Kubelet) registerNode(ctx context.Context) error {
	nodes := k.opts.Client.CoreV1().Nodes()
	node, err := nodes.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.opts.NodeName, Labels: k.nodeLabels()}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		node, err = nodes.Get(ctx, k.opts.NodeName, metav1.GetOptions{})
		if err == nil && !labels.SelectorFromSet(k.nodeLabels()).Matches(labels.Set(node.Labels)) {
			if node.Labels == nil {
				node.Labels = map[string]string{}
			}
			maps.Copy(node.Labels, k.nodeLabels())
			node, err = nodes.Update(ctx, node, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("failed to register node %s: %w", k.opts.NodeName, err)
	}
	k.nodeUID = node.UID
	return k.postNodeStatus(ctx)
}

func (k *Kubelet) heartbeat(ctx context.Context) {
	ticker := time.NewTicker(heartbeatInterval)
	defer ticker.Stop()
	for {
		if err := k.renewLease(ctx); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Failed to renew the node lease")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		err := k.postNodeStatus(ctx)
		if apierrors.IsNotFound(err) {
			err = k.registerNode(ctx) // someone deleted the Node
		}
		if err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Failed to post the node status")
		}
	}
}

func (k *Kubelet) postNodeStatus(ctx context.Context) error {
	node, err := k.opts.Client.CoreV1().Nodes().Get(ctx, k.opts.NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("failed to get node %s: %w", k.opts.NodeName, err)
	}
	now := metav1.Now()
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "kubelet stand-in is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}
	for _, old := range node.Status.Conditions {
		if old.Type == ready.Type && old.Status == ready.Status {
			ready.LastTransitionTime = old.LastTransitionTime
		}
	}
	node.Status.Conditions = []corev1.NodeCondition{ready}
	node.Status.Capacity = allocatable()
	node.Status.Allocatable = allocatable()
	node.Status.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: k.opts.NodeIP},
		{Type: corev1.NodeHostName, Address: k.opts.NodeName},
	}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = k.opts.API.port()
	node.Status.NodeInfo = corev1.NodeSystemInfo{
		KubeletVersion: kubeletVersion, OperatingSystem: runtime.GOOS, Architecture: runtime.GOARCH,
		ContainerRuntimeVersion: "local://" + kubeletVersion, OSImage: "localenv",
	}
	if _, err := k.opts.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("failed to update the status of node %s: %w", k.opts.NodeName, err)
	}
	return nil
}

func (k *Kubelet) renewLease(ctx context.Context) error {
	leases := k.opts.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, k.opts.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: k.opts.NodeName, Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: k.opts.NodeName, UID: k.nodeUID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(k.opts.NodeName), LeaseDurationSeconds: ptr.To[int32](leaseDuration), RenewTime: &now},
		}
		_, err = leases.Create(ctx, lease, metav1.CreateOptions{})
	} else if err == nil {
		lease.Spec.RenewTime = &now
		_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("failed to renew lease %s/%s: %w", corev1.NamespaceNodeLease, k.opts.NodeName, err)
	}
	return nil
}

// schedule binds a pending pod to the Node when it fits, and otherwise
// reports why it does not, as the scheduler would.
func (k *Kubelet) schedule(ctx context.Context, pod *corev1.Pod) error {
	if pod.DeletionTimestamp != nil || (pod.Spec.SchedulerName != "" && pod.Spec.SchedulerName != corev1.DefaultSchedulerName) {
		return nil
	}
	pods := k.opts.Client.CoreV1().Pods(pod.Namespace)
	if reason := k.unschedulable(pod); reason != "" {
		cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: "0/1 nodes are available: " + reason, LastTransitionTime: metav1.Now()}
		for _, old := range pod.Status.Conditions {
			if old.Type == cond.Type && old.Status == cond.Status && old.Message == cond.Message {
				return nil
			}
		}
		updated := pod.DeepCopy()
		updated.Status.Conditions = append(slices.DeleteFunc(updated.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == corev1.PodScheduled
		}), cond)
		if _, err := pods.UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return fmt.Errorf("failed to report pod %s/%s unschedulable: %w", pod.Namespace, pod.Name, err)
		}
		return nil
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: k.opts.NodeName},
	}
	if err := pods.Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("failed to bind pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	k.recorder.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, k.opts.NodeName)
	return nil
}

// unschedulable says why pod does not fit the Node, or "" when it does.
func (k *Kubelet) unschedulable(pod *corev1.Pod) string {
	nodeLabels := labels.Set(k.nodeLabels())
	if !labels.SelectorFromSet(pod.Spec.NodeSelector).Matches(nodeLabels) {
		return "1 node(s) didn't match Pod's node affinity/selector."
	}
	a := pod.Spec.Affinity
	if a == nil {
		return ""
	}
	if (a.PodAffinity != nil && len(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0) ||
		(a.PodAntiAffinity != nil && len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0) {
		return "required pod affinity and anti-affinity are not supported by the local kubelet stand-in."
	}
	if a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	fields := labels.Set{"metadata.name": k.opts.NodeName}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if matchTerm(term.MatchExpressions, nodeLabels) && matchTerm(term.MatchFields, fields) &&
			len(term.MatchExpressions)+len(term.MatchFields) > 0 {
			return ""
		}
	}
	return "1 node(s) didn't match Pod's node affinity/selector."
}

// matchTerm reports whether set satisfies every requirement.
func matchTerm(reqs []corev1.NodeSelectorRequirement, set labels.Set) bool {
	ops := map[corev1.NodeSelectorOperator]selection.Operator{
		corev1.NodeSelectorOpIn: selection.In, corev1.NodeSelectorOpNotIn: selection.NotIn,
		corev1.NodeSelectorOpExists: selection.Exists, corev1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
		corev1.NodeSelectorOpGt: selection.GreaterThan, corev1.NodeSelectorOpLt: selection.LessThan,
	}
	for _, r := range reqs {
		req, err := labels.NewRequirement(r.Key, ops[r.Operator], r.Values)
		if err != nil || !req.Matches(set) {
			return false
		}
	}
	return true
}

// podKey is the "namespace/name" of a pod.
func podKey(pod *corev1.Pod) string { return pod.Namespace + "/" + pod.Name }
