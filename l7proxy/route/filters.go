package route

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Header is a header name and value of a [HeaderModifier]. Name is in
// canonical form (net/textproto.CanonicalMIMEHeaderKey).
type Header struct {
	Name  string
	Value string
}

// HeaderModifier is a compiled RequestHeaderModifier or
// ResponseHeaderModifier filter (HTTPHeaderFilter). Names are canonical, so
// matching request headers is case-insensitive as the spec requires. The
// compiler guarantees that a name appears in at most one of Set, Add and
// Remove ("Only one action for a given header name is permitted").
type HeaderModifier struct {
	// Set overwrites the header with the given value.
	Set []Header
	// Add appends the value to the header's existing value.
	Add []Header
	// Remove deletes the headers.
	Remove []string
}

// Apply modifies h: it sets, adds and removes headers. Add appends to an
// existing value with a comma, as the spec's example shows ("my-header:
// foo,bar,baz"), except for Set-Cookie, whose values cannot be joined and
// are appended as another field line. Apply does not touch the Host of a
// request, which net/http keeps outside the header map: use
// [HeaderModifier.ApplyToRequest] for requests.
func (m *HeaderModifier) Apply(h http.Header) {
	for _, s := range m.Set {
		h[s.Name] = []string{s.Value}
	}
	for _, a := range m.Add {
		old := h[a.Name]
		switch {
		case len(old) == 0:
			h[a.Name] = []string{a.Value}
		case a.Name == "Set-Cookie":
			h[a.Name] = append(old, a.Value)
		default:
			h[a.Name] = []string{strings.Join(old, ",") + "," + a.Value}
		}
	}
	for _, name := range m.Remove {
		delete(h, name)
	}
}

// ApplyToRequest modifies the headers of req like [HeaderModifier.Apply],
// and also applies set and add of "Host" to req.Host, which is where
// net/http keeps the request's Host header. Removing Host is ignored: a
// request cannot go without one.
func (m *HeaderModifier) ApplyToRequest(req *http.Request) {
	m.Apply(req.Header)
	if v, ok := req.Header["Host"]; ok {
		delete(req.Header, "Host")
		if len(v) > 0 {
			req.Host = v[len(v)-1]
		}
	}
}

// PathModifierType says how a [PathModifier] changes a path.
type PathModifierType string

// Path modifier types (HTTPPathModifierType).
const (
	// ReplaceFullPath replaces the whole path with Value.
	ReplaceFullPath PathModifierType = "ReplaceFullPath"
	// ReplacePrefixMatch replaces the matched path prefix with Value,
	// element-wise like the PathPrefix match.
	ReplacePrefixMatch PathModifierType = "ReplacePrefixMatch"
)

// PathModifier is a compiled HTTPPathModifier.
type PathModifier struct {
	Type PathModifierType
	// Value is the replacement path (ReplaceFullPath) or prefix
	// (ReplacePrefixMatch), in escaped (URL) form.
	Value string
}

// apply returns the escaped path that replaces escapedPath.
func (p *PathModifier) apply(escapedPath, matchedPrefix string) string {
	if p.Type == ReplaceFullPath {
		if p.Value == "" || p.Value[0] != '/' {
			return "/" + p.Value
		}
		return p.Value
	}
	return replacePrefix(escapedPath, matchedPrefix, p.Value)
}

// replacePrefix implements ReplacePrefixMatch. The spec's table
// (HTTPPathModifier.ReplacePrefixMatch) is the reference:
//
//	Request Path | Prefix Match | Replace Prefix | Modified Path
//	/foo/bar     | /foo         | /xyz           | /xyz/bar
//	/foo/bar     | /foo         | /xyz/          | /xyz/bar
//	/foo/bar     | /foo/        | /xyz           | /xyz/bar
//	/foo/bar     | /foo/        | /xyz/          | /xyz/bar
//	/foo         | /foo         | /xyz           | /xyz
//	/foo/        | /foo         | /xyz           | /xyz/
//	/foo/bar     | /foo         | <empty string> | /bar
//	/foo/        | /foo         | <empty string> | /
//	/foo         | /foo         | <empty string> | /
//	/foo/        | /foo         | /              | /
//	/foo         | /foo         | /              | /
//
// The prefix and the replacement lose any trailing slash, the rest of the
// path (empty or starting with "/") is appended, and an empty result is
// "/". For the root prefix "/", a request for "/" itself is the prefix
// exactly, so it becomes the replacement ("/" -> "/xyz"), like "/foo" above.
func replacePrefix(path, prefix, repl string) string {
	prefix = strings.TrimSuffix(prefix, "/")
	repl = strings.TrimSuffix(repl, "/")
	if !hasPathPrefix(path, prefix) {
		// The rule did not match by this prefix (the caller passed
		// something else): leave the path alone rather than mangle it.
		return path
	}
	rest := path[len(prefix):]
	if prefix == "" && rest == "/" {
		rest = ""
	}
	out := repl + rest
	if out == "" {
		return "/"
	}
	if out[0] != '/' {
		out = "/" + out
	}
	return out
}

