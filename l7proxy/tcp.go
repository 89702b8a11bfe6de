package l7proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// pickRoundRobin returns the next endpoint of svc, nil if it has none.
func (p *Proxy) pickRoundRobin(svc *Service) *Endpoint {
	if len(svc.Endpoints) == 0 {
		return nil
	}
	key := svc.Namespace + "/" + svc.Name + ":" + svc.PortName
	v, _ := p.rr.LoadOrStore(key, new(atomic.Uint64))
	n := v.(*atomic.Uint64).Add(1)
	return svc.Endpoints[(n-1)%uint64(len(svc.Endpoints))]
}

// forwardTCP relays a connection as opaque bytes to an endpoint of the
// destination: a service's endpoint, or the pod the app dialed.
func (p *Proxy) forwardTCP(c net.Conn, origin Origin, t *Table) {
	rec := ConnRecord{Start: time.Now(), Source: origin.Source, OrigDst: origin.Dst, Flag: FlagNone}
	defer func() {
		rec.Duration = time.Since(rec.Start)
		p.finish(rec)
	}()

	upstream := origin.Dst
	if svc, ok := t.Services[origin.Dst]; ok {
		rec.Service = svc
		ep := p.pickRoundRobin(svc)
		if ep == nil {
			rec.Flag = FlagNoHealthyUpstream
			c.Close()
			return
		}
		upstream = ep.Addr
		rec.Dest = ep.Workload
	} else if w, ok := t.Workloads[origin.Dst.Addr()]; ok {
		rec.Dest = w
	}
	rec.Upstream = upstream

	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ConnectTimeout)
	up, err := p.dialer.DialContext(ctx, "tcp", upstream.String())
	cancel()
	if err != nil {
		rec.Flag, rec.Err = FlagUpstreamConnect, err
		if errors.Is(err, context.DeadlineExceeded) {
			rec.Flag = FlagUpstreamTimeout
		}
		resetConn(c)
		return
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
	if tc, ok := c.(*net.TCPConn); ok {
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
