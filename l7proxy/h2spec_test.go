package l7proxy

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// everyConnCaptured resolves every connection to one origin, for clients
// (h2spec) whose source ports the test does not choose.
type everyConnCaptured struct{ origin Origin }

func (e everyConnCaptured) Resolve(netip.AddrPort, netip.AddrPort) (Origin, error) {
	return e.origin, nil
}

// h2specKnownFailures are the h2spec cases the proxy fails because Go's
// HTTP/2 server (net/http's bundled x/net/http2) deviates from RFC 7540 /
// RFC 9113 there, each with the reason. Anything else must pass.
var h2specKnownFailures = map[string]string{
	"http2/3.5 Sends invalid connection preface": "bytes that are neither an HTTP/2 preface nor an HTTP/1 request are " +
		"opaque TCP to the proxy's protocol detection (by design: unknown protocols pass through), so they reach the " +
		"app, which answers; net/http on a port serving HTTP/1.1 and h2c also answers such bytes as HTTP/1.1",
	"http2/4.2 Sends a large size HEADERS frame that exceeds the SETTINGS_MAX_FRAME_SIZE": "the proxy reads frames " +
		"up to 1 MiB (HTTP2Config.MaxReadFrameSize) and the frame h2spec sends is within that; request headers stay " +
		"bounded by MaxHeaderBytes",
	"http2/6.5.3 Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE": "x/net/http2 refuses a SETTINGS frame that " +
		"repeats a parameter with a PROTOCOL_ERROR (a deliberate hardening against settings floods)",
	"http2/8.1.2.2 Sends a HEADERS frame that contains the connection-specific header field": "net/http answers " +
		"400 \"request header \\\"Connection\\\" is not valid in HTTP/2\" instead of a stream error; nothing reaches the upstream",
	"http2/8.1.2.2 Sends a HEADERS frame that contains the TE header field with any value other than \"trailers\"": "net/http " +
		"answers 400 \"request header \\\"TE\\\" may only be \\\"trailers\\\" in HTTP/2\" instead of a stream error; nothing reaches the upstream",
}

type junitSuites struct {
	Suites []struct {
		Name  string `xml:"name,attr"`
		Cases []struct {
			Package   string    `xml:"package,attr"`
			ClassName string    `xml:"classname,attr"`
			Name      string    `xml:"name,attr"`
			Failure   *struct{} `xml:"failure"`
			Error     *struct{} `xml:"error"`
			Skipped   *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestH2Spec runs h2spec (github.com/summerwind/h2spec, built by
// scripts/h2spec.sh into a cache outside the repository) against the
// proxy's HTTP/2 prior-knowledge path: a captured connection whose
// protocol is detected, in front of an h2c upstream.
func TestH2Spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec: -short")
	}
	out, err := exec.Command("../scripts/h2spec.sh").Output()
	require.NoError(t, err, "build h2spec with scripts/h2spec.sh")
	bin := strings.TrimSpace(string(out))

	upstream := startHostileServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
	p, err := New(Config{}, everyConnCaptured{Origin{Dst: hostileVIP, Source: quietPod}}, zap.NewNop())
	require.NoError(t, err)
	p.Update(&Table{Services: map[netip.AddrPort]*Service{hostileVIP: {
		Namespace: "shop", Name: "web", Port: 80, Endpoints: []*Endpoint{{Addr: upstream}},
	}}})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx)
		<-done
	})

	report := filepath.Join(t.TempDir(), "h2spec.xml")
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-o", "3", "-j", report)
	log, _ := cmd.CombinedOutput() // h2spec exits 1 when a case fails: the report decides
	require.NoError(t, ctx.Err(), "h2spec did not finish: %s", log)
	raw, err := os.ReadFile(report)
	require.NoError(t, err, "h2spec wrote no report: %s", log)
	var rep junitSuites
	require.NoError(t, xml.Unmarshal(raw, &rep))

	sections := map[string][2]int{} // section -> passed, failed
	var unexpected, expected []string
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			id := c.Package
			section := strings.Fields(id + " ?")[0]
			n := sections[section]
			if c.Failure == nil && c.Error == nil {
				n[0]++
				sections[section] = n
				continue
			}
			n[1]++
			sections[section] = n
			key := id + " " + c.ClassName
			if why, ok := h2specKnownFailures[key]; ok {
				expected = append(expected, key+": "+why)
			} else {
				unexpected = append(unexpected, key+" / "+c.Name)
			}
		}
	}
	names := make([]string, 0, len(sections))
	for s := range sections {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		t.Logf("h2spec %-28s passed %3d failed %d", s, sections[s][0], sections[s][1])
	}
	for _, e := range expected {
		t.Logf("known deviation: %s", e)
	}
	require.NotEmpty(t, sections, "h2spec ran no case: %s", log)
	if len(unexpected) > 0 {
		t.Logf("h2spec output:\n%s", log)
	}
	require.Empty(t, unexpected, "h2spec cases that failed:\n%s", strings.Join(unexpected, "\n"))
}
