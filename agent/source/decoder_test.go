package source

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// decodeStrings is what a Decoded says, as strings: each object's origin
// and ref (with its error if rejected), then the file's errors.
func decodeStrings(t *testing.T, d Decoded) []string {
	t.Helper()
	var out []string
	for _, o := range d.Objects {
		if o.Err != nil {
			out = append(out, fmt.Sprintf("%s: rejected %s: %v", o.Origin, o.Ref, o.Err))
			continue
		}
		out = append(out, o.Origin)
	}
	for _, e := range d.Errors {
		out = append(out, "error: "+e.Error())
	}
	return append(out, fmt.Sprintf("skipped %d", d.Skipped))
}

// TestDecoderRemembersDocuments checks that a Decoder hands back the
// objects of unchanged documents as they were, decodes changed ones
// again, and says exactly what a fresh Decode says, origins (which move
// with the documents) and errors included.
func TestDecoderRemembersDocuments(t *testing.T) {
	const (
		svc     = "apiVersion: v1\nkind: Service\nmetadata: {name: product, namespace: shop}\nspec:\n  ports: [{port: 80}]\n"
		svc2    = "apiVersion: v1\nkind: Service\nmetadata: {name: product, namespace: shop}\nspec:\n  ports: [{port: 81}]\n"
		ns      = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
		typo    = "apiVersion: v1\nkind: Service\nmetadata: {name: typo, namespace: shop}\nspec:\n  portz: []\n"
		broken  = "apiVersion: v1\nkind: [\n"
		nokind  = "apiVersion: v1\nmetadata: {name: x}\n"
		other   = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: shop}\n"
		comment = "# nothing here\n"
	)
	join := func(docs ...string) string { return strings.Join(docs, "---\n") }
	var dec Decoder
	steps := []struct {
		name string
		in   string
	}{
		{name: "first read", in: join(ns, svc, typo, other, comment)},
		{name: "unchanged", in: join(ns, svc, typo, other, comment)},
		{name: "documents move", in: join(comment, other, typo, svc, ns)},
		{name: "one changes", in: join(ns, svc2, typo)},
		{name: "file-level errors", in: join(broken, ns, nokind, svc2)},
		{name: "fixed again", in: join(ns, svc)},
	}
	prev := map[string]any{} // document content -> object, from the previous step
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			want, err := Decode(strings.NewReader(st.in), "c.yaml")
			require.NoError(t, err)
			got, err := dec.Decode(strings.NewReader(st.in), "c.yaml")
			require.NoError(t, err)
			require.Equal(t, decodeStrings(t, want), decodeStrings(t, got))
			objs := map[string]any{}
			for _, o := range got.Objects {
				if o.Obj == nil {
					continue
				}
				key := fmt.Sprintf("%#v", o.Obj)
				if old, ok := prev[key]; ok {
					require.Same(t, old, o.Obj, "an unchanged document gives back the object it gave before")
				}
				objs[key] = o.Obj
			}
			prev = objs
		})
	}
	require.Len(t, dec.docs, 2, "only the documents of the last read are kept")
}
