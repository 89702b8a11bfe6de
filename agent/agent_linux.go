//go:build linux

package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/skeinmesh/skein/agent/admin"
	"github.com/skeinmesh/skein/agent/authz"
	"github.com/skeinmesh/skein/agent/ca"
	"github.com/skeinmesh/skein/agent/cgroup"
	"github.com/skeinmesh/skein/agent/handoff"
	"github.com/skeinmesh/skein/agent/identity"
	"github.com/skeinmesh/skein/agent/kernel"
	"github.com/skeinmesh/skein/agent/kube"
	"github.com/skeinmesh/skein/agent/model"
	"github.com/skeinmesh/skein/agent/source"
	"github.com/skeinmesh/skein/bpf/capture"
	"github.com/skeinmesh/skein/bpf/trace"
	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/l7proxy"
	"github.com/skeinmesh/skein/l7proxy/tunnel"
	"github.com/skeinmesh/skein/telemetry"
	"github.com/skeinmesh/skein/telemetry/accesslog"
	"github.com/skeinmesh/skein/telemetry/tracing"
)

// Source delivers the cluster's objects: YAML files or the API server.
type Source interface {
	Run(ctx context.Context, update func(source.Update)) error
}

// Agent is the node agent.
type Agent struct {
	cfg   Config
	log   *zap.Logger
	start time.Time

	features   []kernel.Feature
	cgroupRoot string
	pinPath    string

	datapath *capture.Datapath
	proxy    *l7proxy.Proxy
	source   Source
	registry *prometheus.Registry
	requests *telemetry.RequestMetrics
	tracing  *tracing.Tracing
	// accessLog is nil until Run opens it.
	accessLog *accesslog.Logger
	// traceMaps and traces are the kernel event stream (agentctl trace).
	traceMaps *trace.Maps
	traces    *traceHub
	// flow is the kernel flow telemetry; set by Run, its flows nil when
	// the kernel refused them.
	flow     *flowTelemetry
	failures failureLog
	certs    *identity.Manager // nil without a CA
	tunnel   *tunnel.Client    // nil without a CA
	authz    atomic.Pointer[authz.Engine]

	applyMu sync.Mutex // serializes apply
	state   atomic.Pointer[derived]
	cfgMu   sync.Mutex
	cfgStat admin.ConfigStatus
	// updatesApplied and updatesRejected count configuration updates
	// (under cfgMu).
	updatesApplied, updatesRejected uint64
	updates                         chan source.Update
	ready                           atomic.Bool
}

// New validates cfg and prepares an agent; Run starts it.
func New(cfg Config, log *zap.Logger) (*Agent, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	var src Source
	var srcName string
	if cfg.Kubeconfig != "" || cfg.InCluster {
		ks, err := kube.New(kube.Config{Kubeconfig: cfg.Kubeconfig, InCluster: cfg.InCluster,
			UserAgent: "skein-agent/" + cfg.Version + " (" + cfg.NodeName + ")"}, log)
		if err != nil {
			return nil, err
		}
		src, srcName = ks, "kubernetes API"
		if cfg.Kubeconfig != "" {
			srcName += " (kubeconfig " + cfg.Kubeconfig + ")"
		}
	} else {
		fs, err := source.NewFiles(source.FilesConfig{Paths: cfg.ConfigPaths}, log)
		if err != nil {
			return nil, err
		}
		src, srcName = fs, fmt.Sprintf("files %v", cfg.ConfigPaths)
	}
	a := &Agent{
		cfg:      cfg,
		log:      log,
		start:    time.Now(),
		source:   src,
		registry: prometheus.NewRegistry(),
		updates:  make(chan source.Update, 1),
		pinPath:  filepath.Join(cfg.PinRoot, cfg.NodeName, "capture"),
	}
	a.cfgStat.Source = srcName
	a.state.Store(build(model.NewSnapshot(), buildInput{node: cfg.NodeName, trustDomain: cfg.TrustDomain}))
	return a, nil
}

// Cleanup removes everything an agent of this configuration pinned, which
// detaches its programs: `skein-agent --cleanup`.
func Cleanup(cfg Config) error {
	cfg.setDefaults()
	if cfg.NodeName == "" {
		return errors.New("cleanup: node name is required (--node)")
	}
	return capture.Cleanup(filepath.Join(cfg.PinRoot, cfg.NodeName))
}

