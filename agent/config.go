package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/skeinmesh/skein/l7proxy"
	"github.com/skeinmesh/skein/telemetry/accesslog"
)

// Config is the agent's configuration. cmd/skein-agent maps flags onto it.
type Config struct {
	// NodeName is the Kubernetes node this agent serves. Required.
	NodeName string
	// ConfigPaths are YAML files or directories of Kubernetes objects
	// (standalone mode). Exactly one of ConfigPaths, Kubeconfig and
	// InCluster is required.
	ConfigPaths []string
	// Kubeconfig is the path of a kubeconfig: the agent reads the objects
	// from the API server with informers (package kube).
	Kubeconfig string
	// InCluster reads the objects from the API server with the pod's
	// service account, as the DaemonSet does.
	InCluster bool
	// CgroupRoot is the cgroup v2 directory holding the node's pod cgroups.
	// Empty: kubepods.slice or kubepods under the cgroup2 mount.
	CgroupRoot string
	// ProxyAddr4 and ProxyAddr6 are the addresses at which pods reach the
	// node proxy. At least one is required; ProxyAddr4 defaults to NodeIP.
	ProxyAddr4, ProxyAddr6 netip.Addr
	// NodeIP is the node's address on the node network (tunnel peers use
	// it).
	NodeIP netip.Addr
	// OutboundPort is the capture listener's port. Zero: 15001.
	OutboundPort uint16
	// MetricsAddr is where /metrics, /healthz and /readyz are served.
	// Empty: ":15020".
	MetricsAddr string
	// AdminSocket is the admin API's unix socket. Empty: /run/skein/admin.sock.
	AdminSocket string
	// PinRoot is the bpffs directory under which the agent pins, one
	// directory per node. Empty: /sys/fs/bpf/skein.
	PinRoot string
	// FailClosed refuses captured connects while no proxy listens instead
	// of letting them through to their original destination.
	FailClosed bool
	// TrustDomain of workload identities. Empty: cluster.local.
	TrustDomain string
	// DrainTimeout bounds how long connections in flight may finish on
	// shutdown. Zero: 10s.
	DrainTimeout time.Duration
	// ConnectTimeout bounds dialing an endpoint. Zero: 5s.
	ConnectTimeout time.Duration
	// Version and Commit identify the build.
	Version, Commit string

	// CAAddress is the skein-ca to get workload certificates from, host:port.
	// Empty: no certificates, so no mTLS tunnel: traffic to other nodes goes
	// direct, in plaintext.
	CAAddress string
	// CAServerName is the name to verify in the CA's certificate; empty:
	// the host of CAAddress.
	CAServerName string
	// CARootsFile holds the CA's roots (PEM), to verify the CA.
	CARootsFile string
	// CATokenFile holds the agent's bearer token for the CA (a projected
	// ServiceAccount token in Kubernetes, a bootstrap token in the lab).
	CATokenFile string
	// CertTTL is the workload certificate lifetime asked for. Zero: 24h.
	CertTTL time.Duration
	// TunnelPort is the mTLS tunnel's port. Zero: 15008.
	TunnelPort uint16
	// RootNamespace holds mesh-wide AuthorizationPolicies. Empty: skein-system.
	RootNamespace string
	// TracingEndpoint is the OTLP collector for spans, host:port. Empty:
	// trace context is propagated, no span is recorded.
	TracingEndpoint string
	// TracingProtocol is grpc (default) or http.
	TracingProtocol string
	// TracingSampleRate is the share of new traces recorded (0..1); a
	// request arriving with a trace keeps its parent's decision.
	TracingSampleRate float64
	// AccessLogDir is the node-local access-log store; the agent keeps its
	// segments in <dir>/<node>/. Empty: no store (cmd/skein-agent's
	// default is /var/lib/skein/accesslog).
	AccessLogDir string
	// AccessLogMaxBytes caps the store's size. Zero: 100 MiB.
	AccessLogMaxBytes int64
	// AccessLogMaxAge caps the age of what the store keeps. Zero: 72h.
	AccessLogMaxAge time.Duration
	// AccessLogStatusClasses are HTTP status classes always logged, such
	// as 4xx; failures (5xx, or any response flag) always are. Empty: none.
	AccessLogStatusClasses []string
	// AccessLogSampleRate is the share of the other requests and
	// connections logged, 0 to 1, decided by trace id so all hops agree.
	// Zero: none.
	AccessLogSampleRate float64
	// AccessLogSampledTraces logs every request whose trace is sampled.
	AccessLogSampledTraces bool
	// AccessLogPathRedaction is none, query or route. Empty: query.
	AccessLogPathRedaction string
	// AccessLogOTLPEndpoint, if set, also receives the access log as OTLP
	// logs (gRPC, host:port).
	AccessLogOTLPEndpoint string
	// PprofAddr, if set, serves net/http/pprof there (profiling; keep it
	// on loopback).
	PprofAddr string
	// Mode is the cluster-wide mTLS mode, PERMISSIVE (default) or STRICT;
	// a namespace label skein.io/mtls-mode overrides it. STRICT implies
	// FailClosed.
	Mode string

	// Limits keep one noisy or hostile client from starving the node's
	// other pods. For each, zero takes the proxy's default (in brackets);
	// for the counts, a negative value turns the limit off.
	// MaxHeaderBytes bounds request headers, request line included
	// (431) [64 KiB].
	MaxHeaderBytes int
	// MaxURIBytes bounds a request URI (414) [16 KiB].
	MaxURIBytes int
	// MaxConcurrentStreams per HTTP/2 client connection [1000].
	MaxConcurrentStreams int
	// MaxConnsPerSource bounds the open outbound connections of one
	// source workload [1024].
	MaxConnsPerSource int
	// MaxTunnelConnsPerPeer bounds the open tunnel connections of one
	// peer SPIFFE identity [1024].
	MaxTunnelConnsPerPeer int
	// MaxEarlyResets is how many HTTP/2 streams a connection may reset
	// before they are answered, once they are most of its streams [200].
	MaxEarlyResets int
	// ReadHeaderTimeout bounds reading request headers [10s].
	ReadHeaderTimeout time.Duration
	// BodyReadTimeout bounds the wait for more of a request body [60s].
	BodyReadTimeout time.Duration
	// IdleTimeout closes idle client connections [5m].
	IdleTimeout time.Duration
	// UpstreamIdleTimeout closes pooled upstream connections that stayed
	// idle this long [90s].
	UpstreamIdleTimeout time.Duration
	// TunnelHandshakeTimeout bounds a tunnel TLS handshake [10s].
	TunnelHandshakeTimeout time.Duration
}

