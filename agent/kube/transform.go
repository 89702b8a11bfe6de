package kube

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skeinmesh/skein/agent/model"
)

// LastAppliedAnnotation is kubectl's copy of the last applied manifest: a
// second, JSON-encoded copy of the object, often its largest part.
const LastAppliedAnnotation = corev1.LastAppliedConfigAnnotation

// Transform drops what the agent never reads from an object before an
// informer stores it: managedFields and the last-applied-configuration
// annotation of every object, everything of a Pod but its metadata, node,
// host network, service account, container ports and addresses, and a
// Node's image list, volumes and resource figures. It changes obj in place
// (informers hand it a fresh object), is idempotent, and passes anything
// that is not an object through unchanged.
func Transform(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		stripMeta(m)
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		trimPod(o)
	case *corev1.Node:
		trimNode(o)
	}
	return obj, nil
}

func stripMeta(m metav1.Object) {
	m.SetManagedFields(nil)
	if a := m.GetAnnotations(); a != nil {
		if _, ok := a[LastAppliedAnnotation]; ok {
			delete(a, LastAppliedAnnotation)
			if len(a) == 0 {
				a = nil
			}
			m.SetAnnotations(a)
		}
	}
}

// trimPod keeps the fields the model reads (model.PodCapture, PodIPs,
// ServiceAccount, WorkloadName and validation), plus container names and
// ports so a named targetPort can still be resolved. On a node with 110 pods
// in a cluster of thousands this is most of the cache.
func trimPod(p *corev1.Pod) {
	containers := make([]corev1.Container, 0, len(p.Spec.Containers))
	for _, c := range p.Spec.Containers {
		containers = append(containers, corev1.Container{Name: c.Name, Ports: c.Ports})
	}
	p.Spec = corev1.PodSpec{
		NodeName:           p.Spec.NodeName,
		HostNetwork:        p.Spec.HostNetwork,
		ServiceAccountName: p.Spec.ServiceAccountName,
		Containers:         containers,
	}
	p.Status = corev1.PodStatus{
		Phase:      p.Status.Phase,
		Conditions: p.Status.Conditions,
		HostIP:     p.Status.HostIP,
		HostIPs:    p.Status.HostIPs,
		PodIP:      p.Status.PodIP,
		PodIPs:     p.Status.PodIPs,
	}
}

// trimNode keeps a Node's metadata, spec, addresses, conditions and system
// info; its image list alone is often tens of kilobytes.
func trimNode(n *corev1.Node) {
	n.Status = corev1.NodeStatus{
		Addresses:       n.Status.Addresses,
		Conditions:      n.Status.Conditions,
		NodeInfo:        n.Status.NodeInfo,
		DaemonEndpoints: n.Status.DaemonEndpoints,
	}
}

// invalidObject stands in the cache for an object that does not convert to
// the model's type (an unknown or mistyped field of an AuthorizationPolicy):
// the model rejects it and keeps its last good version, as it does for a
// bad document in a file. An informer's transform must not fail, or the
// reflector would drop its whole watch and relist forever.
type invalidObject struct {
	metav1.TypeMeta
	metav1.ObjectMeta
	RefKind string
	Err     error
}

func (o *invalidObject) DeepCopyObject() runtime.Object {
	c := *o
	o.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return &c
}

func (o *invalidObject) object() model.Object {
	return model.Object{
		Err: o.Err,
		Ref: model.Ref{Kind: o.RefKind, Key: model.Key{Namespace: o.Namespace, Name: o.Name}},
	}
}

var _ runtime.Object = (*invalidObject)(nil)

// policyTransform turns the dynamic informer's unstructured
// AuthorizationPolicies into the model's type, decoding strictly as the
// file source does: a field Skein does not know is an error, never
// silently ignored.
func policyTransform(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return Transform(obj)
	}
	stripMeta(u)
	p := &model.AuthorizationPolicy{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, p, true); err != nil {
		bad := &invalidObject{RefKind: "AuthorizationPolicy", Err: fmt.Errorf("decode: %s", cleanConvertError(err))}
		bad.ObjectMeta = metav1.ObjectMeta{
			Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID(), ResourceVersion: u.GetResourceVersion(),
		}
		return bad, nil
	}
	// The informer keys objects by metadata only; keep apiVersion and
	// kind for messages and agentctl.
	gv, _ := schema.ParseGroupVersion(u.GetAPIVersion())
	p.SetGroupVersionKind(gv.WithKind("AuthorizationPolicy"))
	return p, nil
}

// cleanConvertError turns the converter's `unknown field "spec.foo"` list
// into one line.
func cleanConvertError(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