// Run starts everything and blocks until ctx ends, then shuts down: the
// listener closes first (so capture fails open or closed at once), in-flight
// connections drain within DrainTimeout, and pinned capture state stays for
// the next agent.
func (a *Agent) Run(ctx context.Context) (err error) {
	mounts, err := kernel.EnsureMounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if m.Mounted {
			a.log.Info("mounted filesystem", zap.String("path", m.Path), zap.String("type", m.FSType))
		}
	}
	a.features = kernel.Probe()
	for _, f := range a.features {
		if !f.Available {
			lvl := zap.InfoLevel
			if f.Required {
				lvl = zap.ErrorLevel
			}
			a.log.Log(lvl, "kernel feature unavailable", zap.String("feature", f.Name), zap.Bool("required", f.Required), zap.String("detail", f.Detail))
		}
	}
	if missing := kernel.Missing(a.features); len(missing) > 0 {
		var names []string
		for _, f := range missing {
			names = append(names, f.Name)
		}
		return fmt.Errorf("kernel lacks required features %v: Skein needs Linux 5.10 or newer with cgroup v2 and BPF enabled", names)
	}

	if a.cgroupRoot = a.cfg.CgroupRoot; a.cgroupRoot == "" {
		mount, err := cgroup.Mount2()
		if err != nil {
			return err
		}
		if a.cgroupRoot, err = cgroup.DefaultPodRoot(mount); err != nil {
			return err
		}
	}

	a.traceMaps, err = trace.NewMaps()
	if err != nil {
		return err
	}
	defer a.traceMaps.Close()
	a.traces = newTraceHub(a, a.traceMaps)
	a.datapath, err = capture.New(capture.Config{CgroupPath: a.cgroupRoot, PinPath: a.pinPath,
		Events: a.traceMaps.Events(), TraceConfig: a.traceMaps.Config(), TraceLost: a.traceMaps.Lost()})
	if err != nil {
		return fmt.Errorf("start capture: %w", err)
	}
	defer func() { err = errors.Join(err, a.datapath.Close()) }()
	if err := a.datapath.Configure(capture.Settings{
		Proxy4: a.cfg.ProxyAddr4, Proxy6: a.cfg.ProxyAddr6, ProxyPort: a.cfg.OutboundPort, FailClosed: a.cfg.FailClosed,
	}); err != nil {
		return err
	}
	a.startFlows()
	defer func() {
		if cerr := a.closeFlows(); cerr != nil {
			a.log.Warn("close flow telemetry", zap.Error(cerr))
		}
	}()

	// Listeners come from a running agent when there is one (a restart
	// or an upgrade: no connect is refused meanwhile), else fresh.
	ls, taken, err := a.openListeners(ctx)
	if err != nil {
		return err
	}
	closeListeners := func() {
		for _, l := range ls {
			l.Close()
		}
	}
	ln := ls[listenerOutbound]
	if err := a.register(ln); err != nil {
		closeListeners()
		return err
	}
	if a.cfg.CAAddress != "" {
		if err := a.setupIdentity(); err != nil {
			closeListeners()
			return err
		}
	}
	a.tracing, err = tracing.New(ctx, tracing.Config{
		Endpoint: a.cfg.TracingEndpoint, Protocol: a.cfg.TracingProtocol, SampleRate: a.cfg.TracingSampleRate, Node: a.cfg.NodeName,
	}, a.log)
	if err != nil {
		closeListeners()
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = a.tracing.Shutdown(sctx)
	}()
	if err := a.openAccessLog(ctx); err != nil {
		closeListeners()
		return err
	}
	defer a.closeAccessLog()
	a.proxy, err = l7proxy.New(l7proxy.Config{
		Tracing:         l7proxy.Tracing{Tracer: a.tracing.Tracer, Propagator: a.tracing.Propagator},
		ConnectTimeout:  a.cfg.ConnectTimeout,
		HTTP:            a.cfg.proxyHTTP(),
		Limits:          a.cfg.proxyLimits(),
		Tunnel:          a.tunnel,
		TunnelPort:      a.cfg.TunnelPort,
		Authorizer:      a,
		RequestRecorder: a,
		Recorder:        a,
		Events:          a.traces,
	}, a, a.log)
	if err != nil {
		closeListeners()
		return err
	}
	a.proxy.Update(a.state.Load().table)

	a.registerMetrics()
	metrics, err := telemetry.NewServer(telemetry.ServerConfig{Listener: ls[listenerMetrics], Gatherer: a.registry, Ready: a.readyErr}, a.log)
	if err != nil {
		closeListeners()
		return err
	}
	adminSrv, err := admin.NewServer(a.cfg.AdminSocket, a, a.log)
	if err != nil {
		closeListeners()
		return err
	}
	adminSrv.HandleRaw("GET "+admin.APIVersion+"/trace", a.traces.serveTrace)
	a.registerDebug(adminSrv)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	spawn := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	spawn("config source", func(ctx context.Context) error {
		return a.source.Run(ctx, func(u source.Update) {
			select { // keep only the newest update
			case <-a.updates:
			default:
			}
			a.updates <- u
		})
	})
	spawn("reconciler", a.reconcile)
	spawn("flow pruner", a.runFlowPruner)
	spawn("metrics server", metrics.Run)
	if a.cfg.PprofAddr != "" {
		spawn("pprof server", func(ctx context.Context) error { return servePprof(ctx, a.cfg.PprofAddr) })
	}
	spawn("admin server", adminSrv.Run)
	if a.certs != nil {
		spawn("certificate manager", a.certs.Run)
	}

	// Serve only once the configuration is applied and the local
	// workloads hold certificates: a successor that accepted before would
	// answer the first requests without routes or identities, while the
	// agent it replaces still serves them well. Until then the kernel
	// queues new connections on the listener (or the previous agent,
	// which shares it, accepts them).
	a.waitServable(runCtx, servableTimeout)
	if a.certs != nil {
		spawn("tunnel server", func(ctx context.Context) error {
			err := a.proxy.ServeTunnel(ls[listenerTunnel], certSource{a.certs}, a.localIdentity)
			if errors.Is(err, l7proxy.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		})
	}

	proxyDone := make(chan error, 1)
	go func() { proxyDone <- a.proxy.Serve(ln) }()
	a.log.Info("agent started",
		zap.String("node", a.cfg.NodeName), zap.String("cgroup_root", a.cgroupRoot),
		zap.Stringer("outbound", ln.Addr()), zap.String("pins", a.pinPath),
		zap.Bool("fail_closed", a.cfg.FailClosed), zap.Bool("listeners_from_previous_agent", taken != nil))

	// Now that this agent accepts, the previous one may stop; then this
	// one offers its listeners to the next.
	if taken != nil {
		if err := taken.Ack(); err != nil {
			a.log.Warn("acknowledge the listener handoff", zap.Error(err))
		}
	}
	handedOff := make(chan struct{})
	if offer, oerr := handoff.NewOffer(a.handoffPath(), ls, taken != nil); oerr != nil {
		a.log.Warn("cannot offer listeners to a successor: its start will not be hitless", zap.Error(oerr))
	} else {
		defer offer.Close()
		go func() {
			if offer.Wait(runCtx) == nil {
				close(handedOff)
			}
		}()
	}

	drain := a.proxy.Shutdown
	select {
	case <-ctx.Done():
	case <-handedOff:
		a.log.Info("a new agent took the listeners; draining what this one serves")
		drain = a.proxy.Drain
	case err = <-errc:
		a.log.Error("agent component failed; shutting down", zap.Error(err))
	case perr := <-proxyDone:
		err = fmt.Errorf("proxy stopped: %w", perr)
	}

	a.ready.Store(false)
	a.log.Info("shutting down: draining connections", zap.Duration("timeout", a.cfg.DrainTimeout))
	dctx, dcancel := context.WithTimeout(context.Background(), a.cfg.DrainTimeout)
	if derr := drain(dctx); derr != nil {
		a.log.Warn("drain incomplete", zap.Error(derr))
	}
	dcancel()
	cancel()
	wg.Wait()
	a.log.Info("agent stopped")
	return err
}

