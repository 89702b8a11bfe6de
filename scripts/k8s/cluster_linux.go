package k8s

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ServiceCIDR is the cluster's Service range, the lab's as well.
const ServiceCIDR = "10.96.0.0/16"

// Options configure a cluster.
type Options struct {
	// Dir holds the cluster's state. It must not exist or be empty. Empty:
	// a new temporary directory.
	Dir string
	// KubeAPIServer is the kube-apiserver binary. Empty: EnsureTool builds
	// or finds it.
	KubeAPIServer string
	// Etcd is the etcd binary. Empty: etcd from PATH (Debian: etcd-server).
	Etcd string
	// Detach lets the processes outlive this process (the command line).
	// Otherwise they are killed when it dies, so a crashed test leaves
	// nothing running.
	Detach bool
	// CRDs are files of CustomResourceDefinitions to install. Nil:
	// DefaultCRDs (the Gateway API standard channel and Skein's
	// AuthorizationPolicy CRD).
	CRDs []string
	// Timeout bounds starting and installing the CRDs (not building the
	// API server). Zero: 2 minutes.
	Timeout time.Duration
	// Logf, if set, receives progress messages.
	Logf func(format string, args ...any)
}

// state is what Open needs to find a running cluster: cluster.json in Dir.
type state struct {
	Dir            string `json:"dir"`
	KubeAPIServer  string `json:"kubeAPIServer"`
	Etcd           string `json:"etcd"`
	APIServerPort  int    `json:"apiServerPort"`
	EtcdClientPort int    `json:"etcdClientPort"`
	EtcdPeerPort   int    `json:"etcdPeerPort"`
	AdminToken     string `json:"adminToken"`
	Detach         bool   `json:"detach"`
}

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	st   state
	pki  *pki
	logf func(string, ...any)
	// procs are the processes this process started, by name.
	procs map[string]*exec.Cmd
	waits map[string]chan struct{}
}

const (
	stateFile = "cluster.json"
	etcdName  = "etcd"
	apiName   = "kube-apiserver"
	// AdminKubeconfig is the admin's kubeconfig in the cluster directory.
	AdminKubeconfig = "admin.kubeconfig"
)

// Up starts etcd and kube-apiserver, waits until the API server is ready,
// writes the admin kubeconfig and installs the CRDs. On error it stops what
// it started and removes the directory.
func Up(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.KubeAPIServer == "" {
		opts.Logf("k8s: finding kube-apiserver %s (a first build takes minutes)", KubeVersion)
		if opts.KubeAPIServer, err = EnsureTool(ctx, ToolKubeAPIServer); err != nil {
			return nil, err
		}
	}
	if opts.Etcd == "" {
		if opts.Etcd, err = exec.LookPath("etcd"); err != nil {
			return nil, fmt.Errorf("find etcd (apt-get install etcd-server): %w", err)
		}
	}
	crds := opts.CRDs
	if crds == nil {
		if crds, err = DefaultCRDs(ctx); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "skein-k8s-"); err != nil {
			return nil, err
		}
	} else {
		if entries, _ := os.ReadDir(dir); len(entries) > 0 {
			return nil, fmt.Errorf("cluster dir %s is not empty: run down first, or pick another", dir)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	c := &Cluster{logf: opts.Logf, procs: map[string]*exec.Cmd{}, waits: map[string]chan struct{}{}}
	c.st = state{Dir: dir, KubeAPIServer: opts.KubeAPIServer, Etcd: opts.Etcd, Detach: opts.Detach}
	// The state file marks the directory as the cluster's: Down removes it.
	if err := c.save(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.Down())
		}
	}()
	if c.pki, err = newPKI(dir); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	c.st.APIServerPort, c.st.EtcdClientPort, c.st.EtcdPeerPort = ports[0], ports[1], ports[2]
	tok := make([]byte, 24)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	c.st.AdminToken = hex.EncodeToString(tok)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"),
		[]byte(fmt.Sprintf("%s,skein-admin,skein-admin,\"system:masters\"\n", c.st.AdminToken)), 0o600); err != nil {
		return nil, err
	}
	if err := c.save(); err != nil {
		return nil, err
	}
	if err := c.startEtcd(ctx); err != nil {
		return nil, err
	}
	if err := c.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	if err := c.WriteKubeconfig(c.Kubeconfig(), "skein-admin", c.st.AdminToken); err != nil {
		return nil, err
	}
	if len(crds) > 0 {
		c.logf("k8s: installing %d CRD files", len(crds))
		if err := c.InstallCRDs(ctx, crds...); err != nil {
			return nil, err
		}
	}
	c.logf("k8s: cluster ready at %s (kubeconfig %s)", c.Server(), c.Kubeconfig())
	return c, nil
}

