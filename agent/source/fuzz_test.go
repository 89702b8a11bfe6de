package source

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skeinmesh/skein/agent/model"
)

// FuzzDecode feeds arbitrary multi-document YAML to the standalone
// source's decoder and the model's validation. Invariants: nothing
// panics; every error names where it comes from (file and document) and,
// for a rejected object, the object; an object that is accepted
// round-trips: encoded and decoded again it is accepted again and encodes
// to the same bytes. Seeds are in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    skein.io/mesh: enabled\n"))
	f.Add([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  clusterIP: 10.96.0.10\n  ports: [{name: http, port: 80, targetPort: 8080, appProtocol: http}]\n---\n# comment only\n---\nkind: Foo\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 32<<10 {
			return
		}
		dec, err := Decode(bytes.NewReader(data), "fuzz.yaml")
		if err != nil {
			require.Contains(t, err.Error(), "fuzz.yaml document ")
			return
		}
		for _, e := range dec.Errors {
			require.Contains(t, e.Error(), "fuzz.yaml document ")
		}
		for _, o := range dec.Objects {
			require.True(t, strings.HasPrefix(o.Origin, "fuzz.yaml document "), o.Origin)
			if o.Err != nil {
				require.NotEmpty(t, o.Ref.Kind, "a rejected document names its kind")
				require.NotEmpty(t, o.Err.Error())
			} else {
				require.NotNil(t, o.Obj)
			}
		}
		_, errs := model.Merge(nil, dec.Objects)
		rejected := map[string]bool{}
		for _, e := range errs {
			msg := e.Error()
			require.True(t, strings.HasPrefix(msg, e.Ref.String()+": "), "%q does not start with the object %s", msg, e.Ref)
			require.Greater(t, len(msg), len(e.Ref.String())+2, "an error says why")
			rejected[e.Origin] = true
		}
		for _, o := range dec.Objects {
			if o.Obj == nil || rejected[o.Origin] {
				continue
			}
			b1 := encodeObject(t, o.Obj)
			again, err := Decode(bytes.NewReader(b1), "round-trip.yaml")
			require.NoError(t, err)
			require.Len(t, again.Objects, 1, "%s", b1)
			require.NoError(t, again.Objects[0].Err, "%s", b1)
			require.Empty(t, model.Validate(again.Objects[0].Obj), "%s", b1)
			require.Equal(t, string(b1), string(encodeObject(t, again.Objects[0].Obj)))
		}
	})
}

// encodeObject writes obj as JSON (a YAML document) with its kind.
func encodeObject(t *testing.T, obj runtime.Object) []byte {
	t.Helper()
	gvks, _, err := scheme.ObjectKinds(obj)
	require.NoError(t, err)
	c := obj.DeepCopyObject()
	c.GetObjectKind().SetGroupVersionKind(gvks[0])
	b, err := json.Marshal(c)
	require.NoError(t, err)
	return b
}
