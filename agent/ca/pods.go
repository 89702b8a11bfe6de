package ca

import (
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"

	"github.com/skeinmesh/skein/agent/identity"
	"github.com/skeinmesh/skein/agent/model"
)

// SnapshotLocator answers PodLocator from the cluster objects, fed by the
// same sources as the agent (YAML files or informers).
type SnapshotLocator struct {
	snap atomic.Pointer[model.Snapshot]
}

var _ PodLocator = (*SnapshotLocator)(nil)

// Update replaces the objects.
func (l *SnapshotLocator) Update(s *model.Snapshot) { l.snap.Store(s) }

// HasWorkload implements PodLocator: a pod with the identity's namespace and
// service account is scheduled on node and is not finished or deleted.
func (l *SnapshotLocator) HasWorkload(node string, id identity.ID) bool {
	s := l.snap.Load()
	if s == nil || node == "" {
		return false
	}
	for k, p := range s.Pods {
		if k.Namespace != id.Namespace || p.Spec.NodeName != node || p.DeletionTimestamp != nil {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if model.ServiceAccount(p) == id.ServiceAccount {
			return true
		}
	}
	return false
}
