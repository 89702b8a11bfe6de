package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/skeinmesh/skein/bench"
	"github.com/skeinmesh/skein/scripts/lab"
)

// Ports of the comparison proxies. Same-node listeners are on node-a's
// gateway address (the client pod's next hop); cross-node pairs forward
// over TLS 1.3 with client certificates to a peer on node-b's underlay
// address, which hands the request to the backend: the same two hops, and
// the same encryption, as Skein's tunnel.
const (
	portNginx   = 18000
	portHAProxy = 19000
	portGo      = 20000
	// Offsets from a proxy's base port.
	offH1, offH2C, offGRPC = 0, 1, 2 // same node
	offCross               = 10      // + offH1/offH2C/offGRPC: cross node, on node-a
	offPeer                = 20      // + offH1/offH2C/offGRPC: the TLS peer on node-b
)

// backends are the pod addresses the proxies forward to.
type backends struct {
	SrvA, GRPCA, SrvB, GRPCB string
	GatewayA, NodeB          string
	Dir                      string // configs, certificates, pid files, logs
	ServerName               string
}

func (b backends) P(base, off int) int { return base + off }

// Both nginx instances: one worker, no access log, keep-alive to upstreams.
// nginx 1.22 cannot speak HTTP/2 to an HTTP upstream, so h2c comes in as
// HTTP/2 and goes out as HTTP/1.1 (gRPC goes out as HTTP/2 with grpc_pass).
var nginxTmpl = template.Must(template.New("nginx").Parse(`# skein-bench: nginx on {{.Node}}
user root;
worker_processes 1;
daemon on;
pid {{.B.Dir}}/nginx-{{.Node}}.pid;
error_log {{.B.Dir}}/nginx-{{.Node}}.error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16000; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  client_body_temp_path {{.B.Dir}}/nginx-tmp-{{.Node}};
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_ssl_certificate {{.B.Dir}}/client.crt;
  proxy_ssl_certificate_key {{.B.Dir}}/client.key;
  proxy_ssl_trusted_certificate {{.B.Dir}}/ca.crt;
  proxy_ssl_verify on;
  proxy_ssl_name {{.B.ServerName}};
  proxy_ssl_protocols TLSv1.3;
  proxy_ssl_session_reuse on;
  grpc_ssl_certificate {{.B.Dir}}/client.crt;
  grpc_ssl_certificate_key {{.B.Dir}}/client.key;
  grpc_ssl_trusted_certificate {{.B.Dir}}/ca.crt;
  grpc_ssl_verify on;
  grpc_ssl_name {{.B.ServerName}};
  grpc_ssl_protocols TLSv1.3;
  ssl_protocols TLSv1.3;
  ssl_certificate {{.B.Dir}}/server.crt;
  ssl_certificate_key {{.B.Dir}}/server.key;
  ssl_client_certificate {{.B.Dir}}/ca.crt;
  ssl_verify_client on;
{{- if eq .Node "node-a"}}
  upstream srv_a { server {{.B.SrvA}}:8080; keepalive 64; }
  upstream grpc_a { server {{.B.GRPCA}}:9000; keepalive 64; }
  upstream peer_h1 { server {{.B.NodeB}}:{{.B.P .Base 20}}; keepalive 64; }
  upstream peer_grpc { server {{.B.NodeB}}:{{.B.P .Base 22}}; keepalive 64; }
  server { listen {{.B.GatewayA}}:{{.B.P .Base 0}}; location / { proxy_pass http://srv_a; } }
  server { listen {{.B.GatewayA}}:{{.B.P .Base 1}} http2; location / { proxy_pass http://srv_a; } }
  server { listen {{.B.GatewayA}}:{{.B.P .Base 2}} http2; location / { grpc_pass grpc://grpc_a; } }
  server { listen {{.B.GatewayA}}:{{.B.P .Base 10}}; location / { proxy_pass https://peer_h1; } }
  server { listen {{.B.GatewayA}}:{{.B.P .Base 11}} http2; location / { proxy_pass https://peer_h1; } }
  server { listen {{.B.GatewayA}}:{{.B.P .Base 12}} http2; location / { grpc_pass grpcs://peer_grpc; } }
{{- else}}
  upstream srv_b { server {{.B.SrvB}}:8080; keepalive 64; }
  upstream grpc_b { server {{.B.GRPCB}}:9000; keepalive 64; }
  server { listen {{.B.NodeB}}:{{.B.P .Base 20}} ssl; location / { proxy_pass http://srv_b; } }
  server { listen {{.B.NodeB}}:{{.B.P .Base 22}} ssl http2; location / { grpc_pass grpc://grpc_b; } }
{{- end}}
}
`))

