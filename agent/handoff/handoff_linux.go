//go:build linux

package handoff

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// protocolVersion is spoken in the greeting; a mismatch is refused, so an
// incompatible upgrade falls back to fresh listeners.
const protocolVersion = "skein-handoff/1"

// ErrNoPeer says that no agent answered on the handoff socket.
var ErrNoPeer = errors.New("no running agent to take listeners from")

// header is sent before the descriptors.
type header struct {
	Version string   `json:"version"`
	Names   []string `json:"names"`
	PID     int      `json:"pid"`
}

// Offer is a running agent's side: it serves its listeners to a successor.
type Offer struct {
	path  string
	ln    *net.UnixListener
	files map[string]*os.File
}

// NewOffer listens on path and will hand over the given listeners (their
// descriptors are duplicated; the caller keeps its listeners). A stale
// socket left by a dead agent is replaced; a live agent's socket is not,
// unless takeover says that this agent just took that agent's listeners.
func NewOffer(path string, listeners map[string]net.Listener, takeover bool) (*Offer, error) {
	files := map[string]*os.File{}
	for name, l := range listeners {
		fl, ok := l.(interface{ File() (*os.File, error) })
		if !ok {
			closeFiles(files)
			return nil, fmt.Errorf("handoff: listener %s has no file descriptor", name)
		}
		f, err := fl.File()
		if err != nil {
			closeFiles(files)
			return nil, fmt.Errorf("handoff: duplicate listener %s: %w", name, err)
		}
		files[name] = f
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		closeFiles(files)
		return nil, err
	}
	if !takeover {
		if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
			c.Close()
			closeFiles(files)
			return nil, fmt.Errorf("handoff: another agent serves %s", path)
		}
	}
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		closeFiles(files)
		return nil, fmt.Errorf("handoff: listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false) // the successor takes the path over
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		closeFiles(files)
		return nil, err
	}
	return &Offer{path: path, ln: ln, files: files}, nil
}

func closeFiles(files map[string]*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// Wait serves the socket until a successor has taken the listeners and
// acknowledged that it accepts on them (then it returns nil), or until ctx
// ends (then ctx's error). A successor that fails midway is forgotten and
// the next one is served.
func (o *Offer) Wait(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		o.ln.Close()
	}()
	for {
		c, err := o.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("handoff: accept: %w", err)
		}
		err = o.serve(c)
		c.Close()
		if err == nil {
			// Done: the successor owns the path now. Stop listening at
			// once so that a later successor reaches the new agent.
			o.ln.Close()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (o *Offer) serve(c *net.UnixConn) error {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(greeting) != protocolVersion {
		fmt.Fprintf(c, "ERR version %s wanted\n", protocolVersion)
		return fmt.Errorf("handoff: successor speaks %q", strings.TrimSpace(greeting))
	}
	names := make([]string, 0, len(o.files))
	for n := range o.files {
		names = append(names, n)
	}
	sort.Strings(names)
	fds := make([]int, len(names))
	for i, n := range names {
		fds[i] = int(o.files[n].Fd())
	}
	h, _ := json.Marshal(header{Version: protocolVersion, Names: names, PID: os.Getpid()})
	if _, _, err := c.WriteMsgUnix(append(h, '\n'), unix.UnixRights(fds...), nil); err != nil {
		return fmt.Errorf("handoff: send descriptors: %w", err)
	}
	ack, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("handoff: wait for the successor: %w", err)
	}
	if strings.TrimSpace(ack) != "READY" {
		return fmt.Errorf("handoff: successor said %q", strings.TrimSpace(ack))
	}
	return nil
}

// Close stops offering and releases the duplicated descriptors. The socket
// path is left for a successor's Offer to replace.
func (o *Offer) Close() error {
	err := o.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	closeFiles(o.files)
	return err
}

// Taken is what a successor got: the listeners by name, and Ack to tell the
// old agent it accepts on them now.
type Taken struct {
	Listeners map[string]net.Listener
	// PID is the old agent's process id.
	PID  int
	conn *net.UnixConn
}

// Ack tells the old agent to stop accepting and drain.
func (t *Taken) Ack() error {
	defer t.conn.Close()
	_ = t.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := t.conn.Write([]byte("READY\n"))
	return err
}

// Abort closes the connection without acknowledging: the old agent keeps
// serving.
func (t *Taken) Abort() {
	t.conn.Close()
	for _, l := range t.Listeners {
		l.Close()
	}
}

// Take asks the agent serving path for its listeners. It returns ErrNoPeer
// when none answers.
func Take(ctx context.Context, path string) (*Taken, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, ErrNoPeer
		}
		return nil, fmt.Errorf("handoff: connect to %s: %w", path, err)
	}
	uc := conn.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		_ = uc.SetDeadline(dl)
	} else {
		_ = uc.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if _, err := fmt.Fprintln(uc, protocolVersion); err != nil {
		uc.Close()
		return nil, err
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(64*4))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("handoff: receive descriptors: %w", err)
	}
	var h header
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	if err := json.Unmarshal([]byte(line), &h); err != nil || h.Version != protocolVersion {
		uc.Close()
		return nil, fmt.Errorf("handoff: the running agent answered %q", line)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		uc.Close()
		return nil, fmt.Errorf("handoff: no descriptors received")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != len(h.Names) {
		uc.Close()
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("handoff: %d descriptors for %d names", len(fds), len(h.Names))
	}
	_ = uc.SetDeadline(time.Time{})
	t := &Taken{Listeners: map[string]net.Listener{}, PID: h.PID, conn: uc}
	for i, name := range h.Names {
		f := os.NewFile(uintptr(fds[i]), name)
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Abort()
			return nil, fmt.Errorf("handoff: listener %s: %w", name, err)
		}
		t.Listeners[name] = l
	}
	return t, nil
}
