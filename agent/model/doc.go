// Package model is the agent's view of the cluster: the Kubernetes objects
// that matter to Skein, whichever source they come from (the API server
// through informers, or YAML files in standalone mode and in the lab).
//
// A [Snapshot] holds complete, validated object sets. Sources hand the agent
// raw objects; [Merge] validates each one and, for an object that is invalid,
// keeps the last good version of it, so one bad edit never takes down what
// was serving. Validation errors name the object, the field and the reason.
//
// The package also holds the cluster conventions the agent relies on: which
// namespaces and pods are enrolled in the mesh, the workload a pod belongs
// to, and its SPIFFE identity.
package model