// hasPathPrefix reports whether prefix (without trailing slash; "" for the
// root) is an element-wise prefix of path.
func hasPathPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// Redirect is a compiled RequestRedirect filter (HTTPRequestRedirectFilter).
type Redirect struct {
	// Scheme is "http" or "https"; empty keeps the request's scheme.
	Scheme string
	// Hostname replaces the request's host; empty keeps it.
	Hostname string
	// Path modifies the path; nil keeps the request path.
	Path *PathModifier
	// Port is the redirect port; 0 derives it as the spec says (see
	// [Redirect.Location]).
	Port uint16
	// StatusCode is 301, 302, 303, 307 or 308 (default 302).
	StatusCode int
}

// Location returns the Location header and the status code of the redirect
// for req. matchedPrefix is [Result.MatchedPrefix].
//
// The port follows HTTPRequestRedirectFilter.Port: the filter's port if
// set; else the well-known port of the filter's scheme if set (http 80,
// https 443); else the listener port, which for a Service parent is the
// Service port the client dialed, taken from the request's Host header (a
// client names a non-default port there) and otherwise the default port of
// the request's scheme. The port is left out for http on 80 and https on
// 443 ("Implementations SHOULD NOT add the port number in the 'Location'
// header in the following cases"). The query string is kept.
func (r *Redirect) Location(req *http.Request, matchedPrefix string) (location string, code int) {
	reqScheme := requestScheme(req)
	host, reqPort := splitHostPort(req.Host)
	scheme := reqScheme
	if r.Scheme != "" {
		scheme = r.Scheme
	}
	if r.Hostname != "" {
		host = r.Hostname
	}
	var port int
	switch {
	case r.Port != 0:
		port = int(r.Port)
	case r.Scheme != "":
		port = wellKnownPort(r.Scheme)
	case reqPort != "":
		port, _ = strconv.Atoi(reqPort)
	default:
		port = wellKnownPort(reqScheme)
	}
	path := requestPath(req)
	if r.Path != nil {
		path = r.Path.apply(path, matchedPrefix)
	}

	var b strings.Builder
	b.Grow(len(scheme) + len(host) + len(path) + len(req.URL.RawQuery) + 16)
	b.WriteString(scheme)
	b.WriteString("://")
	if strings.IndexByte(host, ':') >= 0 { // IPv6 literal
		b.WriteByte('[')
		b.WriteString(host)
		b.WriteByte(']')
	} else {
		b.WriteString(host)
	}
	if port != 0 && port != wellKnownPort(scheme) {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(port))
	}
	b.WriteString(path)
	if req.URL.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(req.URL.RawQuery)
	}
	code = r.StatusCode
	if code == 0 {
		code = http.StatusFound
	}
	return b.String(), code
}

// Rewrite is a compiled URLRewrite filter (HTTPURLRewriteFilter).
type Rewrite struct {
	// Hostname replaces the request's Host; empty keeps it.
	Hostname string
	// Path modifies the path; nil keeps it.
	Path *PathModifier
}

// Apply rewrites req in place: its Host (req.Host) and its URL path
// (Path and RawPath consistently; the query is kept). matchedPrefix is
// [Result.MatchedPrefix].
func (r *Rewrite) Apply(req *http.Request, matchedPrefix string) {
	if r.Hostname != "" {
		req.Host = r.Hostname
	}
	if r.Path == nil {
		return
	}
	escaped := r.Path.apply(requestPath(req), matchedPrefix)
	setEscapedPath(req.URL, escaped)
}

// setEscapedPath sets u's path from its escaped form.
func setEscapedPath(u *url.URL, escaped string) {
	p, err := url.PathUnescape(escaped)
	if err != nil {
		// Not reachable with validated replacement values and a parsed
		// request path; keep the bytes as they are.
		p = escaped
	}
	u.Path = p
	u.RawPath = ""
	if u.EscapedPath() != escaped {
		u.RawPath = escaped
	}
}

// requestPath returns the request's path in escaped form, "/" if empty.
// Matching uses the escaped form: the spec's path values are escaped
// ("[%][0-9a-fA-F]{2}" is allowed, "%2f" is not), and an encoded slash in
// a request must not split a path element.
func requestPath(req *http.Request) string {
	p := req.URL.EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}

func requestScheme(req *http.Request) string {
	switch {
	case req.URL.Scheme != "":
		return req.URL.Scheme
	case req.TLS != nil:
		return "https"
	}
	return "http"
}

func wellKnownPort(scheme string) int {
	switch scheme {
	case "http":
		return 80
	case "https":
		return 443
	}
	return 0
}

// splitHostPort splits a Host header value into host and port, keeping the
// whole value as host when there is no port. IPv6 brackets are removed.
func splitHostPort(hostport string) (host, port string) {
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		return h, p
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]"), ""
}
