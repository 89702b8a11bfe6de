package l7proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/skeinmesh/skein/internal/spiffe"
	"github.com/skeinmesh/skein/l7proxy/tunnel"
)

// Connection security policies, as Istio labels them.
const (
	SecurityMutualTLS = "mutual_tls"
	SecurityNone      = "none"
)

// AuthzRequest is what an authorization decision looks at.
type AuthzRequest struct {
	// Source is the calling workload when known.
	Source *Workload
	// Principal is the source's authenticated identity in Istio's form
	// ("<trust-domain>/ns/<ns>/sa/<sa>"); empty when unauthenticated.
	Principal string
	// Namespace is the source's namespace, from its identity.
	Namespace string
	// Dest is the destination pod.
	Dest *Workload
	// Port is the destination (pod) port.
	Port uint16
	// HTTP says whether Method and Path are known.
	HTTP         bool
	Method, Path string
}

// Decision is an authorization outcome.
type Decision struct {
	Allow bool
	// Policy names the policy that decided ("ns/name"), empty for the
	// default.
	Policy string
}

// Authorizer decides whether a source may reach a destination. It runs
// where the destination pod is: for same-node traffic in the outbound path,
// for traffic from other nodes when it leaves the tunnel.
type Authorizer interface {
	Authorize(*AuthzRequest) Decision
}

// errDenied is returned by the transport when authorization refuses.
var errDenied = errors.New("denied by authorization policy")

// sourceID returns the SPIFFE ID of a workload, if it has a valid one.
func sourceID(w *Workload) (spiffe.ID, bool) {
	if w == nil || !w.Meshed || w.Identity == "" {
		return spiffe.ID{}, false
	}
	id, err := spiffe.Parse(w.Identity)
	return id, err == nil
}

// route says how to reach an upstream pod.
type hopPlan struct {
	remote bool
	hop    tunnel.Hop
}

// plan decides whether target (with its workload dst) is reached through
// the tunnel: it is when the pod runs on another known node, both ends are
// meshed and have identities, and a tunnel client is configured.
func (p *Proxy) plan(t *Table, src *Workload, target netip.AddrPort, dst *Workload) hopPlan {
	if p.cfg.Tunnel == nil || dst == nil || dst.Node == "" || dst.Node == t.LocalNode {
		return hopPlan{}
	}
	node, ok := t.Nodes[dst.Node]
	if !ok {
		return hopPlan{}
	}
	srcID, ok1 := sourceID(src)
	dstID, ok2 := sourceID(dst)
	if !ok1 || !ok2 {
		return hopPlan{}
	}
	port := p.cfg.TunnelPort
	if port == 0 {
		port = tunnel.Port
	}
	return hopPlan{remote: true, hop: tunnel.Hop{
		Node: netip.AddrPortFrom(node, port), Target: target, Src: srcID, Dst: dstID,
	}}
}

// authorizeLocal runs authorization for a destination on this node, in the
// outbound path (same-node traffic never enters the tunnel).
func (p *Proxy) authorizeLocal(t *Table, src *Workload, dst *Workload, port uint16, r *http.Request) Decision {
	if p.cfg.Authorizer == nil || dst == nil || !dst.Meshed || dst.Node != t.LocalNode {
		return Decision{Allow: true}
	}
	ar := &AuthzRequest{Source: src, Dest: dst, Port: port}
	if id, ok := sourceID(src); ok {
		ar.Principal, ar.Namespace = id.Principal(), id.Namespace
	}
	if r != nil {
		ar.HTTP, ar.Method, ar.Path = true, r.Method, r.URL.Path
	}
	return p.decide(ar)
}

func (p *Proxy) decide(ar *AuthzRequest) Decision {
	d := p.cfg.Authorizer.Authorize(ar)
	if d.Allow {
		p.stats.AuthzAllowed.Add(1)
	} else {
		p.stats.AuthzDenied.Add(1)
		if ce := p.log.Check(zap.InfoLevel, "authorization denied"); ce != nil {
			ce.Write(zap.String("principal", ar.Principal), zap.String("src_namespace", ar.Namespace),
				zap.String("dst_pod", podName(ar.Dest)), zap.Uint16("port", ar.Port),
				zap.String("method", ar.Method), zap.String("path", ar.Path), zap.String("policy", d.Policy))
		}
	}
	if p.cfg.Events != nil && !d.Allow {
		p.cfg.Events.PolicyDenied(ar, d)
	}
	return d
}

