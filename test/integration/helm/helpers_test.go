package helm_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// rendered are the objects of one `helm template`, in order.
type rendered []*unstructured.Unstructured

// render runs `helm template` of the chart as release releaseName in
// releaseNamespace with extra arguments (--set ..., -f ...). CRDs are not
// included: crds/ is not templated.
func render(ctx context.Context, args ...string) (rendered, error) {
	out, err := runHelm(ctx, append([]string{
		"template", releaseName, chartDir, "--namespace", releaseNamespace, "--kube-version", kubeVersion,
	}, args...)...)
	if err != nil {
		return nil, err
	}
	return parseObjects(out)
}

// mustRender renders and fails the spec on an error.
func mustRender(ctx context.Context, args ...string) rendered {
	objs, err := render(ctx, args...)
	Expect(err).NotTo(HaveOccurred())
	return objs
}

// parseObjects splits a multi-document YAML stream into objects, skipping
// empty documents.
func parseObjects(stream string) (rendered, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	var objs rendered
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read a YAML document: %w", err)
		}
		u := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(doc, &u.Object); err != nil {
			return nil, fmt.Errorf("failed to parse %q: %w", doc, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		objs = append(objs, u)
	}
}

// key names an object: Kind/name or Kind/namespace/name.
func key(u *unstructured.Unstructured) string {
	if u.GetNamespace() == "" {
		return u.GetKind() + "/" + u.GetName()
	}
	return u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
}

// keys lists the objects' keys.
func (r rendered) keys() []string {
	keys := make([]string, 0, len(r))
	for _, u := range r {
		keys = append(keys, key(u))
	}
	return keys
}

// get returns the object with the given key, failing the spec when there is
// none.
func (r rendered) get(k string) *unstructured.Unstructured {
	for _, u := range r {
		if key(u) == k {
			return u
		}
	}
	Expect(r.keys()).To(ContainElement(k), "rendered objects")
	return nil
}

// into converts the object with key k into a typed object, failing on fields
// the type does not know (a misspelt field in a template).
func (r rendered) into(k string, obj runtime.Object) {
	Expect(runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(r.get(k).Object, obj, true)).To(Succeed(), k)
}

// deployment decodes Deployment name of the release namespace.
func (r rendered) deployment(name string) *appsv1.Deployment {
	d := &appsv1.Deployment{}
	r.into("Deployment/"+releaseNamespace+"/"+name, d)
	return d
}

// containerNamed returns a pod template's container.
func containerNamed(d *appsv1.Deployment, name string) corev1.Container {
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	Expect(name).To(BeEmpty(), "container %s of Deployment %s not found", name, d.Name)
	return corev1.Container{}
}