// servableTimeout bounds how long a starting agent waits for its first
// configuration and certificates before it serves anyway.
const servableTimeout = 30 * time.Second

// waitServable waits until the first configuration is applied and every
// wanted workload certificate is held, at most timeout.
func (a *Agent) waitServable(ctx context.Context, timeout time.Duration) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		why := a.servableErr()
		if why == nil {
			a.log.Debug("ready to serve", zap.Duration("after", time.Since(start)))
			return
		}
		select {
		case <-ctx.Done():
			a.log.Warn("serving before the agent is ready", zap.Duration("waited", time.Since(start)), zap.Error(why))
			return
		case <-tick.C:
		}
	}
}

// servableErr says why the agent should not serve yet, or nil.
func (a *Agent) servableErr() error {
	if !a.ready.Load() {
		return errors.New("configuration not applied yet")
	}
	if a.certs == nil {
		return nil
	}
	var pending []string
	for _, c := range a.certs.Status() {
		if c.NotAfter.IsZero() {
			pending = append(pending, c.Identity)
		}
	}
	if len(pending) > 0 {
		return fmt.Errorf("certificates pending for %v", pending)
	}
	return nil
}

// Names of the listeners handed from agent to agent.
const (
	listenerOutbound = "outbound"
	listenerTunnel   = "tunnel"
	listenerMetrics  = "metrics"
)