// EventSink receives proxy-side troubleshooting events (agentctl trace).
type EventSink interface {
	PolicyDenied(*AuthzRequest, Decision)
}

// isUpgrade reports an HTTP/1.1 protocol upgrade request (WebSocket...).
func isUpgrade(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.Header.Get("Upgrade") != "" &&
		strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

// roundTripRemote sends one attempt through the tunnel. Upgrades need the
// raw connection: they travel in a CONNECT stream, over which a one-off
// HTTP/1.1 transport speaks to the pod.
func (p *Proxy) roundTripRemote(req *http.Request, hp hopPlan, h2 bool) (*http.Response, error) {
	if !isUpgrade(req) {
		return p.cfg.Tunnel.RoundTrip(req, hp.hop, h2)
	}
	conn, err := p.cfg.Tunnel.Dial(req.Context(), hp.hop)
	if err != nil {
		return nil, err
	}
	once := &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			if conn == nil {
				return nil, errors.New("upgrade connection already used")
			}
			c := conn
			conn = nil
			return c, nil
		},
		DisableKeepAlives: true,
	}
	return once.RoundTrip(req)
}

// ServeTunnel serves the inbound side of the mTLS tunnel on ln (port 15008)
// until Shutdown: it verifies each peer, authorizes each stream for the
// local pod it targets and forwards it. local maps the TLS server name a
// peer asks for to a local workload identity.
func (p *Proxy) ServeTunnel(ln net.Listener, certs tunnel.Certs, local func(sni string) (spiffe.ID, bool)) error {
	tlsCfg := tunnel.ServerTLS(certs, local)
	tl := p.newTunnelListener(ln, tlsCfg)
	var protos http.Protocols
	protos.SetHTTP2(true) // peers speak HTTP/2 only: less to attack
	srv := &http.Server{
		Handler:           p.guardHandler(ListenerTunnel, http.HandlerFunc(p.serveTunnel)),
		TLSConfig:         tlsCfg,
		Protocols:         &protos,
		ReadHeaderTimeout: p.cfg.HTTP.ReadHeaderTimeout,
		IdleTimeout:       p.cfg.HTTP.IdleTimeout,
		MaxHeaderBytes:    p.cfg.HTTP.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: p.cfg.HTTP.MaxConcurrentStreams,
			MaxReadFrameSize:     1 << 20,
			CountError:           p.countH2Error(ListenerTunnel),
		},
		ErrorLog: p.serverErrorLog(ListenerTunnel, p.log.Named("tunnel")),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if g := tl.guardOf(c); g != nil {
				return context.WithValue(ctx, guardKey{}, g)
			}
			return ctx
		},
		ConnState: tl.connState,
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		tl.Close()
		return ErrClosed
	}
	p.tunnelSrv = srv
	p.mu.Unlock()
	err := srv.Serve(tl)
	if errors.Is(err, http.ErrServerClosed) {
		return ErrClosed
	}
	return err
}

// tunnelRefuse answers a stream the proxy will not forward.
func (p *Proxy) tunnelRefuse(w http.ResponseWriter, rec *RequestRecord, code int, flag, msg string) {
	if rec != nil {
		rec.addFlag(flag)
	}
	w.Header().Set("Skein-Error", msg)
	if rec != nil {
		p.respond(w, rec, code, msg)
		return
	}
	http.Error(w, "skein: "+msg, code)
}