func (c *Config) setDefaults() {
	if c.OutboundPort == 0 {
		c.OutboundPort = 15001
	}
	if c.MetricsAddr == "" {
		c.MetricsAddr = ":15020"
	}
	if c.AdminSocket == "" {
		c.AdminSocket = "/run/skein/admin.sock"
	}
	if c.PinRoot == "" {
		c.PinRoot = "/sys/fs/bpf/skein"
	}
	if c.TrustDomain == "" {
		c.TrustDomain = "cluster.local"
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.CertTTL == 0 {
		c.CertTTL = 24 * time.Hour
	}
	if c.TunnelPort == 0 {
		c.TunnelPort = 15008
	}
	if c.RootNamespace == "" {
		c.RootNamespace = "skein-system"
	}
	c.Mode = strings.ToUpper(c.Mode)
	if c.Mode == "" {
		c.Mode = "PERMISSIVE"
	}
	if c.Mode == "STRICT" {
		c.FailClosed = true
	}
	if !c.ProxyAddr4.IsValid() && c.NodeIP.Is4() {
		c.ProxyAddr4 = c.NodeIP
	}
	if !c.ProxyAddr6.IsValid() && c.NodeIP.Is6() {
		c.ProxyAddr6 = c.NodeIP
	}
}

// validate checks the configuration, naming the flag to fix.
func (c *Config) validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("node name is required (--node, or NODE_NAME from the downward API)"))
	}
	switch sources := btoi(len(c.ConfigPaths) > 0) + btoi(c.Kubeconfig != "") + btoi(c.InCluster); {
	case sources == 0:
		errs = append(errs, errors.New("a configuration source is required (--config FILE, --kubeconfig FILE or --in-cluster)"))
	case sources > 1:
		errs = append(errs, errors.New("choose one configuration source: --config, --kubeconfig or --in-cluster"))
	}
	if !c.ProxyAddr4.IsValid() && !c.ProxyAddr6.IsValid() {
		errs = append(errs, errors.New("the address pods reach the proxy at is required (--proxy-address or --node-ip)"))
	}
	if c.ProxyAddr4.IsValid() && !c.ProxyAddr4.Is4() {
		errs = append(errs, fmt.Errorf("proxy IPv4 address %s is not IPv4", c.ProxyAddr4))
	}
	if c.ProxyAddr6.IsValid() && (!c.ProxyAddr6.Is6() || c.ProxyAddr6.Is4In6()) {
		errs = append(errs, fmt.Errorf("proxy IPv6 address %s is not IPv6", c.ProxyAddr6))
	}
	if c.Mode != "PERMISSIVE" && c.Mode != "STRICT" {
		errs = append(errs, fmt.Errorf("--mode %q: want PERMISSIVE or STRICT", c.Mode))
	}
	if c.CAAddress != "" && (c.CARootsFile == "" || c.CATokenFile == "") {
		errs = append(errs, errors.New("with --ca-address, --ca-roots and --ca-token-file are required"))
	}
	if _, err := accesslog.NewFilter(c.accessLogFilter()); err != nil {
		errs = append(errs, fmt.Errorf("--accesslog-status-classes, --accesslog-sample-rate, --accesslog-path-redaction: %w", err))
	}
	if c.AccessLogMaxBytes < 0 || c.AccessLogMaxAge < 0 {
		errs = append(errs, errors.New("--accesslog-max-size and --accesslog-max-age must not be negative"))
	}
	if c.DrainTimeout < 0 || c.ConnectTimeout < 0 || c.CertTTL < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	if c.ReadHeaderTimeout < 0 || c.BodyReadTimeout < 0 || c.IdleTimeout < 0 || c.UpstreamIdleTimeout < 0 || c.TunnelHandshakeTimeout < 0 {
		errs = append(errs, errors.New("--read-header-timeout, --body-read-timeout, --idle-timeout, --upstream-idle-timeout and --tunnel-handshake-timeout must not be negative"))
	}
	if c.MaxHeaderBytes < 0 || c.MaxConcurrentStreams < 0 {
		errs = append(errs, errors.New("--max-header-bytes and --max-concurrent-streams must not be negative"))
	}
	return errors.Join(errs...)
}