// handoffPath is where the agent offers its listeners to a successor.
func (a *Agent) handoffPath() string {
	return filepath.Join(filepath.Dir(a.cfg.AdminSocket), "handoff.sock")
}

// openListeners takes the listeners of a running agent, if one answers,
// and opens the ones it did not have.
func (a *Agent) openListeners(ctx context.Context) (map[string]net.Listener, *handoff.Taken, error) {
	want := map[string]string{
		listenerOutbound: fmt.Sprintf(":%d", a.cfg.OutboundPort),
		listenerMetrics:  a.cfg.MetricsAddr,
	}
	if a.cfg.CAAddress != "" {
		want[listenerTunnel] = fmt.Sprintf(":%d", a.cfg.TunnelPort)
	}
	ls := map[string]net.Listener{}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	taken, err := handoff.Take(tctx, a.handoffPath())
	cancel()
	switch {
	case err == nil:
		a.log.Info("took the listeners of the running agent", zap.Int("pid", taken.PID))
		for name, l := range taken.Listeners {
			if _, ok := want[name]; ok {
				ls[name] = l
			} else {
				l.Close()
			}
		}
	case errors.Is(err, handoff.ErrNoPeer):
		taken = nil
	default:
		a.log.Warn("could not take over from the running agent; listening afresh", zap.Error(err))
		taken = nil
	}
	for name, addr := range want {
		if ls[name] != nil {
			continue
		}
		l, err := listenTCP(ctx, addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			if taken != nil {
				taken.Abort()
			}
			return nil, nil, fmt.Errorf("listen for %s on %s: %w", name, addr, err)
		}
		ls[name] = l
	}
	return ls, taken, nil
}

// listenTCP listens without MPTCP (a SOCKMAP refuses MPTCP sockets, Go's
// default for listeners) and with SO_REUSEADDR.
func listenTCP(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			})
			return errors.Join(err, serr)
		},
	}
	lc.SetMultipathTCP(false)
	return lc.Listen(ctx, "tcp", addr)
}

// register makes the outbound listener the capture liveness entry.
func (a *Agent) register(ln net.Listener) error {
	raw, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = a.datapath.SetListener(fd) }); err != nil || serr != nil {
		return errors.Join(err, serr)
	}
	return nil
}

// reconcile applies source updates and re-scans pod cgroups periodically,
// since a pod's cgroup may appear after the pod object (the kubelet creates
// it when it starts the pod).
func (a *Agent) reconcile(ctx context.Context) error {
	var last source.Update
	have := false
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case u := <-a.updates:
			last, have = u, true
			a.apply(last, true)
		case <-tick.C:
			if have {
				a.apply(last, false)
			}
		}
	}
}

// apply merges an update into the model and pushes the result to the BPF
// maps and the proxy. fresh says whether the update is new (a periodic
// re-scan reuses the last one and only bumps the generation on change).
func (a *Agent) apply(u source.Update, fresh bool) {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("applying configuration panicked; keeping the last good state", zap.Any("panic", r), zap.Stack("stack"))
		}
	}()
	prev := a.state.Load()
	cgroups, err := cgroup.ScanPods(a.cgroupRoot)
	if err != nil {
		a.log.Warn("scan pod cgroups", zap.Error(err))
	}
	snap := prev.snap
	var errs []string
	if fresh {
		var objErrs []*model.ObjectError
		snap, objErrs = model.Merge(prev.snap, u.Objects)
		snap.Generation = prev.snap.Generation + 1
		for _, e := range u.Errors {
			errs = append(errs, e.Error())
		}
		for _, e := range objErrs {
			errs = append(errs, e.Error())
		}
		for _, e := range errs {
			a.log.Warn("rejected configuration; its last good version keeps serving", zap.String("error", e))
		}
	}
	next := build(snap, buildInput{node: a.cfg.NodeName, trustDomain: a.cfg.TrustDomain, cgroups: cgroups,
		mode: a.cfg.Mode, trusted: a.trustedSources()})
	if !fresh && sameMembers(prev, next) {
		return
	}
	if err := a.datapath.Sync(next.capture); err != nil {
		a.log.Error("update capture maps", zap.Error(err))
		errs = append(errs, "update capture maps: "+err.Error())
	}
	a.authz.Store(authz.New(snap.AuthorizationPolicies, a.cfg.RootNamespace))
	if a.certs != nil {
		a.certs.SetIdentities(next.identities)
	}
	a.proxy.Update(next.table)
	a.state.Store(next)
	a.cfgMu.Lock()
	a.cfgStat.Generation = snap.Generation
	a.cfgStat.LastApplied = time.Now()
	a.cfgStat.Objects = snap.Counts()
	if fresh {
		a.cfgStat.GenerationApplied = a.cfgStat.LastApplied
		a.cfgStat.Errors = errs
		a.updatesApplied++
		if len(errs) > 0 {
			a.updatesRejected++
		}
	}
	a.cfgMu.Unlock()
	a.ready.Store(true)
	a.log.Info("configuration applied",
		zap.Int64("generation", snap.Generation),
		zap.Int("services", len(next.table.Services)),
		zap.Int("local_pods", len(next.local)),
		zap.Int("meshed_cgroups", len(next.capture.Members)),
		zap.Int("rejected", len(errs)))
}

