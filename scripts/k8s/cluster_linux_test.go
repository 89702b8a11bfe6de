package k8s

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// upCluster starts a cluster for a test, or skips when kube-apiserver or
// etcd cannot be had.
func upCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver (and builds kube-apiserver on first use)")
	}
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd not installed (scripts/deps.sh installs etcd-server)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bin, err := EnsureTool(ctx, ToolKubeAPIServer)
	if err != nil {
		t.Skipf("kube-apiserver %s unavailable: %v", KubeVersion, err)
	}
	opts.KubeAPIServer = bin
	opts.Logf = t.Logf
	c, err := Up(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Down()) })
	return c
}

func TestCluster(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cluster")
	c := upCluster(t, Options{Dir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("admin kubeconfig works and RBAC is on", func(t *testing.T) {
		rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig())
		require.NoError(t, err)
		cs, err := kubernetes.NewForConfig(rc)
		require.NoError(t, err)
		v, err := cs.Discovery().ServerVersion()
		require.NoError(t, err)
		require.Equal(t, KubeVersion, v.GitVersion)
		_, err = cs.RbacV1().ClusterRoles().Get(ctx, "cluster-admin", metav1.GetOptions{})
		require.NoError(t, err, "RBAC bootstrap roles exist")
	})

	t.Run("the Gateway API and AuthorizationPolicy CRDs are established", func(t *testing.T) {
		cs, err := c.Client()
		require.NoError(t, err)
		for _, gv := range []string{"gateway.networking.k8s.io/v1", "security.istio.io/v1"} {
			list, err := cs.Discovery().ServerResourcesForGroupVersion(gv)
			require.NoError(t, err, gv)
			var names []string
			for _, r := range list.APIResources {
				names = append(names, r.Name)
			}
			switch gv {
			case "gateway.networking.k8s.io/v1":
				require.Subset(t, names, []string{"httproutes", "grpcroutes"})
			default:
				require.Contains(t, names, "authorizationpolicies")
			}
		}
	})

	t.Run("apply and dry run", func(t *testing.T) {
		yaml := "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\ndata: {k: v}\n"
		got, err := Apply(ctx, c.RESTConfig(), []byte(yaml), ApplyOptions{DryRun: true})
		require.Error(t, err, "the namespace does not exist after a dry run")
		require.Equal(t, []string{"Namespace shop"}, got)
		got, err = Apply(ctx, c.RESTConfig(), []byte(yaml), ApplyOptions{})
		require.NoError(t, err)
		require.Equal(t, []string{"Namespace shop", "ConfigMap shop/c"}, got)
	})

	t.Run("a service account token authenticates", func(t *testing.T) {
		cs, err := c.Client()
		require.NoError(t, err)
		_, err = cs.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "probe"}}, metav1.CreateOptions{})
		require.NoError(t, err)
		tok, err := c.ServiceAccountToken(ctx, "default", "probe", time.Hour)
		require.NoError(t, err)
		kc := filepath.Join(t.TempDir(), "kubeconfig")
		require.NoError(t, c.WriteKubeconfig(kc, "probe", tok))
		rc, err := clientcmd.BuildConfigFromFlags("", kc)
		require.NoError(t, err)
		pcs, err := kubernetes.NewForConfig(rc)
		require.NoError(t, err)
		_, err = pcs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		require.ErrorContains(t, err, `"system:serviceaccount:default:probe" cannot list resource "pods"`)
	})

	t.Run("the API server restarts on the same etcd", func(t *testing.T) {
		require.NoError(t, c.StopAPIServer(2*time.Second))
		_, err := c.Client()
		require.NoError(t, err)
		require.NoError(t, c.StartAPIServer(ctx))
		cs, err := c.Client()
		require.NoError(t, err)
		_, err = cs.CoreV1().ConfigMaps("shop").Get(ctx, "c", metav1.GetOptions{})
		require.NoError(t, err, "objects survive in etcd")
	})

	t.Run("open finds it and down removes everything", func(t *testing.T) {
		o, err := Open(dir)
		require.NoError(t, err)
		require.Equal(t, c.Server(), o.Server())
		pids := []int{o.pid(etcdName), o.pid(apiName)}
		require.NoError(t, o.Down())
		_, err = os.Stat(dir)
		require.ErrorIs(t, err, os.ErrNotExist)
		for _, pid := range pids {
			_, err := os.Stat("/proc/" + strconv.Itoa(pid))
			require.ErrorIs(t, err, os.ErrNotExist, "pid %d is gone", pid)
		}
		require.NoError(t, c.Down(), "idempotent")
	})
}

func TestForwardIntoNetns(t *testing.T) {
	if os.Geteuid() != 0 || os.Getenv("SKEIN_SKIP_PRIVILEGED") != "" {
		t.Skip("needs root: creates a network namespace")
	}
	c := upCluster(t, Options{CRDs: []string{}})
	name := "skk8s-fwd-" + strconv.Itoa(os.Getpid())
	out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	require.NoError(t, exec.Command("ip", "-n", name, "link", "set", "lo", "up").Run())
	addr := "127.0.0.1:" + strconv.Itoa(c.Port())
	f, err := ForwardIntoNetns("/var/run/netns/"+name, addr, addr)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, f.Close()) })

	kc := c.Kubeconfig()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := exec.CommandContext(ctx, "ip", "netns", "exec", name, "kubectl", "--kubeconfig", kc, "get", "--raw", "/readyz").CombinedOutput()
	require.NoError(t, err, "%s", got)
	require.Equal(t, "ok", strings.TrimSpace(string(got)))
	total, _ := f.Accepted()
	require.GreaterOrEqual(t, total, int64(1))
	require.NoError(t, f.Close())
	require.NoError(t, f.Close(), "idempotent")
	_, err = exec.CommandContext(ctx, "ip", "netns", "exec", name, "kubectl", "--kubeconfig", kc, "--request-timeout", "2s", "get", "--raw", "/readyz").CombinedOutput()
	require.Error(t, err, "nothing listens in the namespace after Close")
}
