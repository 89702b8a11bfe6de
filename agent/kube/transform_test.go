package kube

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/agent/model"
)

func managed() []metav1.ManagedFieldsEntry {
	return []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply,
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{}}}`)}}}
}

func TestTransform(t *testing.T) {
	tests := []struct {
		name  string
		obj   any
		check func(t *testing.T, got any)
	}{
		{
			name: "service loses managedFields and the last-applied copy, keeps other annotations",
			obj: func() any {
				s := service("shop", "product", "10.96.0.10")
				s.ManagedFields = managed()
				s.Annotations = map[string]string{LastAppliedAnnotation: `{"spec":{}}`, model.LBPolicyAnnotation: "round-robin"}
				return s
			}(),
			check: func(t *testing.T, got any) {
				s := got.(*corev1.Service)
				require.Nil(t, s.ManagedFields)
				require.Equal(t, map[string]string{model.LBPolicyAnnotation: "round-robin"}, s.Annotations)
				require.Equal(t, "10.96.0.10", s.Spec.ClusterIP)
			},
		},
		{
			name: "an annotation map left empty becomes nil",
			obj: func() any {
				ns := namespace("shop", true)
				ns.Annotations = map[string]string{LastAppliedAnnotation: "{}"}
				return ns
			}(),
			check: func(t *testing.T, got any) {
				ns := got.(*corev1.Namespace)
				require.Nil(t, ns.Annotations)
				require.True(t, model.NamespaceEnrolled(ns))
			},
		},
		{
			name: "pod keeps what the model reads",
			obj: func() any {
				p := pod("shop", "product", "node-a", "10.244.1.10")
				p.ManagedFields = managed()
				p.Spec.Volumes = []corev1.Volume{{Name: "data"}}
				p.Spec.HostNetwork = true
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
				return p
			}(),
			check: func(t *testing.T, got any) {
				p := got.(*corev1.Pod)
				require.Nil(t, p.ManagedFields)
				require.Equal(t, corev1.PodSpec{
					NodeName: "node-a", HostNetwork: true, ServiceAccountName: "product",
					Containers: []corev1.Container{{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}},
				}, p.Spec)
				require.Equal(t, corev1.PodStatus{
					Phase: corev1.PodRunning, PodIP: "10.244.1.10", HostIP: "192.168.77.1",
					Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
				}, p.Status)
				require.Equal(t, map[string]string{"app": "product"}, p.Labels)
				require.EqualValues(t, "uid-product", p.UID)
			},
		},
		{
			name: "node loses its image list",
			obj: &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: "node-a", ManagedFields: managed()},
				Status: corev1.NodeStatus{
					Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.77.1"}},
					Images:    []corev1.ContainerImage{{Names: []string{"example/app:1"}, SizeBytes: 1}},
				},
			},
			check: func(t *testing.T, got any) {
				n := got.(*corev1.Node)
				require.Nil(t, n.ManagedFields)
				require.Nil(t, n.Status.Images)
				require.Equal(t, "192.168.77.1", n.Status.Addresses[0].Address)
			},
		},
		{
			name:  "a non-object passes",
			obj:   "tombstone",
			check: func(t *testing.T, got any) { require.Equal(t, "tombstone", got) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Transform(tt.obj)
			require.NoError(t, err)
			tt.check(t, got)
			again, err := Transform(got)
			require.NoError(t, err)
			require.Equal(t, got, again, "idempotent")
		})
	}
}

// TestSourceStoresStrippedObjects checks the transform is installed: the
// fake API server records managedFields on every create, as a real one
// does, and none reach the agent.
func TestSourceStoresStrippedObjects(t *testing.T) {
	f := newFakeCluster(t, true, true)
	ctx := context.Background()
	s := service("shop", "product", "10.96.0.10")
	s.Annotations = map[string]string{LastAppliedAnnotation: "{}"}
	s.ManagedFields = managed()
	_, err := f.kube.CoreV1().Services("shop").Create(ctx, s, metav1.CreateOptions{})
	require.NoError(t, err)
	r := startSource(t, f, Config{})
	u := r.next()
	require.Len(t, u.Objects, 1)
	got := u.Objects[0].Obj.(*corev1.Service)
	require.Nil(t, got.ManagedFields)
	require.Nil(t, got.Annotations)
}
