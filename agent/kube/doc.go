// Package kube is the agent's configuration source from the Kubernetes API
// server: client-go informers on Nodes, Namespaces, Pods, Services,
// EndpointSlices, Gateway API HTTPRoutes and GRPCRoutes (GAMMA) and Istio's
// security.istio.io/v1 AuthorizationPolicy feed the same model as the YAML
// file source in package source.
//
// A [Source] has the file source's shape: Run delivers a [source.Update]
// holding the complete object set, built from the informers' caches, once
// every informer has synced and then after every change, debounced so a
// burst of events (a rollout, a relist after a watch error) is delivered
// once. The agent therefore applies the API server's objects exactly as it
// applies a file's, with the same validation and last-good semantics.
//
// Readiness: nothing is delivered before the initial list of every served
// resource is in the cache, so the agent's /readyz stays false until then
// ([Source.HasSynced], [Source.WaitForSync]).
//
// Optional APIs: the Gateway API routes and AuthorizationPolicy come from
// CRDs that may not be installed. A missing one is logged once and left
// out; the source checks discovery periodically and starts (or stops) its
// informer when the CRD appears (or goes).
//
// Memory: the caches hold only what the model reads. A transform strips
// managedFields and the last-applied-configuration annotation from every
// object, and trims Pods and Nodes to the fields the agent uses, before
// anything is stored; see [Transform].
//
// Watch errors need no code here: each informer's reflector relists and
// re-watches with backoff, and a relist that changed anything triggers a
// delivery like any other event.
package kube
