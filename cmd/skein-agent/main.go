// Command skein-agent is Skein's node agent: it captures the TCP traffic of
// the node's meshed pods with eBPF and runs the shared node proxy.
package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/skeinmesh/skein/agent"
	"github.com/skeinmesh/skein/agent/kernel"
	"github.com/skeinmesh/skein/telemetry/accesslog"
)

// Set by the linker: -X main.version=... -X main.commit=...
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	if err := newCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "skein-agent:", err)
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var (
		cfg                         agent.Config
		proxyAddrs                  []string
		nodeIP, logLevel, logFormat string
		accessLogMaxSize            string
		cleanup, mountOnly          bool
	)
	cmd := &cobra.Command{
		Use:           "skein-agent",
		Short:         "Skein node agent: eBPF capture and the shared node proxy",
		Version:       version + " (" + commit + ")",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, logFormat)
			if err != nil {
				return err
			}
			defer log.Sync() //nolint:errcheck // nothing to do about it at exit
			if cfg.NodeName == "" {
				cfg.NodeName = os.Getenv("NODE_NAME")
			}
			if mountOnly {
				// The DaemonSet's privileged init container: make bpffs and
				// tracefs mounts exist on the node, propagated back to it.
				mounts, err := kernel.EnsureMounts()
				for _, m := range mounts {
					log.Info("filesystem ready", zap.String("path", m.Path), zap.String("type", m.FSType), zap.Bool("mounted_now", m.Mounted))
				}
				return err
			}
			if cleanup {
				if err := agent.Cleanup(cfg); err != nil {
					return err
				}
				log.Info("removed pinned capture state", zap.String("node", cfg.NodeName))
				return nil
			}
			if nodeIP == "" {
				nodeIP = os.Getenv("NODE_IP")
			}
			if nodeIP != "" {
				if cfg.NodeIP, err = netip.ParseAddr(nodeIP); err != nil {
					return fmt.Errorf("--node-ip %q: %w", nodeIP, err)
				}
			}
			for _, s := range proxyAddrs {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return fmt.Errorf("--proxy-address %q: %w", s, err)
				}
				if a.Is4() {
					cfg.ProxyAddr4 = a
				} else {
					cfg.ProxyAddr6 = a
				}
			}
			q, err := resource.ParseQuantity(accessLogMaxSize)
			if err != nil || q.Sign() <= 0 {
				return fmt.Errorf("--accesslog-max-size %q: want a size such as 100Mi or 256Ki", accessLogMaxSize)
			}
			cfg.AccessLogMaxBytes = q.Value()
			cfg.Version, cfg.Commit = version, commit
			a, err := agent.New(cfg, log)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.NodeName, "node", "", "name of this Kubernetes node (default $NODE_NAME)")
	f.StringSliceVar(&cfg.ConfigPaths, "config", nil, "YAML file or directory of Kubernetes objects to read (standalone mode); repeatable")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig file: read the objects from the Kubernetes API server")
	f.BoolVar(&cfg.InCluster, "in-cluster", false, "read the objects from the Kubernetes API server with the pod's service account (the DaemonSet's mode)")
	f.StringVar(&cfg.CgroupRoot, "cgroup-root", "", "cgroup v2 directory holding the node's pod cgroups (default: kubepods.slice or kubepods under the cgroup2 mount)")
	f.StringSliceVar(&proxyAddrs, "proxy-address", nil, "address at which pods reach the node proxy, one IPv4 and/or one IPv6 (default: the node IP)")
	f.StringVar(&nodeIP, "node-ip", "", "this node's IP on the node network (default $NODE_IP)")
	f.Uint16Var(&cfg.OutboundPort, "outbound-port", 15001, "port of the outbound capture listener")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", ":15020", "address for /metrics, /healthz and /readyz")
	f.StringVar(&cfg.AdminSocket, "admin-socket", "/run/skein/admin.sock", "unix socket of the admin API (agentctl)")
	f.StringVar(&cfg.PinRoot, "bpf-pin-root", "/sys/fs/bpf/skein", "bpffs directory to pin under; the agent uses <root>/<node>/")
	f.BoolVar(&cfg.FailClosed, "fail-closed", false, "refuse captured connects while the proxy is down (default: let them through to their original destination)")
	f.StringVar(&cfg.TrustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain of workload identities")
	f.DurationVar(&cfg.DrainTimeout, "drain-timeout", 10*time.Second, "how long connections in flight may finish on shutdown")
	f.DurationVar(&cfg.ConnectTimeout, "connect-timeout", 5*time.Second, "bound on connecting to an endpoint")
	f.StringVar(&cfg.CAAddress, "ca-address", "", "skein-ca to get workload certificates from, host:port (empty: no mTLS between nodes)")
	f.StringVar(&cfg.CAServerName, "ca-server-name", "", "name to verify in the CA's certificate (default: the host of --ca-address)")
	f.StringVar(&cfg.CARootsFile, "ca-roots", "", "PEM file with the CA's root certificates")
	f.StringVar(&cfg.CATokenFile, "ca-token-file", "", "file with the agent's token for the CA (re-read on every request)")
	f.DurationVar(&cfg.CertTTL, "cert-ttl", 24*time.Hour, "workload certificate lifetime to ask for; renewed at half-life")
	f.Uint16Var(&cfg.TunnelPort, "tunnel-port", 15008, "port of the mTLS tunnel between nodes")
	f.StringVar(&cfg.Mode, "mode", "PERMISSIVE", "cluster-wide mTLS mode: PERMISSIVE or STRICT (drops plaintext from outside the mesh; implies --fail-closed); namespace label skein.io/mtls-mode overrides it")
	f.StringVar(&cfg.TracingEndpoint, "tracing-endpoint", "", "OTLP collector for spans, host:port (empty: propagate trace context, record no span)")
	f.StringVar(&cfg.TracingProtocol, "tracing-protocol", "grpc", "OTLP protocol: grpc or http")
	f.Float64Var(&cfg.TracingSampleRate, "tracing-sample-rate", 0.01, "share of new traces recorded, 0 to 1; requests with a trace keep their parent's decision")
	f.StringVar(&cfg.AccessLogDir, "accesslog-dir", accesslog.DefaultDir, "node-local access-log store, kept across pod deletions and agent restarts; the agent uses <dir>/<node>/ (empty: no store)")
	f.StringVar(&accessLogMaxSize, "accesslog-max-size", "100Mi", "size cap of the access-log store; the oldest lines go first")
	f.DurationVar(&cfg.AccessLogMaxAge, "accesslog-max-age", accesslog.DefaultMaxAge, "age cap of the access-log store")
	f.StringSliceVar(&cfg.AccessLogStatusClasses, "accesslog-status-classes", nil, "HTTP status classes always logged, e.g. 4xx; failures (5xx, or any response flag such as UF, UH, DC, also on TCP) always are")
	f.Float64Var(&cfg.AccessLogSampleRate, "accesslog-sample-rate", 0.01, "share of the other requests and TCP connections logged, 0 to 1 (1: everything); decided by trace id, so all hops of a request agree")
	f.BoolVar(&cfg.AccessLogSampledTraces, "accesslog-sampled-traces", true, "also log every request whose trace is sampled, so each recorded trace has its access-log lines")
	f.StringVar(&cfg.AccessLogPathRedaction, "accesslog-path-redaction", "query", "how much of the path is logged: none, query (drop the query string) or route (the matched route rule instead of the path)")
	f.StringVar(&cfg.AccessLogOTLPEndpoint, "accesslog-otlp-endpoint", "", "also export the access log as OTLP logs to this collector, host:port (gRPC); never blocks requests: drops are counted")
	f.StringVar(&cfg.PprofAddr, "pprof-addr", "", "serve Go's net/http/pprof profiles on this address (e.g. 127.0.0.1:6060); off when empty")
	f.StringVar(&cfg.RootNamespace, "root-namespace", "skein-system", "namespace whose AuthorizationPolicies apply mesh-wide")
	f.IntVar(&cfg.MaxHeaderBytes, "max-header-bytes", 64<<10, "largest request header block, request line included; larger requests get 431")
	f.IntVar(&cfg.MaxURIBytes, "max-uri-bytes", 16<<10, "longest request URI; longer ones get 414 (-1: only --max-header-bytes bounds it)")
	f.IntVar(&cfg.MaxConcurrentStreams, "max-concurrent-streams", 1000, "HTTP/2 streams one client connection may have open at once")
	f.IntVar(&cfg.MaxConnsPerSource, "max-conns-per-source", 1024, "open connections one source workload may hold on the outbound listener; more are reset at once (-1: no limit)")
	f.IntVar(&cfg.MaxTunnelConnsPerPeer, "max-tunnel-conns-per-peer", 1024, "open tunnel connections one peer identity may hold; more are closed after the handshake (-1: no limit)")
	f.IntVar(&cfg.MaxEarlyResets, "max-early-resets", 200, "HTTP/2 streams a connection may reset before they are answered, once they are most of its streams, before it is closed (rapid reset; -1: no limit)")
	f.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "time a client has to send a request's headers (slowloris)")
	f.DurationVar(&cfg.BodyReadTimeout, "body-read-timeout", time.Minute, "longest wait for more of a request body; a slower client gets 408")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", 5*time.Minute, "idle client connections (HTTP/1.1 keep-alive, HTTP/2) close after this")
	f.DurationVar(&cfg.UpstreamIdleTimeout, "upstream-idle-timeout", 90*time.Second, "pooled connections to endpoints close after being idle this long")
	f.DurationVar(&cfg.TunnelHandshakeTimeout, "tunnel-handshake-timeout", 10*time.Second, "time a peer has to complete the tunnel's TLS handshake")
	f.BoolVar(&mountOnly, "mount-only", false, "mount bpffs and tracefs where missing, then exit (the DaemonSet's init container)")
	f.BoolVar(&cleanup, "cleanup", false, "remove everything the agent of --node pinned (detaching capture) and exit")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&logFormat, "log-format", "json", "log format: json or console")
	return cmd
}

func newLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.Sampling = nil
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	switch format {
	case "json":
	case "console":
		zc.Encoding = "console"
	default:
		return nil, errors.New("--log-format must be json or console")
	}
	return zc.Build()
}