// Open returns the cluster whose state is in dir, to stop it or read its
// kubeconfig from another process.
func Open(dir string) (*Cluster, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("open cluster: %w", err)
	}
	c := &Cluster{logf: func(string, ...any) {}, procs: map[string]*exec.Cmd{}, waits: map[string]chan struct{}{}}
	if err := json.Unmarshal(data, &c.st); err != nil {
		return nil, fmt.Errorf("open cluster: %s: %w", stateFile, err)
	}
	c.pki = &pki{CACert: filepath.Join(dir, "ca.crt")}
	return c, nil
}

func (c *Cluster) save() error {
	data, err := json.MarshalIndent(c.st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.st.Dir, stateFile), data, 0o600)
}

// Dir returns the cluster's state directory.
func (c *Cluster) Dir() string { return c.st.Dir }

// Server returns the API server's URL.
func (c *Cluster) Server() string { return fmt.Sprintf("https://127.0.0.1:%d", c.st.APIServerPort) }

// Port returns the API server's port on 127.0.0.1.
func (c *Cluster) Port() int { return c.st.APIServerPort }

// Kubeconfig returns the path of the admin's kubeconfig.
func (c *Cluster) Kubeconfig() string { return filepath.Join(c.st.Dir, AdminKubeconfig) }

// CACertFile returns the path of the CA certificate the API server's
// serving certificate chains to.
func (c *Cluster) CACertFile() string { return c.pki.CACert }

// RESTConfig returns an admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            c.Server(),
		BearerToken:     c.st.AdminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: c.pki.CACert},
		QPS:             100,
		Burst:           200,
		Timeout:         30 * time.Second,
	}
}

// Client returns an admin clientset.
func (c *Cluster) Client() (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(c.RESTConfig())
}