// HAProxy: one thread, no logs, connection reuse to the servers; HTTP/2
// end to end for h2c and gRPC.
var haproxyTmpl = template.Must(template.New("haproxy").Parse(`# skein-bench: HAProxy on {{.Node}}
global
  nbthread 1
  maxconn 9000
  daemon
  pidfile {{.B.Dir}}/haproxy-{{.Node}}.pid
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  http-reuse always
{{- $tls := printf "ssl crt %s/client.pem ca-file %s/ca.crt verify required sni str(%s) verifyhost %s ssl-min-ver TLSv1.3" .B.Dir .B.Dir .B.ServerName .B.ServerName}}
{{- $tlsIn := printf "ssl crt %s/server.pem ca-file %s/ca.crt verify required ssl-min-ver TLSv1.3" .B.Dir .B.Dir}}
{{- if eq .Node "node-a"}}
frontend h1
  bind {{.B.GatewayA}}:{{.B.P .Base 0}}
  default_backend srv_a_h1
frontend h2c
  bind {{.B.GatewayA}}:{{.B.P .Base 1}} proto h2
  default_backend srv_a_h2
frontend grpc
  bind {{.B.GatewayA}}:{{.B.P .Base 2}} proto h2
  default_backend grpc_a
frontend h1x
  bind {{.B.GatewayA}}:{{.B.P .Base 10}}
  default_backend peer_h1
frontend h2cx
  bind {{.B.GatewayA}}:{{.B.P .Base 11}} proto h2
  default_backend peer_h2
frontend grpcx
  bind {{.B.GatewayA}}:{{.B.P .Base 12}} proto h2
  default_backend peer_grpc
backend srv_a_h1
  server s {{.B.SrvA}}:8080
backend srv_a_h2
  server s {{.B.SrvA}}:8080 proto h2
backend grpc_a
  server s {{.B.GRPCA}}:9000 proto h2
backend peer_h1
  server p {{.B.NodeB}}:{{.B.P .Base 20}} {{$tls}} alpn http/1.1
backend peer_h2
  server p {{.B.NodeB}}:{{.B.P .Base 21}} {{$tls}} alpn h2
backend peer_grpc
  server p {{.B.NodeB}}:{{.B.P .Base 22}} {{$tls}} alpn h2
{{- else}}
frontend t_h1
  bind {{.B.NodeB}}:{{.B.P .Base 20}} {{$tlsIn}} alpn http/1.1
  default_backend srv_b_h1
frontend t_h2
  bind {{.B.NodeB}}:{{.B.P .Base 21}} {{$tlsIn}} alpn h2
  default_backend srv_b_h2
frontend t_grpc
  bind {{.B.NodeB}}:{{.B.P .Base 22}} {{$tlsIn}} alpn h2
  default_backend grpc_b
backend srv_b_h1
  server s {{.B.SrvB}}:8080
backend srv_b_h2
  server s {{.B.SrvB}}:8080 proto h2
backend grpc_b
  server s {{.B.GRPCB}}:9000 proto h2
{{- end}}
`))

// proxySet is the running comparison proxies: their processes, by
// topology, for CPU and memory readings.
type proxySet struct {
	nginxA, nginxB, haproxyA, haproxyB, goA, goAX, goB int // pids
}

