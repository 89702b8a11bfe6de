package k8s

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
)

// Forwarder forwards TCP connections from a listener inside a network
// namespace to an address outside it.
type Forwarder struct {
	ln     net.Listener
	target string
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	// accepted counts connections ever accepted; open those still open.
	accepted, open atomic.Int64
}

// ForwardIntoNetns listens on addr (e.g. 127.0.0.1:6443) inside the
// network namespace at nsPath and forwards each connection to target,
// dialed from the caller's namespace. So a lab node, whose namespace has no
// route out by design, reaches the API server on the machine's loopback,
// and nothing is added to either namespace's routing. The listening socket
// belongs to the namespace it was created in; only the creating thread
// switches namespaces, and it switches back before anything else runs on it.
func ForwardIntoNetns(nsPath, addr, target string) (*Forwarder, error) {
	ln, err := listenIn(nsPath, addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Forwarder{ln: ln, target: target, cancel: cancel}
	f.wg.Add(1)
	go f.serve(ctx)
	return f, nil
}

func listenIn(nsPath, addr string) (net.Listener, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("get current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter netns %s: %w", nsPath, err)
	}
	ln, lerr := net.Listen("tcp", addr)
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the other namespace: keep it locked so
		// the runtime discards it when this goroutine ends.
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("return from netns %s: %w", nsPath, err)
	}
	runtime.UnlockOSThread()
	if lerr != nil {
		return nil, fmt.Errorf("listen on %s in netns %s: %w", addr, nsPath, lerr)
	}
	return ln, nil
}

func (f *Forwarder) serve(ctx context.Context) {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.accepted.Add(1)
		f.open.Add(1)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.open.Add(-1)
			f.pipe(ctx, c)
		}()
	}
}

func (f *Forwarder) pipe(ctx context.Context, c net.Conn) {
	defer c.Close()
	d := net.Dialer{Timeout: 5 * time.Second}
	up, err := d.DialContext(ctx, "tcp", f.target)
	if err != nil {
		return // the client sees the connection close, as with a refused dial
	}
	defer up.Close()
	stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
}

// Accepted returns how many connections the forwarder has accepted, and
// how many of them are still open: a client that reconnects after the
// target restarted shows up as new accepted connections.
func (f *Forwarder) Accepted() (total, open int64) { return f.accepted.Load(), f.open.Load() }

// Addr returns the listening address inside the namespace.
func (f *Forwarder) Addr() net.Addr { return f.ln.Addr() }

// Close stops listening, closes every forwarded connection and waits for
// them. It is idempotent.
func (f *Forwarder) Close() error {
	var err error
	f.once.Do(func() {
		err = f.ln.Close()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		f.cancel()
		f.wg.Wait()
	})
	return err
}
