package route

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	"sigs.k8s.io/yaml"
)

// services is a fake ServiceLookup: "namespace/name" -> ports.
type services map[string][]uint16

func (s services) ServicePorts(namespace, name string) ([]uint16, bool) {
	p, ok := s[namespace+"/"+name]
	return p, ok
}

var _ ServiceLookup = services(nil)

// namedServices also resolves port names: "namespace/name/portName" -> port.
type namedServices struct {
	services
	names map[string]uint16
}

func (s namedServices) ServicePortByName(namespace, name, portName string) (uint16, bool) {
	p, ok := s.names[namespace+"/"+name+"/"+portName]
	return p, ok
}

var _ PortNameLookup = namedServices{}

// grantServices also answers ReferenceGrant questions: allowed holds
// "fromNamespace->toNamespace/toName".
type grantServices struct {
	services
	allowed map[string]bool
}

func (s grantServices) BackendRefAllowed(fromKind, fromNamespace, toNamespace, toName string) bool {
	return s.allowed[fromNamespace+"->"+toNamespace+"/"+toName]
}

var _ ReferenceGrantLookup = grantServices{}

// defaultServices is the cluster most tests use.
func defaultServices() services {
	return services{
		"shop/web":     {80, 8080},
		"shop/web-v2":  {80},
		"shop/api":     {80},
		"shop/api-v2":  {80},
		"shop/grpc":    {9090},
		"shop/grpc-v2": {9090},
		"other/web":    {80},
		"client/web":   {80},
	}
}

// httpRoute decodes an HTTPRoute manifest, strictly: a typo in a test
// fixture fails the test instead of being ignored.
func httpRoute(t testing.TB, manifest string) *gatewayv1.HTTPRoute {
	t.Helper()
	var r gatewayv1.HTTPRoute
	require.NoError(t, yaml.UnmarshalStrict([]byte(dedent(manifest)), &r))
	return &r
}

func grpcRoute(t testing.TB, manifest string) *gatewayv1.GRPCRoute {
	t.Helper()
	var r gatewayv1.GRPCRoute
	require.NoError(t, yaml.UnmarshalStrict([]byte(dedent(manifest)), &r))
	return &r
}

// dedent removes the indentation of a raw-string manifest (tabs, as gofmt
// indents the test source).
func dedent(s string) string {
	lines := strings.Split(strings.TrimPrefix(s, "\n"), "\n")
	indent := -1
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		n := len(l) - len(strings.TrimLeft(l, "\t"))
		if indent < 0 || n < indent {
			indent = n
		}
	}
	for i, l := range lines {
		if len(l) >= indent && indent > 0 {
			lines[i] = l[indent:]
		}
		lines[i] = strings.ReplaceAll(lines[i], "\t", "  ")
	}
	return strings.Join(lines, "\n")
}

// req builds a request; headers are "Name: value" strings.
func req(method, target string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, target, nil)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		r.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return r
}

// outcome summarizes a Match result for table tests: "ns/name#rule",
// "404" (routes attached, none matched) or "none" (no route attached).
func outcome(res Result) string {
	switch {
	case !res.Attached:
		return "none"
	case res.Rule == nil:
		return "404"
	}
	return fmt.Sprintf("%s/%s#%d", res.Rule.Route.Namespace, res.Rule.Route.Name, res.Rule.Route.RuleIndex)
}

// mustCompile compiles and requires every route with a Service parent to
// be accepted on every parent, so that a test about matching cannot pass
// because a fixture was silently rejected.
func mustCompile(t testing.TB, svcs ServiceLookup, hr []*gatewayv1.HTTPRoute, gr []*gatewayv1.GRPCRoute) *Table {
	t.Helper()
	tbl, sts := Compile(hr, gr, svcs)
	for _, st := range sts {
		for _, p := range st.Parents {
			c := p.Condition(gatewayv1.RouteConditionAccepted)
			require.NotNil(t, c, "%s has no Accepted condition", st.Route)
			require.Equal(t, "True", string(c.Status), "%s not accepted: %s: %s", st.Route, c.Reason, c.Message)
		}
	}
	return tbl
}

var shopWeb = ServiceRef{Namespace: "shop", Name: "web", Port: 80}
