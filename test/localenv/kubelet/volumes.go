package kubelet

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// file is one file of a volume.
type file struct {
	data []byte
	mode os.FileMode
}

// token is a service-account token and when to replace it.
type token struct {
	value   string
	refresh time.Time
}

// syncVolumes writes the pod's volumes from their sources.
func (w *podWorker) syncVolumes(ctx context.Context) error {
	pod, _, ip := w.snapshot()
	var fsGroup *int64
	if pod.Spec.SecurityContext != nil {
		fsGroup = pod.Spec.SecurityContext.FSGroup
	}
	var errs []error
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(w.dir, "volumes", v.Name)
		if v.EmptyDir != nil {
			err := os.MkdirAll(dir, 0o777)
			if err == nil {
				err = os.Chmod(dir, 0o777)
			}
			errs = append(errs, err)
			continue
		}
		files, err := w.volumeFiles(ctx, pod, &v, ip)
		if sum := payloadSum(files, fsGroup); err == nil && w.written[v.Name] != sum {
			if err = writeAtomic(dir, files, fsGroup); err == nil {
				w.written[v.Name] = sum
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %q: %w", v.Name, err))
		}
	}
	return errors.Join(errs...)
}

// volumeFiles computes the files of a secret, configMap, downwardAPI or
// projected volume.
func (w *podWorker) volumeFiles(ctx context.Context, pod *corev1.Pod, v *corev1.Volume, podIP string) (map[string]file, error) {
	p, out := projection(v), map[string]file{}
	for _, src := range p.Sources {
		var err error
		switch {
		case src.Secret != nil:
			err = w.k.keyFiles(ctx, out, "Secret", pod.Namespace, src.Secret.Name, src.Secret.Items, p.DefaultMode, src.Secret.Optional)
		case src.ConfigMap != nil:
			err = w.k.keyFiles(ctx, out, "ConfigMap", pod.Namespace, src.ConfigMap.Name, src.ConfigMap.Items, p.DefaultMode, src.ConfigMap.Optional)
		case src.DownwardAPI != nil:
			err = downwardFiles(out, pod, src.DownwardAPI.Items, p.DefaultMode, podIP, w.k.opts.NodeIP)
		case src.ServiceAccountToken != nil:
			var t string
			t, err = w.token(ctx, pod, src.ServiceAccountToken)
			out[src.ServiceAccountToken.Path] = file{data: []byte(t), mode: fileMode(p.DefaultMode)}
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// projection is the projected volume equivalent to a secret, configMap or
// downwardAPI volume.
func projection(v *corev1.Volume) *corev1.ProjectedVolumeSource {
	switch {
	case v.Secret != nil:
		return &corev1.ProjectedVolumeSource{DefaultMode: v.Secret.DefaultMode, Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: v.Secret.SecretName}, Items: v.Secret.Items, Optional: v.Secret.Optional}}}}
	case v.ConfigMap != nil:
		return &corev1.ProjectedVolumeSource{DefaultMode: v.ConfigMap.DefaultMode, Sources: []corev1.VolumeProjection{{ConfigMap: &corev1.ConfigMapProjection{
			LocalObjectReference: v.ConfigMap.LocalObjectReference, Items: v.ConfigMap.Items, Optional: v.ConfigMap.Optional}}}}
	case v.DownwardAPI != nil:
		return &corev1.ProjectedVolumeSource{DefaultMode: v.DownwardAPI.DefaultMode, Sources: []corev1.VolumeProjection{{DownwardAPI: &corev1.DownwardAPIProjection{
			Items: v.DownwardAPI.Items}}}}
	}
	return v.Projected
}

// objectData is the data of Secret or ConfigMap (kind) ns/name; a missing
// optional one has none.
func (k *Kubelet) objectData(ctx context.Context, kind, ns, name string, optional *bool) (map[string][]byte, error) {
	data := map[string][]byte{}
	var err error
	if kind == "Secret" {
		var s *corev1.Secret
		if s, err = k.opts.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			data = s.Data
		}
	} else {
		var cm *corev1.ConfigMap
		if cm, err = k.opts.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			for key, v := range cm.Data {
				data[key] = []byte(v)
			}
			maps.Copy(data, cm.BinaryData)
		}
	}
	if apierrors.IsNotFound(err) && ptr.Deref(optional, false) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("failed to get %s %s/%s: %w", kind, ns, name, err)
	}
	return data, nil
}

func fileMode(m *int32) os.FileMode {
	if m == nil {
		return 0o644
	}
	return os.FileMode(*m) & os.ModePerm
}