func sameMembers(a, b *derived) bool {
	if len(a.byCgroup) != len(b.byCgroup) || len(a.capture.Members) != len(b.capture.Members) {
		return false
	}
	for id := range b.byCgroup {
		if _, ok := a.byCgroup[id]; !ok {
			return false
		}
	}
	return true
}

func (a *Agent) readyErr() error {
	if !a.ready.Load() {
		return errors.New("configuration not applied yet")
	}
	if _, ok := a.datapath.ListenerCookie(); !ok {
		return errors.New("outbound listener not registered")
	}
	return nil
}

// trustedSources are the addresses the proxy connects to local pods from.
func (a *Agent) trustedSources() []netip.Addr {
	var out []netip.Addr
	for _, ip := range []netip.Addr{a.cfg.ProxyAddr4, a.cfg.ProxyAddr6, a.cfg.NodeIP} {
		if ip.IsValid() {
			out = append(out, ip)
		}
	}
	return out
}

// setupIdentity prepares workload certificates from the CA and the tunnel
// client.
func (a *Agent) setupIdentity() error {
	client, err := ca.NewClient(ca.ClientConfig{
		Address: a.cfg.CAAddress, ServerName: a.cfg.CAServerName,
		RootsFile: a.cfg.CARootsFile, TokenFile: a.cfg.CATokenFile, TTL: a.cfg.CertTTL,
	})
	if err != nil {
		return err
	}
	if a.certs, err = identity.NewManager(identity.ManagerConfig{Signer: client}, a.log); err != nil {
		return err
	}
	a.tunnel = tunnel.NewClient(certSource{a.certs}, a.cfg.ConnectTimeout)
	return nil
}

// certSource adapts the certificate manager to what the tunnel needs.
type certSource struct{ m *identity.Manager }

var _ tunnel.Certs = certSource{}

func (c certSource) Certificate(ctx context.Context, id spiffe.ID) (*tls.Certificate, error) {
	return c.m.WaitCertificate(ctx, id)
}

func (c certSource) Roots() *x509.CertPool { return c.m.Roots() }

// localIdentity maps a tunnel server name to a local workload identity.
func (a *Agent) localIdentity(sni string) (spiffe.ID, bool) {
	id, ok := a.state.Load().bySNI[sni]
	return id, ok
}

// Authorize implements l7proxy.Authorizer with the current policies.
func (a *Agent) Authorize(r *l7proxy.AuthzRequest) l7proxy.Decision {
	e := a.authz.Load()
	if e == nil {
		return l7proxy.Decision{Allow: true}
	}
	return e.Authorize(r)
}

var _ l7proxy.Authorizer = (*Agent)(nil)

// Resolve implements l7proxy.OrigDstResolver with one lookup in the capture
// programs' map.
func (a *Agent) Resolve(remote, local netip.AddrPort) (l7proxy.Origin, error) {
	o, err := a.datapath.Lookup(remote, local)
	if errors.Is(err, capture.ErrNotFound) {
		return l7proxy.Origin{}, l7proxy.ErrNotCaptured
	}
	if err != nil {
		return l7proxy.Origin{}, err
	}
	return l7proxy.Origin{Dst: o.Dst, Source: a.state.Load().byCgroup[o.CgroupID]}, nil
}

var _ l7proxy.OrigDstResolver = (*Agent)(nil)
