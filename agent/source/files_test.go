package source

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"

	"github.com/skeinmesh/skein/agent/model"
)

const good = `
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {skein.io/mesh: enabled}
---
# a comment-only document is skipped
---
apiVersion: v1
kind: Service
metadata: {name: product, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: ignored, namespace: shop}
`

func TestDecode(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		wantObjects int
		wantBad     string // substring of an object's Err
		wantFileErr string // substring of a file-level error
		wantSkipped int
	}{
		{name: "good file", in: good, wantObjects: 2, wantSkipped: 1},
		{
			name:        "unknown field rejects the object, not the file",
			in:          good + "---\napiVersion: v1\nkind: Service\nmetadata: {name: typo, namespace: shop}\nspec:\n  portz: []\n",
			wantObjects: 3, wantSkipped: 1, wantBad: `unknown field "spec.portz"`,
		},
		{
			name:        "mistyped field",
			in:          "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: shop}\nspec:\n  ports: [{port: eighty}]\n",
			wantObjects: 1, wantBad: "spec.ports",
		},
		{name: "missing kind", in: "apiVersion: v1\nmetadata: {name: x}\n", wantFileErr: "apiVersion and kind are required"},
		{name: "broken yaml", in: "apiVersion: v1\nkind: [\n", wantFileErr: "not valid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Decode(strings.NewReader(tt.in), "f.yaml")
			require.NoError(t, err)
			require.Len(t, d.Objects, tt.wantObjects)
			require.Equal(t, tt.wantSkipped, d.Skipped)
			if tt.wantFileErr != "" {
				require.NotEmpty(t, d.Errors)
				require.ErrorContains(t, d.Errors[0], tt.wantFileErr)
				require.ErrorContains(t, d.Errors[0], "f.yaml document 1")
			} else {
				require.Empty(t, d.Errors)
			}
			var bad []string
			for _, o := range d.Objects {
				if o.Err != nil {
					bad = append(bad, o.Ref.String()+": "+o.Err.Error())
				}
			}
			if tt.wantBad != "" {
				require.Len(t, bad, 1)
				require.Contains(t, bad[0], tt.wantBad)
				require.Contains(t, bad[0], "Service shop/")
			} else {
				require.Empty(t, bad)
			}
		})
	}
}

func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

func TestFilesKeepLastGoodFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cluster.yaml")
	writeAtomic(t, p, good)
	f, err := NewFiles(FilesConfig{Paths: []string{p}}, zap.NewNop())
	require.NoError(t, err)
	u := f.Read()
	require.Empty(t, u.Errors)
	require.Len(t, u.Objects, 2)

	writeAtomic(t, p, "apiVersion: v1\nkind: [\n")
	u = f.Read()
	require.Len(t, u.Errors, 1)
	require.Len(t, u.Objects, 2, "a file that does not read keeps its last good objects")

	require.NoError(t, os.Remove(p))
	u = f.Read()
	require.Len(t, u.Errors, 1, "a missing file is reported")
	require.Empty(t, u.Objects, "a removed file takes its objects with it")
}

func TestFilesDirectory(t *testing.T) {
	dir := t.TempDir()
	writeAtomic(t, filepath.Join(dir, "a.yaml"), good)
	writeAtomic(t, filepath.Join(dir, "b.yml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("kind: ["), 0o644))
	f, err := NewFiles(FilesConfig{Paths: []string{dir}}, zap.NewNop())
	require.NoError(t, err)
	u := f.Read()
	require.Empty(t, u.Errors)
	require.Len(t, u.Objects, 3)
}

func TestNewFilesNeedsPaths(t *testing.T) {
	_, err := NewFiles(FilesConfig{}, zap.NewNop())
	require.Error(t, err)
}

func TestFilesRunWatches(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cluster.yaml")
	writeAtomic(t, p, good)
	f, err := NewFiles(FilesConfig{Paths: []string{p}, Debounce: 10 * time.Millisecond}, zap.NewNop())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan Update, 10)
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, func(u Update) { updates <- u }) }()

	next := func() Update {
		select {
		case u := <-updates:
			return u
		case <-time.After(5 * time.Second):
			t.Fatal("no update")
			return Update{}
		}
	}
	require.Len(t, next().Objects, 2)
	writeAtomic(t, p, good+"---\napiVersion: v1\nkind: Namespace\nmetadata: {name: added}\n")
	u := next()
	require.Len(t, u.Objects, 3)
	snap, errs := model.Merge(nil, u.Objects)
	require.Empty(t, errs)
	require.Contains(t, snap.Namespaces, "added")
	require.IsType(t, &corev1.Namespace{}, u.Objects[2].Obj)

	cancel()
	require.NoError(t, <-done)
}
