package l7proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/skeinmesh/skein/l7proxy/balancer"
)

// forwardTCP relays a connection as opaque bytes to an endpoint of the
// destination: a service's endpoint, or the pod the app dialed.
func (p *Proxy) forwardTCP(c net.Conn, origin Origin, t *Table) {
	rec := ConnRecord{Start: time.Now(), Source: origin.Source, OrigDst: origin.Dst, Flag: FlagNone,
		Reporter: ReporterSource, Security: SecurityNone}
	defer func() {
		rec.Duration = time.Since(rec.Start)
		p.finish(rec)
	}()

	upstream := origin.Dst
	var h *balancer.Handle
	if svc, ok := t.Services[origin.Dst]; ok {
		rec.Service = svc
		bal, err := p.balancerFor(svc)
		if err == nil {
			h, err = bal.Pick()
		}
		if err != nil {
			rec.Flag, rec.Err = FlagNoHealthyUpstream, err
			if errors.Is(err, balancer.ErrOverflow) {
				rec.Flag = FlagUpstreamOverflow
			}
			resetConn(c)
			return
		}
		upstream = h.Addr()
		rec.Dest = svc.endpointWorkload(upstream)
	} else if w, ok := t.Workloads[origin.Dst.Addr()]; ok {
		rec.Dest = w
	}
	rec.Upstream = upstream

	hp := p.plan(t, origin.Source, upstream, rec.Dest)
	if !hp.remote {
		if d := p.authorizeLocal(t, origin.Source, rec.Dest, upstream.Port(), nil); !d.Allow {
			rec.Flag = FlagUnauthorized
			if h != nil {
				h.Done(balancer.Result{})
			}
			resetConn(c)
			return
		}
	} else {
		rec.Security = SecurityMutualTLS
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ConnectTimeout)
	start := time.Now()
	var up net.Conn
	var err error
	if hp.remote {
		up, err = p.cfg.Tunnel.Dial(ctx, hp.hop)
	} else {
		up, err = p.dialer.DialContext(ctx, "tcp", upstream.String())
	}
	connectTime := time.Since(start)
	cancel()
	if err != nil {
		rec.Flag, rec.Err = FlagUpstreamConnect, err
		if errors.Is(err, context.DeadlineExceeded) {
			rec.Flag = FlagUpstreamTimeout
		}
		if h != nil {
			h.Done(balancer.Result{ConnectFailed: true, TimedOut: rec.Flag == FlagUpstreamTimeout, Latency: connectTime})
		}
		resetConn(c)
		return
	}
	if h != nil {
		// The connection counts as in flight until it closes; its
		// latency for the EWMA is the connect time.
		defer h.Done(balancer.Result{Latency: connectTime})
	}
	rec.SentBytes, rec.RecvBytes, err = relay(c, up)
	if err != nil {
		rec.Err = err
		if errors.Is(err, syscall.ECONNRESET) {
			rec.Flag = FlagUpstreamReset
		}
	}
}

func (p *Proxy) finish(rec ConnRecord) {
	if rec.Flag == FlagNone {
		p.stats.Forwarded.Add(1)
	} else {
		p.stats.Failed.Add(1)
	}
	if p.cfg.Recorder != nil {
		p.cfg.Recorder.RecordConnection(rec)
	}
	if ce := p.log.Check(zap.InfoLevel, "tcp connection"); ce != nil {
		fields := []zap.Field{
			zap.String("src_pod", podName(rec.Source)),
			zap.String("src_workload", workloadName(rec.Source)),
			zap.Stringer("orig_dst", rec.OrigDst),
			zap.Stringer("upstream", rec.Upstream),
			zap.String("dst_pod", podName(rec.Dest)),
			zap.String("flag", rec.Flag),
			zap.Int64("sent", rec.SentBytes),
			zap.Int64("received", rec.RecvBytes),
			zap.Duration("duration", rec.Duration),
		}
		if rec.Service != nil {
			fields = append(fields, zap.String("service", rec.Service.Namespace+"/"+rec.Service.Name))
		}
		if rec.Err != nil {
			fields = append(fields, zap.Error(rec.Err))
		}
		ce.Write(fields...)
	}
}

func podName(w *Workload) string {
	if w == nil {
		return "unknown"
	}
	if w.Pod == "" {
		// A peer on another node: its proxy announces the workload only.
		return w.Namespace + "/" + w.Name
	}
	return w.Namespace + "/" + w.Pod
}

func workloadName(w *Workload) string {
	if w == nil {
		return "unknown"
	}
	return w.Namespace + "/" + w.Name
}

// resetConn closes c with a RST rather than a FIN, so the client sees that
// the connection failed rather than a clean, empty answer.
func resetConn(c net.Conn) {
	if tc, ok := c.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

// relay copies both ways until both directions are done, half-closing each
// side as the other finishes, and returns the bytes sent (a to b) and
// received (b to a). Buffers are copied through user space on purpose:
// splice does not work once sockets carry sk_msg programs.
func relay(a, b net.Conn) (sent, recv int64, err error) {
	var wg sync.WaitGroup
	var errA, errB error
	wg.Add(2)
	go func() {
		defer wg.Done()
		sent, errA = copyHalf(b, a)
	}()
	go func() {
		defer wg.Done()
		recv, errB = copyHalf(a, b)
	}()
	wg.Wait()
	a.Close()
	b.Close()
	return sent, recv, errors.Join(errA, errB)
}

// copyHalf copies src to dst, then half-closes dst. On an error it closes
// both, so the other direction ends too.
func copyHalf(dst, src net.Conn) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	n, err := io.CopyBuffer(writerOnly{dst}, readerOnly{src}, *bp)
	if err != nil {
		if isClosed(err) {
			err = nil
		}
		dst.Close()
		src.Close()
		return n, err
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		dst.Close()
	}
	return n, nil
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)
}

// readerOnly and writerOnly hide ReadFrom/WriteTo so io.CopyBuffer uses the
// buffer instead of splice or sendfile.
type readerOnly struct{ io.Reader }
type writerOnly struct{ io.Writer }