// startProxies writes the configurations and starts nginx, HAProxy and the
// Go proxy in the nodes' network namespaces (outside every pod cgroup),
// pinned to CPU proxyCPU.
func startProxies(ctx context.Context, l *lab.Lab, b backends, proxyCPU string) (*proxySet, error) {
	if err := writeCerts(b.Dir, b.NodeB); err != nil {
		return nil, fmt.Errorf("write certificates: %w", err)
	}
	type conf struct {
		B    backends
		Node string
		Base int
	}
	pin := "taskset -c " + proxyCPU + " "
	for _, node := range []string{"node-a", "node-b"} {
		if err := os.MkdirAll(filepath.Join(b.Dir, "nginx-tmp-"+node), 0o755); err != nil {
			return nil, err
		}
		for _, p := range []struct {
			name string
			tmpl *template.Template
			base int
			cmd  string
		}{
			{"nginx", nginxTmpl, portNginx, pin + "nginx -p " + b.Dir + " -c %s"},
			{"haproxy", haproxyTmpl, portHAProxy, pin + "haproxy -f %s"},
		} {
			var sb strings.Builder
			if err := p.tmpl.Execute(&sb, conf{B: b, Node: node, Base: p.base}); err != nil {
				return nil, fmt.Errorf("%s config: %w", p.name, err)
			}
			path := filepath.Join(b.Dir, p.name+"-"+node+".conf")
			if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
				return nil, err
			}
			if err := startInNode(ctx, l, node, fmt.Sprintf(p.cmd, path), filepath.Join(b.Dir, p.name+"-"+node+".log"), false); err != nil {
				return nil, fmt.Errorf("start %s on %s: %w", p.name, node, err)
			}
		}
	}
	goCmd := pin + "skein-bench goproxy --tls-dir " + b.Dir
	for _, g := range []struct{ name, node, args string }{
		{"go-a", "node-a", fmt.Sprintf("--listen %s:%d --upstream http://%s:8080 --grpc-upstream http://%s:9000", b.GatewayA, portGo, b.SrvA, b.GRPCA)},
		{"go-ax", "node-a", fmt.Sprintf("--listen %s:%d --upstream https://%s:%d", b.GatewayA, portGo+offCross, b.NodeB, portGo+offPeer)},
		{"go-b", "node-b", fmt.Sprintf("--listen %s:%d --listen-tls --upstream http://%s:8080 --grpc-upstream http://%s:9000", b.NodeB, portGo+offPeer, b.SrvB, b.GRPCB)},
	} {
		cmd := goCmd + " " + g.args + " --pid-file " + filepath.Join(b.Dir, g.name+".pid")
		if err := startInNode(ctx, l, g.node, cmd, filepath.Join(b.Dir, g.name+".log"), true); err != nil {
			return nil, fmt.Errorf("start %s: %w", g.name, err)
		}
	}
	ps := &proxySet{}
	for _, f := range []struct {
		file string
		pid  *int
	}{
		{"nginx-node-a.pid", &ps.nginxA}, {"nginx-node-b.pid", &ps.nginxB},
		{"haproxy-node-a.pid", &ps.haproxyA}, {"haproxy-node-b.pid", &ps.haproxyB},
		{"go-a.pid", &ps.goA}, {"go-ax.pid", &ps.goAX}, {"go-b.pid", &ps.goB},
	} {
		pid, err := waitPidFile(ctx, filepath.Join(b.Dir, f.file))
		if err != nil {
			return nil, err
		}
		*f.pid = pid
	}
	return ps, nil
}

// startInNode runs a shell command in a node's network namespace, output
// to logPath; background: it does not daemonize itself.
func startInNode(ctx context.Context, l *lab.Lab, node, cmd, logPath string, background bool) error {
	sh := "exec " + cmd + " >>" + logPath + " 2>&1 </dev/null"
	if background {
		sh = "setsid " + cmd + " >>" + logPath + " 2>&1 </dev/null &"
	}
	out, err := l.ExecNode(ctx, node, "sh", "-c", sh)
	if err != nil {
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("%w: %s%s", err, out, log)
	}
	return nil
}

func waitPidFile(ctx context.Context, path string) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && pid > 0 {
				if _, err := bench.CPUSeconds(pid); err == nil {
					return pid, nil
				}
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("no live pid in %s after 10s", path)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// withChildren returns pids and their children (nginx's workers).
func withChildren(pids ...int) []int {
	var out []int
	for _, p := range pids {
		out = append(out, p)
		out = append(out, bench.Children(p)...)
	}
	return out
}
