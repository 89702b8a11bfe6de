package model

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Key names a namespaced object.
type Key struct {
	Namespace string
	Name      string
}

func (k Key) String() string {
	if k.Namespace == "" {
		return k.Name
	}
	return k.Namespace + "/" + k.Name
}

// KeyOf returns the key of an object.
func KeyOf(o metav1.Object) Key { return Key{Namespace: o.GetNamespace(), Name: o.GetName()} }

// Ref identifies an object for error messages and status: kind and key.
type Ref struct {
	Kind string
	Key
}

func (r Ref) String() string { return r.Kind + " " + r.Key.String() }

// Snapshot is a complete, validated set of objects. A Snapshot is never
// modified once handed out: build a new one.
type Snapshot struct {
	// Generation increases with every snapshot the agent applies.
	Generation int64

	Nodes                 map[string]*corev1.Node
	Namespaces            map[string]*corev1.Namespace
	Pods                  map[Key]*corev1.Pod
	Services              map[Key]*corev1.Service
	EndpointSlices        map[Key]*discoveryv1.EndpointSlice
	HTTPRoutes            map[Key]*gatewayv1.HTTPRoute
	GRPCRoutes            map[Key]*gatewayv1.GRPCRoute
	AuthorizationPolicies map[Key]*AuthorizationPolicy
}

// NewSnapshot returns an empty snapshot.
func NewSnapshot() *Snapshot {
	return &Snapshot{
		Nodes:                 map[string]*corev1.Node{},
		Namespaces:            map[string]*corev1.Namespace{},
		Pods:                  map[Key]*corev1.Pod{},
		Services:              map[Key]*corev1.Service{},
		EndpointSlices:        map[Key]*discoveryv1.EndpointSlice{},
		HTTPRoutes:            map[Key]*gatewayv1.HTTPRoute{},
		GRPCRoutes:            map[Key]*gatewayv1.GRPCRoute{},
		AuthorizationPolicies: map[Key]*AuthorizationPolicy{},
	}
}

// RefOf returns the kind and key of an object the model knows, and false for
// any other object.
func RefOf(obj runtime.Object) (Ref, bool) {
	var kind string
	switch obj.(type) {
	case *corev1.Node:
		kind = "Node"
	case *corev1.Namespace:
		kind = "Namespace"
	case *corev1.Pod:
		kind = "Pod"
	case *corev1.Service:
		kind = "Service"
	case *corev1.ServiceAccount:
		kind = "ServiceAccount"
	case *discoveryv1.EndpointSlice:
		kind = "EndpointSlice"
	case *gatewayv1.HTTPRoute:
		kind = "HTTPRoute"
	case *gatewayv1.GRPCRoute:
		kind = "GRPCRoute"
	case *AuthorizationPolicy:
		kind = "AuthorizationPolicy"
	default:
		return Ref{}, false
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return Ref{}, false
	}
	return Ref{Kind: kind, Key: KeyOf(m)}, true
}

// add stores obj under its kind. Objects of kinds the model does not keep
// (ServiceAccount) are accepted and ignored.
func (s *Snapshot) add(obj runtime.Object) {
	switch o := obj.(type) {
	case *corev1.Node:
		s.Nodes[o.Name] = o
	case *corev1.Namespace:
		s.Namespaces[o.Name] = o
	case *corev1.Pod:
		s.Pods[KeyOf(o)] = o
	case *corev1.Service:
		s.Services[KeyOf(o)] = o
	case *discoveryv1.EndpointSlice:
		s.EndpointSlices[KeyOf(o)] = o
	case *gatewayv1.HTTPRoute:
		s.HTTPRoutes[KeyOf(o)] = o
	case *gatewayv1.GRPCRoute:
		s.GRPCRoutes[KeyOf(o)] = o
	case *AuthorizationPolicy:
		s.AuthorizationPolicies[KeyOf(o)] = o
	}
}

