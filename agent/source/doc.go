// Package source reads the Kubernetes objects the agent needs from YAML
// files: the standalone mode, used by the lab and by nodes without an API
// server. It plays the API server's part: it delivers the complete object set
// whenever a file changes, and it keeps the last good objects of a file that
// no longer parses, so a half-written edit never empties the mesh.
//
// [Decode] is the same decoding that `agentctl config validate` uses.
package source
