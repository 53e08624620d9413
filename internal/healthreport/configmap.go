package healthreport

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// Where a report lives in its ConfigMap.
const (
	// LabelReport marks report ConfigMaps (value "true"); besides it they
	// carry proxyv1alpha1.LabelComponentName=proxy-server, as the
	// proxy-server's pods do.
	LabelReport = "proxy.open-cluster-management.io/health-report"
	// DataKey holds the report's JSON in the ConfigMap's data.
	DataKey = "report.json"
	// GzipDataKey holds the gzipped JSON in the ConfigMap's binaryData
	// instead, when the JSON is larger than plainLimit (thousands of
	// clusters), so a report stays well within a ConfigMap's 1 MiB.
	GzipDataKey = "report.json.gz"
	// namePrefix starts the ConfigMap's name; the pod's name follows.
	namePrefix = "cluster-proxy-health-"
	// plainLimit is the largest JSON kept readable in data.
	plainLimit = 256 << 10
	// maxDecompressed bounds what a gzipped report may expand to.
	maxDecompressed = 64 << 20
)

// ConfigMapName is the name of the report ConfigMap of proxy-server pod
// pod.
func ConfigMapName(pod string) string { return namePrefix + pod }

// Labels are the labels of every report ConfigMap.
func Labels() map[string]string {
	return map[string]string{
		LabelReport:                      "true",
		proxyv1alpha1.LabelComponentName: proxyv1alpha1.ComponentProxyServer,
	}
}

// Selector selects report ConfigMaps.
func Selector() labels.Selector { return labels.SelectorFromSet(labels.Set{LabelReport: "true"}) }

// IsReport reports whether a ConfigMap's labels mark it as a report.
func IsReport(objLabels map[string]string) bool { return objLabels[LabelReport] == "true" }

// Owner is the proxy-server pod a report ConfigMap belongs to; the garbage
// collector deletes the ConfigMap once the pod is gone.
type Owner struct {
	// PodName is the pod's name; it also names the ConfigMap.
	PodName string
	// PodUID is the pod's UID; without it the ConfigMap has no owner and
	// outlives the pod (a proxy-server run outside a pod).
	PodUID types.UID
}

// configMap is the apply configuration of the report ConfigMap holding
// data (a report's JSON), in namespace, owned by owner.
func configMap(namespace string, owner Owner, data []byte) (*corev1ac.ConfigMapApplyConfiguration, error) {
	cm := corev1ac.ConfigMap(ConfigMapName(owner.PodName), namespace).WithLabels(Labels())
	if owner.PodUID != "" {
		// No blockOwnerDeletion: that would need update on the pod's
		// finalizers where OwnerReferencesPermissionEnforcement runs.
		cm.WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion("v1").WithKind("Pod").WithName(owner.PodName).WithUID(owner.PodUID))
	}
	if len(data) <= plainLimit {
		return cm.WithData(map[string]string{DataKey: string(data)}), nil
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		return nil, fmt.Errorf("failed to compress the health report: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("failed to compress the health report: %w", err)
	}
	return cm.WithBinaryData(map[string][]byte{GzipDataKey: buf.Bytes()}), nil
}

// FromConfigMap decodes the report in a report ConfigMap (DataKey or
// GzipDataKey).
func FromConfigMap(cm *corev1.ConfigMap) (Report, error) {
	if data, ok := cm.Data[DataKey]; ok {
		return Decode([]byte(data))
	}
	compressed, ok := cm.BinaryData[GzipDataKey]
	if !ok {
		return Report{}, fmt.Errorf("ConfigMap %s/%s holds no health report (neither data.%s nor binaryData.%s)",
			cm.Namespace, cm.Name, DataKey, GzipDataKey)
	}
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		return Report{}, fmt.Errorf("failed to decompress binaryData.%s: %w", GzipDataKey, err)
	}
	data, err := io.ReadAll(io.LimitReader(zr, maxDecompressed+1))
	if err != nil {
		return Report{}, fmt.Errorf("failed to decompress binaryData.%s: %w", GzipDataKey, err)
	}
	if len(data) > maxDecompressed {
		return Report{}, errors.New("binaryData." + GzipDataKey + " expands to more than 64 MiB")
	}
	return Decode(data)
}