// lookup returns the object stored under ref, or nil.
func (s *Snapshot) lookup(ref Ref) runtime.Object {
	var obj runtime.Object
	switch ref.Kind {
	case "Node":
		if o, ok := s.Nodes[ref.Name]; ok {
			obj = o
		}
	case "Namespace":
		if o, ok := s.Namespaces[ref.Name]; ok {
			obj = o
		}
	case "Pod":
		if o, ok := s.Pods[ref.Key]; ok {
			obj = o
		}
	case "Service":
		if o, ok := s.Services[ref.Key]; ok {
			obj = o
		}
	case "EndpointSlice":
		if o, ok := s.EndpointSlices[ref.Key]; ok {
			obj = o
		}
	case "HTTPRoute":
		if o, ok := s.HTTPRoutes[ref.Key]; ok {
			obj = o
		}
	case "GRPCRoute":
		if o, ok := s.GRPCRoutes[ref.Key]; ok {
			obj = o
		}
	case "AuthorizationPolicy":
		if o, ok := s.AuthorizationPolicies[ref.Key]; ok {
			obj = o
		}
	}
	return obj
}

// Counts returns the number of objects per kind, for status output.
func (s *Snapshot) Counts() map[string]int {
	return map[string]int{
		"Node":                len(s.Nodes),
		"Namespace":           len(s.Namespaces),
		"Pod":                 len(s.Pods),
		"Service":             len(s.Services),
		"EndpointSlice":       len(s.EndpointSlices),
		"HTTPRoute":           len(s.HTTPRoutes),
		"GRPCRoute":           len(s.GRPCRoutes),
		"AuthorizationPolicy": len(s.AuthorizationPolicies),
	}
}

// Object is a raw object from a source, with where it came from.
type Object struct {
	Obj runtime.Object
	// Origin says where the object came from, e.g. "cluster.yaml document 3";
	// empty for objects from the API server.
	Origin string
	// Err, if set, says why the source could not decode the object named
	// by Ref (Obj is then nil): it is rejected like an invalid object.
	Err error
	Ref Ref
}

// Merge validates objs and builds the next snapshot. An invalid object is
// left out and, if prev holds a version of it, that last good version is
// kept. The returned errors say which objects were rejected and why.
func Merge(prev *Snapshot, objs []Object) (*Snapshot, []*ObjectError) {
	next := NewSnapshot()
	var errs []*ObjectError
	seen := make(map[Ref]string)
	for _, o := range objs {
		if o.Err != nil {
			errs = append(errs, &ObjectError{Ref: o.Ref, Origin: o.Origin, Err: o.Err})
			if prev != nil {
				if old := prev.lookup(o.Ref); old != nil {
					next.add(old)
				}
			}
			continue
		}
		ref, ok := RefOf(o.Obj)
		if !ok {
			continue
		}
		if first, dup := seen[ref]; dup {
			errs = append(errs, &ObjectError{Ref: ref, Origin: o.Origin, Errs: fieldErrors(
				fieldDuplicate("metadata.name", ref.Name, "the same object is also defined in "+first))})
			continue
		}
		seen[ref] = o.Origin
		if fe := Validate(o.Obj); len(fe) > 0 {
			errs = append(errs, &ObjectError{Ref: ref, Origin: o.Origin, Errs: fe})
			if prev != nil {
				if old := prev.lookup(ref); old != nil {
					next.add(old)
				}
			}
			continue
		}
		next.add(o.Obj)
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Ref.String() < errs[j].Ref.String() })
	return next, errs
}

// ObjectError says why an object was rejected.
type ObjectError struct {
	Ref    Ref
	Origin string
	// Errs are the invalid fields; Err a decoding error instead.
	Errs FieldErrors
	Err  error
}

func (e *ObjectError) Error() string {
	msgs := make([]string, 0, len(e.Errs)+1)
	if e.Err != nil {
		msgs = append(msgs, e.Err.Error())
	}
	for _, fe := range e.Errs {
		msgs = append(msgs, fe.Error())
	}
	s := fmt.Sprintf("%s: %s", e.Ref, strings.Join(msgs, "; "))
	if e.Origin != "" {
		s += " (" + e.Origin + ")"
	}
	return s
}