// proxyHTTP and proxyLimits are the proxy's limits from the flags.
func (c *Config) proxyHTTP() l7proxy.HTTPConfig {
	return l7proxy.HTTPConfig{MaxHeaderBytes: c.MaxHeaderBytes, MaxURIBytes: c.MaxURIBytes, MaxConcurrentStreams: c.MaxConcurrentStreams,
		ReadHeaderTimeout: c.ReadHeaderTimeout, BodyReadTimeout: c.BodyReadTimeout, IdleTimeout: c.IdleTimeout,
		UpstreamIdleTimeout: c.UpstreamIdleTimeout}
}

func (c *Config) proxyLimits() l7proxy.Limits {
	return l7proxy.Limits{MaxConnsPerSource: c.MaxConnsPerSource, MaxConnsPerPeer: c.MaxTunnelConnsPerPeer,
		MaxEarlyResets: c.MaxEarlyResets, HandshakeTimeout: c.TunnelHandshakeTimeout}
}

// accessLogFilter is the access log's filter configuration.
func (c *Config) accessLogFilter() accesslog.FilterConfig {
	return accesslog.FilterConfig{StatusClasses: c.AccessLogStatusClasses, SampleRate: c.AccessLogSampleRate,
		SampledTraces: c.AccessLogSampledTraces, Redaction: accesslog.Redaction(c.AccessLogPathRedaction)}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
