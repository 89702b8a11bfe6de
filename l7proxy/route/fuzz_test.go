package route

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http/httpguts"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// FuzzCompileHTTPRoute compiles arbitrary HTTPRoutes. Invariants: nothing
// panics; every validation error names a field of the spec and says why;
// every condition that is not true has a reason and a message; compiling
// is deterministic; a compiled table matches requests without panicking,
// and only to rules of this route. Seeds are in testdata/fuzz.
func FuzzCompileHTTPRoute(f *testing.F) {
	f.Add([]byte(`{"metadata":{"name":"r","namespace":"shop"},"spec":{"parentRefs":[{"group":"","kind":"Service","name":"web","port":80}],` +
		`"rules":[{"matches":[{"path":{"type":"PathPrefix","value":"/api"},"headers":[{"name":"x-v","value":"2"}]}],` +
		`"filters":[{"type":"URLRewrite","urlRewrite":{"path":{"type":"ReplacePrefixMatch","replacePrefixMatch":"/v2"}}}],` +
		`"backendRefs":[{"name":"web-v2","port":80,"weight":1}],"timeouts":{"request":"2s"}}]}}`))
	f.Add([]byte("metadata: {name: r, namespace: shop}\nspec:\n  parentRefs: [{kind: Service, group: '', name: web}]\n  rules:\n  - matches: [{path: {type: RegularExpression, value: '/a(b'}}]\n    backendRefs: [{name: nope, port: 81}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 16<<10 {
			return
		}
		var r gatewayv1.HTTPRoute
		if err := yaml.Unmarshal(data, &r); err != nil {
			return
		}
		if r.Namespace == "" {
			r.Namespace = "shop"
		}
		for _, e := range Validate(&r) {
			require.True(t, strings.HasPrefix(e.Field, "spec."), "error names a field of the spec: %v", e)
			require.NotEmpty(t, e.Detail+fmt.Sprint(e.BadValue), "error says why: %v", e)
		}
		tbl, st := Compile([]*gatewayv1.HTTPRoute{&r}, nil, defaultServices())
		_, st2 := Compile([]*gatewayv1.HTTPRoute{r.DeepCopy()}, nil, defaultServices())
		require.True(t, reflect.DeepEqual(st, st2), "compiling twice gives the same status")
		for _, s := range st {
			for _, p := range s.Parents {
				for _, c := range p.Conditions {
					if c.Status != "True" {
						require.NotEmpty(t, c.Reason, "condition %s", c.Type)
						require.NotEmpty(t, c.Message, "condition %s", c.Type)
					}
				}
			}
		}
		for _, svc := range []ServiceRef{{"shop", "web", 80}, {"shop", "web", 8080}, {"shop", "api", 80}} {
			for _, target := range []string{"/", "/api/x?y=1", "/a%2Fb"} {
				req, err := http.NewRequest(http.MethodGet, "http://web.shop"+target, nil)
				require.NoError(t, err)
				req.Header.Set("X-V", "2")
				res := tbl.Match(svc, "shop", req)
				if res.Rule != nil {
					require.Equal(t, r.Name, res.Rule.Route.Name)
				}
			}
		}
	})
}