// serveTunnel handles one stream from a peer node.
func (p *Proxy) serveTunnel(w http.ResponseWriter, r *http.Request) {
	p.handlers.Add(1)
	defer p.handlers.Add(-1)
	t := p.table.Load()
	peer, err := tunnel.PeerIdentity(r.TLS)
	if err != nil {
		p.stats.TunnelRefused.Add(1)
		http.Error(w, "skein: "+err.Error(), http.StatusUnauthorized)
		return
	}
	connect := r.Method == http.MethodConnect
	targetStr := r.Header.Get(tunnel.TargetHeader)
	if connect {
		targetStr = r.Host
	}
	target, err := netip.ParseAddrPort(targetStr)
	if err != nil {
		p.stats.TunnelRefused.Add(1)
		http.Error(w, "skein: bad tunnel target "+targetStr, http.StatusBadRequest)
		return
	}
	target = netip.AddrPortFrom(target.Addr().Unmap(), target.Port())
	src := &Workload{Namespace: peer.Namespace, ServiceAccount: peer.ServiceAccount, Identity: peer.String(), Meshed: true,
		Name: peerWorkloadName(r, peer)}
	rec := &RequestRecord{
		Start: time.Now(), Source: src, OrigDst: target, Upstream: target,
		Method: r.Method, Authority: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery, Protocol: peerProtocol(r),
		Reporter: ReporterDestination, Security: SecurityMutualTLS, Header: r.Header,
		PeerService: peerHeader(r, tunnel.PeerServiceHeader),
	}
	dst := t.Workloads[target.Addr()]
	rec.Dest = dst
	// The stream must target a meshed pod of this node whose identity is
	// the one the peer asked for (by SNI) and authenticated.
	serverID, _ := spiffe.Parse(dstIdentity(dst))
	if dst == nil || dst.Node != t.LocalNode || !dst.Meshed || r.TLS.ServerName != serverID.SNI() {
		p.stats.TunnelRefused.Add(1)
		if connect {
			p.tunnelRefuse(w, nil, http.StatusMisdirectedRequest, "", "target "+target.String()+" is not a meshed pod of this node with the identity asked for")
			return
		}
		p.tunnelRefuse(w, rec, http.StatusMisdirectedRequest, FlagNoRoute, "target "+target.String()+" is not a meshed pod of this node with the identity asked for")
		p.finishRequest(rec)
		return
	}
	ar := &AuthzRequest{Source: src, Principal: peer.Principal(), Namespace: peer.Namespace, Dest: dst, Port: target.Port()}
	if !connect {
		ar.HTTP, ar.Method, ar.Path = true, r.Method, r.URL.Path
	}
	if p.cfg.Authorizer != nil {
		if d := p.decide(ar); !d.Allow {
			if connect {
				p.tunnelRefuse(w, nil, http.StatusForbidden, "", "RBAC: access denied")
				p.finish(ConnRecord{Start: rec.Start, Source: src, OrigDst: target, Upstream: target, Dest: dst,
					Flag: FlagUnauthorized, Reporter: ReporterDestination, Security: SecurityMutualTLS})
				return
			}
			p.tunnelRefuse(w, rec, http.StatusForbidden, FlagUnauthorized, "RBAC: access denied")
			rec.Duration = time.Since(rec.Start)
			p.finishRequest(rec)
			return
		}
	}
	if connect {
		p.serveTunnelConnect(w, r, src, dst, target)
		return
	}
	ctx, span := p.startSpan(r, rec, trace.SpanKindServer)
	p.serveTunnelHTTP(w, r.WithContext(ctx), rec, target, span)
}

// peerWorkloadName is the workload name the peer proxy announced, used for
// telemetry only: the identity itself comes from the certificate.
func peerWorkloadName(r *http.Request, id spiffe.ID) string {
	if n := r.Header.Get(tunnel.PeerWorkloadHeader); n != "" && len(n) < 254 {
		return n
	}
	return id.ServiceAccount
}

// peerProtocol is the protocol the client spoke, as the source proxy
// announced it (the tunnel itself is always HTTP/2).
func peerProtocol(r *http.Request) string {
	switch p := r.Header.Get(tunnel.PeerProtocolHeader); p {
	case "http", "http2", "grpc":
		return p
	}
	return protocolName(r)
}

func peerHeader(r *http.Request, name string) string {
	if v := r.Header.Get(name); len(v) < 254 {
		return v
	}
	return ""
}

func dstIdentity(w *Workload) string {
	if w == nil {
		return ""
	}
	return w.Identity
}

