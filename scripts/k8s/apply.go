package k8s

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// ApplyOptions configure Apply.
type ApplyOptions struct {
	// FieldManager names the applier. Empty: "skein-k8s".
	FieldManager string
	// DryRun asks the server to validate and admit without persisting.
	DryRun bool
	// Namespace is used for namespaced objects without one. Empty: default.
	Namespace string
}

// Decode splits a multi-document YAML (or JSON) stream into objects,
// skipping empty documents.
func Decode(data []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read document %d: %w", n, err)
		}
		obj := map[string]any{}
		if err := utilyaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("document %d: apiVersion and kind are required", n)
		}
		out = append(out, u)
	}
}

// applyOrder puts what other objects need first: CRDs, then Namespaces.
func applyOrder(u *unstructured.Unstructured) int {
	switch u.GetKind() {
	case "CustomResourceDefinition":
		return 0
	case "Namespace":
		return 1
	}
	return 2
}

// Apply server-side applies every object of a multi-document YAML stream
// and returns "Kind namespace/name" for each. Objects whose kind the
// server does not know yet (a CRD that was just created) are retried for
// up to 10 seconds while discovery catches up.
func Apply(ctx context.Context, rc *rest.Config, data []byte, opts ApplyOptions) ([]string, error) {
	objs, err := Decode(data)
	if err != nil {
		return nil, err
	}
	return ApplyObjects(ctx, rc, objs, opts)
}

// ApplyObjects is Apply for decoded objects.
func ApplyObjects(ctx context.Context, rc *rest.Config, objs []*unstructured.Unstructured, opts ApplyOptions) ([]string, error) {
	if opts.FieldManager == "" {
		opts.FieldManager = "skein-k8s"
	}
	if opts.Namespace == "" {
		opts.Namespace = metav1.NamespaceDefault
	}
	dc, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	objs = slices.Clone(objs)
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return applyOrder(a) - applyOrder(b) })
	var done []string
	var errs []error
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		name := gvk.Kind + " " + u.GetName()
		var mapping *meta.RESTMapping
		for deadline := time.Now().Add(10 * time.Second); ; {
			mapping, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err == nil || !meta.IsNoMatchError(err) || time.Now().After(deadline) {
				break
			}
			mapper.Reset()
			select {
			case <-ctx.Done():
				return done, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("apply %s: %w", name, err))
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := u.GetNamespace()
			if ns == "" {
				ns = opts.Namespace
				u.SetNamespace(ns)
			}
			name = gvk.Kind + " " + ns + "/" + u.GetName()
			ri = dyn.Resource(mapping.Resource).Namespace(ns)
		}
		body, err := u.MarshalJSON()
		if err != nil {
			return done, err
		}
		po := metav1.PatchOptions{FieldManager: opts.FieldManager, Force: ptrTo(true)}
		if opts.DryRun {
			po.DryRun = []string{metav1.DryRunAll}
		}
		if _, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, po); err != nil {
			errs = append(errs, fmt.Errorf("apply %s: %w", name, err))
			continue
		}
		done = append(done, name)
	}
	return done, errors.Join(errs...)
}

func ptrTo[T any](v T) *T { return &v }

// crdGVR is where CustomResourceDefinitions live.
var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// DefaultCRDs returns the CRD files a Skein test cluster gets: the Gateway
// API standard channel from the sigs.k8s.io/gateway-api module the
// repository requires (the same YAML as the release's standard-install),
// and Skein's CRDs from deploy/helm/skein/crds. It runs `go list`, so it
// works from inside the repository.
func DefaultCRDs(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/skeinmesh/skein", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return nil, fmt.Errorf("find the skein and gateway-api modules (run inside the repository): %w", err)
	}
	dirs := strings.Fields(string(out))
	if len(dirs) != 2 {
		return nil, fmt.Errorf("find the skein and gateway-api modules: go list printed %q", out)
	}
	gw, err := filepath.Glob(filepath.Join(dirs[1], "config", "crd", "standard", "*.yaml"))
	if err != nil || len(gw) == 0 {
		return nil, fmt.Errorf("no Gateway API CRDs under %s/config/crd/standard", dirs[1])
	}
	own, err := filepath.Glob(filepath.Join(dirs[0], "deploy", "helm", "skein", "crds", "*.yaml"))
	if err != nil {
		return nil, err
	}
	return append(gw, own...), nil
}
