package l7proxy

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/skeinmesh/skein/l7proxy/route"
)

// maxMirrors bounds the mirrored requests in flight on the node, so that a
// slow shadow backend can never hold more than this many goroutines.
const maxMirrors = 256

// mirror sends a copy of the request to the mirror's backend and forgets
// it: the response is discarded, failures only counted. The copy is sent
// only if the body was buffered (or there is none).
func (p *Proxy) mirror(r *http.Request, st *reqState, t *Table, m *route.Mirror) {
	if !st.bodyOK {
		p.stats.MirrorsSkipped.Add(1)
		return
	}
	if !m.Sample(rand.Float64) {
		return
	}
	svc := t.ServicesByRef[m.Backend]
	if svc == nil {
		p.stats.MirrorsFailed.Add(1)
		return
	}
	bal, err := p.balancerFor(svc)
	if err != nil {
		p.stats.MirrorsFailed.Add(1)
		return
	}
	select {
	case p.mirrorSem <- struct{}{}:
	default:
		p.stats.MirrorsSkipped.Add(1)
		return
	}
	out := r.Clone(context.Background())
	out.RequestURI = ""
	out.Host = svc.Host
	if st.body != nil {
		out.Body = io.NopCloser(bytes.NewReader(st.body))
		out.ContentLength = int64(len(st.body))
	} else {
		out.Body = http.NoBody
	}
	h2 := useH2(svc, r)
	go func() {
		defer func() { <-p.mirrorSem }()
		h, err := bal.Pick()
		if err != nil {
			p.stats.MirrorsFailed.Add(1)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out = out.WithContext(ctx)
		out.URL.Scheme, out.URL.Host = "http", h.Addr().String()
		rt := http.RoundTripper(p.h1)
		if h2 {
			rt = p.h2
		}
		start := time.Now()
		resp, err := rt.RoundTrip(out)
		if err != nil {
			h.Done(balanceResult(0, err, time.Since(start)))
			p.stats.MirrorsFailed.Add(1)
			p.log.Debug("mirror failed", zap.Stringer("upstream", h.Addr()), zap.Error(err))
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		h.Done(balanceResult(resp.StatusCode, nil, time.Since(start)))
		p.stats.Mirrored.Add(1)
	}()
}