// WriteKubeconfig writes a kubeconfig for a bearer token to path.
func (c *Cluster) WriteKubeconfig(path, user, token string) error {
	ca, err := os.ReadFile(c.pki.CACert)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["skein-test"] = &clientcmdapi.Cluster{Server: c.Server(), CertificateAuthorityData: ca}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[user+"@skein-test"] = &clientcmdapi.Context{Cluster: "skein-test", AuthInfo: user}
	cfg.CurrentContext = user + "@skein-test"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

// ServiceAccountToken returns a bound token of a ServiceAccount (the
// TokenRequest API, as the kubelet gets a pod's projected token).
func (c *Cluster) ServiceAccountToken(ctx context.Context, namespace, name string, ttl time.Duration) (string, error) {
	cs, err := c.Client()
	if err != nil {
		return "", err
	}
	secs := int64(ttl / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("request token of service account %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

func freePorts(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func (c *Cluster) startEtcd(ctx context.Context) error {
	client := fmt.Sprintf("http://127.0.0.1:%d", c.st.EtcdClientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.st.EtcdPeerPort)
	args := []string{
		"--name", "default",
		"--data-dir", filepath.Join(c.st.Dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default=" + peer,
		"--logger", "zap", "--log-level", "warn",
	}
	if err := c.start(etcdName, c.st.Etcd, args); err != nil {
		return err
	}
	c.logf("k8s: etcd on %s", client)
	return c.waitHTTP(ctx, etcdName, client+"/health", "", nil, func(body string) bool { return strings.Contains(body, `"health":"true"`) })
}

// StartAPIServer starts kube-apiserver (again, after StopAPIServer: same
// port, same etcd) and waits until /readyz answers ok.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	d := c.st.Dir
	args := []string{
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", c.st.EtcdClientPort),
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		// The endpoints of the kubernetes Service may not be loopback, and
		// nothing in the lab reaches the API server through it.
		"--endpoint-reconciler-type", "none",
		"--secure-port", strconv.Itoa(c.st.APIServerPort),
		"--tls-cert-file", filepath.Join(d, "apiserver.crt"),
		"--tls-private-key-file", filepath.Join(d, "apiserver.key"),
		"--client-ca-file", filepath.Join(d, "ca.crt"),
		"--token-auth-file", filepath.Join(d, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", filepath.Join(d, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(d, "sa.key"),
		"--service-cluster-ip-range", ServiceCIDR,
		"--allow-privileged",
		"--profiling=false",
		"--cert-dir", filepath.Join(d, "certs"),
		// Debian's etcd 3.4.23 predates the progress notifications the
		// watch cache needs for consistent reads (3.4.31): with the cache,
		// watches from "now" time out with "Too large resource version".
		// Served from etcd, every list and watch is consistent.
		"--watch-cache=false",
		"--v", "1",
	}
	if err := c.start(apiName, c.st.KubeAPIServer, args); err != nil {
		return err
	}
	c.logf("k8s: kube-apiserver on %s", c.Server())
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(d, "ca.crt"))
	if err != nil {
		return err
	}
	pool.AppendCertsFromPEM(ca)
	return c.waitHTTP(ctx, apiName, c.Server()+"/readyz", c.st.AdminToken, pool, func(body string) bool { return strings.TrimSpace(body) == "ok" })
}

// StopAPIServer stops kube-apiserver: SIGTERM, then SIGKILL if it has not
// exited after grace (its graceful shutdown waits for open watches, so a
// short grace also plays a crash); etcd keeps the data. Zero grace: 10s.
func (c *Cluster) StopAPIServer(grace time.Duration) error { return c.stop(apiName, grace) }

// start runs a process with its output in <dir>/<name>.log and its pid in
// <dir>/<name>.pid.
func (c *Cluster) start(name, bin string, args []string) error {
	logf, err := os.OpenFile(filepath.Join(c.st.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "[skein-k8s] %s start: %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if !c.st.Detach {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	c.procs[name], c.waits[name] = cmd, done
	return os.WriteFile(filepath.Join(c.st.Dir, name+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
}

// pid returns the pid of a cluster process from its pid file, if that
// process still runs the expected binary (a reused pid is never signalled).
func (c *Cluster) pid(name string) int {
	data, err := os.ReadFile(filepath.Join(c.st.Dir, name+".pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0
	}
	bin := map[string]string{etcdName: c.st.Etcd, apiName: c.st.KubeAPIServer}[name]
	if filepath.Base(strings.TrimSuffix(exe, " (deleted)")) != filepath.Base(bin) {
		return 0
	}
	return pid
}

func (c *Cluster) stop(name string, grace time.Duration) error {
	if grace == 0 {
		grace = 10 * time.Second
	}
	pid := c.pid(name)
	if pid == 0 {
		return nil
	}
	exited := func() bool {
		if done, ok := c.waits[name]; ok {
			select {
			case <-done:
				return true
			default:
				return false
			}
		}
		return syscall.Kill(pid, 0) != nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if exited() {
			break
		}
	}
	if !exited() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !exited(); time.Sleep(50 * time.Millisecond) {
		}
		if !exited() {
			return fmt.Errorf("stop %s (pid %d): still running after SIGKILL", name, pid)
		}
	}
	delete(c.procs, name)
	delete(c.waits, name)
	_ = os.Remove(filepath.Join(c.st.Dir, name+".pid"))
	return nil
}

// Down stops kube-apiserver and etcd and removes the cluster directory.
// It is idempotent and works on a cluster from Open.
func (c *Cluster) Down() error {
	var errs []error
	for _, name := range []string{apiName, etcdName} {
		if err := c.stop(name, 0); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := os.Stat(filepath.Join(c.st.Dir, stateFile)); err == nil {
		if err := os.RemoveAll(c.st.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove cluster dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Log returns the tail of a cluster process's log ("etcd" or
// "kube-apiserver").
func (c *Cluster) Log(name string, lines int) string {
	data, _ := os.ReadFile(filepath.Join(c.st.Dir, name+".log"))
	return tail(string(data), lines)
}

// waitHTTP polls url until ok accepts the body, the process exits, or ctx
// ends.
func (c *Cluster) waitHTTP(ctx context.Context, name, url, token string, roots *x509.CertPool, ok func(string) bool) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer hc.CloseIdleConnections()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && ok(string(body)) {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, tail(string(body), 5))
		} else {
			last = err.Error()
		}
		if done, ok := c.waits[name]; ok {
			select {
			case <-done:
				return fmt.Errorf("%s exited while starting:\n%s", name, c.Log(name, 30))
			default:
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to be ready (last: %s): %w\n%s", name, last, ctx.Err(), c.Log(name, 30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// InstallCRDs applies CRD files and waits until every CRD is established.
func (c *Cluster) InstallCRDs(ctx context.Context, files ...string) error {
	var objs []*unstructured.Unstructured
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read CRDs: %w", err)
		}
		o, err := Decode(data)
		if err != nil {
			return fmt.Errorf("read CRDs from %s: %w", f, err)
		}
		objs = append(objs, o...)
	}
	rc := c.RESTConfig()
	if _, err := ApplyObjects(ctx, rc, objs, ApplyOptions{}); err != nil {
		return fmt.Errorf("install CRDs: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		for {
			crd, err := dyn.Resource(crdGVR).Get(ctx, o.GetName(), metav1.GetOptions{})
			if err == nil && established(crd) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait for CRD %s to be established: %w", o.GetName(), ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