// keyFiles adds a file per key of a Secret or ConfigMap (or per item when
// items are given).
func (k *Kubelet) keyFiles(ctx context.Context, out map[string]file, kind, ns, name string, items []corev1.KeyToPath, defaultMode *int32, optional *bool) error {
	data, err := k.objectData(ctx, kind, ns, name, optional)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		for key, v := range data {
			out[key] = file{data: v, mode: fileMode(defaultMode)}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok && !ptr.Deref(optional, false) {
			return fmt.Errorf("%s %s/%s has no key %q", kind, ns, name, it.Key)
		}
		if ok {
			out[it.Path] = file{data: v, mode: fileMode(cmp.Or(it.Mode, defaultMode))}
		}
	}
	return nil
}

func downwardFiles(out map[string]file, pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, defaultMode *int32, podIP, hostIP string) error {
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = fieldValue(pod, it.FieldRef.FieldPath, podIP, hostIP)
		case it.ResourceFieldRef != nil:
			err = fmt.Errorf("container %q not found", it.ResourceFieldRef.ContainerName)
			for i := range pod.Spec.Containers {
				if c := &pod.Spec.Containers[i]; c.Name == it.ResourceFieldRef.ContainerName {
					v, err = resourceValue(c, it.ResourceFieldRef)
				}
			}
		}
		if err != nil {
			return fmt.Errorf("downward API file %s: %w", it.Path, err)
		}
		out[it.Path] = file{data: []byte(v), mode: fileMode(cmp.Or(it.Mode, defaultMode))}
	}
	return nil
}

// token returns a token of the pod's service account bound to the pod, as
// the kubelet requests it, reusing it until 80% of its lifetime passed.
func (w *podWorker) token(ctx context.Context, pod *corev1.Pod, p *corev1.ServiceAccountTokenProjection) (string, error) {
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	expiration := ptr.Deref(p.ExpirationSeconds, 3600)
	key := sa + "|" + p.Audience + "|" + strconv.FormatInt(expiration, 10)
	if t, ok := w.tokens[key]; ok && time.Now().Before(t.refresh) {
		return t.value, nil
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &expiration,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID},
	}}
	if p.Audience != "" {
		req.Spec.Audiences = []string{p.Audience}
	}
	issued := time.Now()
	resp, err := w.k.opts.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("failed to request a token of service account %s/%s: %w", pod.Namespace, sa, err)
	}
	lifetime := resp.Status.ExpirationTimestamp.Sub(issued)
	w.tokens[key] = token{value: resp.Status.Token, refresh: issued.Add(lifetime * 8 / 10)}
	return resp.Status.Token, nil
}

// writeAtomic makes dir hold exactly files, as the kubelet's AtomicWriter
// does: the files live in a timestamped directory that the ..data symlink
// points at, swapped in with one rename, and each top-level name is a
// symlink through ..data, so a reader never sees a half-written update.
// With fsGroup, files belong to that group and are group-readable.
func writeAtomic(dir string, files map[string]file, fsGroup *int64) error {
	for p := range files {
		if !filepath.IsLocal(p) || strings.HasPrefix(p, "..") {
			return fmt.Errorf("invalid file path %q", p)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dataLink := filepath.Join(dir, "..data")
	old, _ := os.Readlink(dataLink)
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return err
	}
	tops := map[string]bool{}
	for p, f := range files {
		path := filepath.Join(ts, p)
		mode := f.mode
		if fsGroup != nil {
			mode |= 0o040
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, f.data, mode); err != nil {
			return err
		}
		if err := os.Chmod(path, mode); err != nil {
			return err
		}
		if fsGroup != nil {
			if err := os.Lchown(path, -1, int(*fsGroup)); err != nil {
				return err
			}
		}
		tops[strings.SplitN(p, "/", 2)[0]] = true
	}
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dataLink); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "..") && !tops[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	for top := range tops {
		if _, err := os.Lstat(filepath.Join(dir, top)); errors.Is(err, fs.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", top), filepath.Join(dir, top)); err != nil {
				return err
			}
		}
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// payloadSum identifies what writeAtomic writes, to skip unchanged volumes.
func payloadSum(files map[string]file, fsGroup *int64) string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		_, _ = fmt.Fprintf(h, "%q %o %d\n", name, files[name].mode, len(files[name].data))
		_, _ = h.Write(files[name].data)
	}
	_, _ = fmt.Fprint(h, ptr.Deref(fsGroup, -1))
	return hex.EncodeToString(h.Sum(nil))
}