// serveTunnelHTTP forwards a tunnelled request to the local pod.
func (p *Proxy) serveTunnelHTTP(w http.ResponseWriter, r *http.Request, rec *RequestRecord, target netip.AddrPort, span trace.Span) {
	cw := &countingWriter{ResponseWriter: w}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &countingBody{ReadCloser: r.Body, n: &rec.ReqBytes}
	}
	defer func() {
		rec.Duration = time.Since(rec.Start)
		if rec.Code == 0 {
			rec.Code = cw.code
		}
		rec.RespBytes = cw.n
		rec.GRPCStatus = grpcStatus(cw.Header(), rec.Code, rec.Protocol)
		endSpan(span, rec, trace.SpanKindServer)
		p.finishRequest(rec)
	}()
	h2 := r.Header.Get(tunnel.ProtocolHeader) == tunnel.ProtoH2C
	rt := http.RoundTripper(p.h1)
	if h2 {
		rt = p.h2
	}
	rt = endWithResponse{rt: rt, in: r.Body}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", target.String()
			pr.Out.Host = pr.In.Host
			for _, h := range tunnel.HopHeaders {
				pr.Out.Header.Del(h)
			}
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
		},
		Transport:      rt,
		ModifyResponse: flushStreams,
		BufferPool:     reverseBufferPool{},
		ErrorLog:       zap.NewStdLog(p.log.Named("tunnel")),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if code, cause, ok := clientBodyError(r, err); ok {
				rec.addFlag(FlagDownstreamProtocol)
				rec.Err = cause
				p.respond(w, rec, code, cleanErr(cause))
				return
			}
			code, flag := http.StatusBadGateway, FlagUpstreamReset
			if isDialError(err) {
				code, flag = http.StatusServiceUnavailable, FlagUpstreamConnect
			}
			w.Header().Set(tunnel.ResultHeader, flag)
			rec.addFlag(flag)
			rec.Err = err
			p.respond(w, rec, code, "upstream: "+cleanErr(err))
		},
	}
	rp.ServeHTTP(cw, r)
}

// endWithResponse closes the client's request body when the response ends,
// as the outbound transport does (see doneBody).
type endWithResponse struct {
	rt http.RoundTripper
	in io.Closer
}

func (t endWithResponse) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &doneBody{ReadCloser: resp.Body, done: func() {}, reqBody: t.in}
	return resp, nil
}

// serveTunnelConnect relays a CONNECT stream to the local pod.
func (p *Proxy) serveTunnelConnect(w http.ResponseWriter, r *http.Request, src, dst *Workload, target netip.AddrPort) {
	rec := ConnRecord{Start: time.Now(), Source: src, OrigDst: target, Upstream: target, Dest: dst,
		Flag: FlagNone, Reporter: ReporterDestination, Security: SecurityMutualTLS}
	defer func() {
		rec.Duration = time.Since(rec.Start)
		p.finish(rec)
	}()
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.ConnectTimeout)
	up, err := p.dialer.DialContext(ctx, "tcp", target.String())
	cancel()
	if err != nil {
		rec.Flag, rec.Err = FlagUpstreamConnect, err
		w.Header().Set("Skein-Error", "connect to "+target.String()+": "+cleanErr(err))
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	defer up.Close()
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		rec.Flag, rec.Err = FlagDownstreamClosed, err
		return
	}
	stream := &handlerConn{r: r.Body, w: w, rc: rc}
	// The client's side of the stream goes to the pod in the background;
	// the pod's side comes back here. When the pod is done, the handler
	// returns, which ends the stream: an HTTP/2 response cannot be
	// half-closed while the handler runs.
	sent := make(chan int64, 1)
	go func() {
		n, _ := copyHalf(up, stream)
		sent <- n
	}()
	rec.RecvBytes, err = copyHalf(stream, up)
	if err != nil {
		rec.Err = err
	}
	up.Close()
	r.Body.Close()
	rec.SentBytes = <-sent
}

// handlerConn is the server side of a CONNECT stream as a net.Conn.
type handlerConn struct {
	r  io.ReadCloser
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (c *handlerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *handlerConn) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err == nil {
		err = c.rc.Flush()
	}
	return n, err
}

// CloseWrite cannot half-close an HTTP/2 response before the handler
// returns; the relay's close of the other side ends the stream instead.
func (c *handlerConn) CloseWrite() error { return nil }

func (c *handlerConn) Close() error { return c.r.Close() }

func (c *handlerConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *handlerConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *handlerConn) SetDeadline(t time.Time) error      { return nil }
func (c *handlerConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *handlerConn) SetWriteDeadline(t time.Time) error { return nil }

// describeHop is a log helper.
func describeHop(hp hopPlan) string {
	if !hp.remote {
		return "direct"
	}
	return fmt.Sprintf("tunnel %s -> %s via %s", hp.hop.Src, hp.hop.Dst, hp.hop.Node)
}
