package kube

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayinformers "sigs.k8s.io/gateway-api/pkg/client/informers/externalversions/apis/v1"

	"github.com/skeinmesh/skein/agent/model"
)

// kind is one resource the source watches.
type kind struct {
	// name is the model's kind name, as in model.Ref.
	name string
	gvr  schema.GroupVersionResource
	// optional kinds come from CRDs that may not be installed: the source
	// watches them only while discovery lists them.
	optional bool
	// why says, for an optional kind, what is lost while it is missing.
	why         string
	newInformer func(c *Clients, resync time.Duration) cache.SharedIndexInformer
	transform   cache.TransformFunc
}

// AuthorizationPolicyResource is the resource the source reads policies from.
var AuthorizationPolicyResource = schema.GroupVersionResource{
	Group: model.SecurityGroupVersions[0].Group, Version: model.SecurityGroupVersions[0].Version, Resource: "authorizationpolicies",
}

// kinds lists what the source watches, in delivery order. Every informer
// watches all namespaces: Pods of other nodes give peers their identities
// and workloads, and Services and EndpointSlices everywhere are routable.
func kinds() []kind {
	none := cache.Indexers{}
	return []kind{
		{
			name: "Node", gvr: corev1.SchemeGroupVersion.WithResource("nodes"), transform: Transform,
			newInformer: func(c *Clients, r time.Duration) cache.SharedIndexInformer {
				return coreinformers.NewNodeInformer(c.Kube, r, none)
			},
		},
		{
			name: "Namespace", gvr: corev1.SchemeGroupVersion.WithResource("namespaces"), transform: Transform,
			newInformer: func(c *Clients, r time.Duration) cache.SharedIndexInformer {
				return coreinformers.NewNamespaceInformer(c.Kube, r, none)
			},
		},
		{
			name: "Pod", gvr: corev1.SchemeGroupVersion.WithResource("pods"), transform: Transform,
			newInformer: func(c *Clients, r time.Duration) cache.SharedIndexInformer {
				return coreinformers.NewPodInformer(c.Kube, corev1.NamespaceAll, r, none)
			},
		},
		{
			name: "Service", gvr: corev1.SchemeGroupVersion.WithResource("services"), transform: Transform,
			newInformer: func(c *Clients, r time.Duration) cache.SharedIndexInformer {
				return coreinformers.NewServiceInformer(c.Kube, corev1.NamespaceAll, r, none)
			},
		},
		{
			name: "EndpointSlice", gvr: discoveryv1.SchemeGroupVersion.WithResource("endpointslices"), transform: Transform,
			newInformer: func(c *Clients, r time.Duration) cache.SharedIndexInformer {
				return discoveryinformers.NewEndpointSliceInformer(c.Kube, corev1.NamespaceAll, r, none)
			},
		},
		{
			name: "HTTPRoute", gvr: gatewayv1.SchemeGroupVersion.WithResource("httproutes"), transform: Transform,
			optional: true, why: "HTTP routes are not applied; install the Gateway API CRDs (standard channel)",
			newInformer: func(c *Clients, r time.Duration) cache.SharedIndexInformer {
				return gatewayinformers.NewHTTPRouteInformer(c.Gateway, corev1.NamespaceAll, r, none)
			},
		},
		{
			name: "GRPCRoute", gvr: gatewayv1.SchemeGroupVersion.WithResource("grpcroutes"), transform: Transform,
			optional: true, why: "gRPC routes are not applied; install the Gateway API CRDs (standard channel)",
			newInformer: func(c *Clients, r time.Duration) cache.SharedIndexInformer {
				return gatewayinformers.NewGRPCRouteInformer(c.Gateway, corev1.NamespaceAll, r, none)
			},
		},
		{
			name: "AuthorizationPolicy", gvr: AuthorizationPolicyResource, transform: policyTransform,
			optional: true, why: "authorization policies are not enforced; install the security.istio.io AuthorizationPolicy CRD",
			newInformer: func(c *Clients, r time.Duration) cache.SharedIndexInformer {
				return dynamicinformer.NewFilteredDynamicInformer(c.Dynamic, AuthorizationPolicyResource, corev1.NamespaceAll, r, none, nil).Informer()
			},
		},
	}
}