// FuzzHeaderFilter sends arbitrary header names and values through a
// RequestHeaderModifier filter. A filter that validation accepts sets,
// adds and removes exactly what it says, and what it writes is a header
// that net/http sends as written: one field line, no injected field.
func FuzzHeaderFilter(f *testing.F) {
	f.Add("X-Tenant", "blue", "X-Remove", uint8(0))
	f.Add("x-tenant", "a b", "Host", uint8(1))
	f.Add("X-A", "v\r\nX-Injected: 1", "", uint8(0))
	f.Add("Set-Cookie", "a=b", "x", uint8(1))
	f.Fuzz(func(t *testing.T, name, value, remove string, op uint8) {
		action := "set"
		if op%2 == 1 {
			action = "add"
		}
		filter := map[string]any{action: []map[string]string{{"name": name, "value": value}}}
		if remove != "" {
			filter["remove"] = []string{remove}
		}
		doc, err := json.Marshal(map[string]any{
			"metadata": map[string]string{"name": "r", "namespace": "shop"},
			"spec": map[string]any{
				"parentRefs": []map[string]any{{"group": "", "kind": "Service", "name": "web", "port": 80}},
				"rules": []map[string]any{{
					"filters":     []map[string]any{{"type": "RequestHeaderModifier", "requestHeaderModifier": filter}},
					"backendRefs": []map[string]any{{"name": "web", "port": 80}},
				}},
			},
		})
		require.NoError(t, err)
		var r gatewayv1.HTTPRoute
		require.NoError(t, json.Unmarshal(doc, &r))
		if len(Validate(&r)) > 0 {
			return
		}
		require.True(t, httpguts.ValidHeaderFieldName(name), "validation accepted header name %q", name)
		require.True(t, httpguts.ValidHeaderFieldValue(value), "validation accepted header value %q", value)
		tbl, _ := Compile([]*gatewayv1.HTTPRoute{&r}, nil, defaultServices())
		req, err := http.NewRequest(http.MethodGet, "http://web.shop/", nil)
		require.NoError(t, err)
		req.Header.Set("X-Existing", "1")
		res := tbl.Match(ServiceRef{"shop", "web", 80}, "shop", req)
		require.NotNil(t, res.Rule, "a valid route matches")
		require.NotNil(t, res.Rule.RequestHeaders)
		res.Rule.RequestHeaders.ApplyToRequest(req)

		canon := http.CanonicalHeaderKey(name)
		switch {
		case canon == "Host":
			require.Equal(t, value, req.Host)
		case strings.EqualFold(remove, name):
			// The compiler refuses two actions on one name; nothing to check.
		case action == "set":
			require.Equal(t, []string{value}, req.Header.Values(canon))
		default:
			vs := req.Header.Values(canon)
			require.NotEmpty(t, vs)
			require.True(t, strings.HasSuffix(vs[len(vs)-1], value), "added %q: %q", value, vs)
		}
		if remove != "" && !strings.EqualFold(remove, name) && http.CanonicalHeaderKey(remove) != "Host" {
			require.Empty(t, req.Header.Values(remove), "removed %q", remove)
		}
		// What net/http writes reads back as the same fields.
		var buf bytes.Buffer
		require.NoError(t, req.Header.Write(&buf))
		buf.WriteString("\r\n")
		back, err := textproto.NewReader(bufio.NewReader(&buf)).ReadMIMEHeader()
		require.NoError(t, err)
		require.Equal(t, len(req.Header), len(back), "fields written %q", buf.String())
	})
}

// FuzzParseDuration: a Gateway API duration either fails with
// ErrInvalidDuration naming the input, or is what time.ParseDuration says,
// and written back in GEP-2257 form it parses to the same duration.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"10s", "500ms", "1h30m", "1h2h20m10m", "99999h", "0s", "1.5s", "-1s", "100000s", "1h1m1s1ms1ms", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			require.True(t, errors.Is(err, ErrInvalidDuration))
			require.Contains(t, err.Error(), fmt.Sprintf("%q", s))
			return
		}
		std, err := time.ParseDuration(s)
		require.NoError(t, err)
		require.Equal(t, std, d)
		require.GreaterOrEqual(t, d, time.Duration(0))
		var parts []string
		rest := d
		for _, u := range []struct {
			unit time.Duration
			name string
		}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}} {
			if n := rest / u.unit; n > 0 || (u.name == "ms" && len(parts) == 0) {
				if n > 99999 {
					return // no GEP-2257 form for it; fine
				}
				parts = append(parts, fmt.Sprintf("%d%s", n, u.name))
				rest -= n * u.unit
			}
		}
		require.Zero(t, rest, "sub-millisecond part of %q", s)
		again, err := ParseDuration(strings.Join(parts, ""))
		require.NoError(t, err, "%q written as %q", s, strings.Join(parts, ""))
		require.Equal(t, d, again)
	})
}
