package route

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// meshHTTPRoute is an HTTPRoute attached to shop/web with the given spec
// fields (after parentRefs).
func meshHTTPRoute(t testing.TB, spec string) runtime.Object {
	t.Helper()
	return httpRoute(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: v, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
`+spec)
}

func meshGRPCRoute(t testing.TB, spec string) runtime.Object {
	t.Helper()
	return grpcRoute(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: v, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: grpc}]
`+spec)
}

func errorStrings(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func TestValidateHTTPRoute(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want []string
	}{
		{"path must start with a slash",
			`  rules: [{matches: [{path: {value: /ok}}, {path: {value: api}}]}]`,
			[]string{`spec.rules[0].matches[1].path.value: Invalid value: "api": must start with "/"`}},
		{"path with consecutive slashes",
			`  rules: [{matches: [{path: {type: Exact, value: "/a//b"}}]}]`,
			[]string{`spec.rules[0].matches[0].path.value: Invalid value: "/a//b": must not contain "//"`}},
		{"path with an encoded slash",
			`  rules: [{matches: [{path: {value: "/a%2fb"}}]}]`,
			[]string{`spec.rules[0].matches[0].path.value: Invalid value: "/a%2fb": must not contain "%2f"`}},
		{"unknown path type",
			`  rules: [{matches: [{path: {type: Glob, value: "/*"}}]}]`,
			[]string{`spec.rules[0].matches[0].path.type: Unsupported value: "Glob": supported values: "Exact", "PathPrefix", "RegularExpression"`}},
		{"invalid regular expression",
			`  rules: [{matches: [{path: {type: RegularExpression, value: "/(a"}}]}]`,
			[]string{"spec.rules[0].matches[0].path.value: Invalid value: \"/(a\": must be a valid RE2 regular expression (Go regexp syntax): error parsing regexp: missing closing ): `/(a`"}},
		{"invalid header name",
			`  rules: [{matches: [{headers: [{name: "bad header", value: x}]}]}]`,
			[]string{`spec.rules[0].matches[0].headers[0].name: Invalid value: "bad header": must be a valid header name (RFC 7230 token)`}},
		{"duplicate header match",
			`  rules: [{matches: [{headers: [{name: x-a, value: "1"}, {name: x-a, value: "2"}]}]}]`,
			[]string{`spec.rules[0].matches[0].headers[1].name: Duplicate value: "x-a"`}},
		{"empty query value",
			`  rules: [{matches: [{queryParams: [{name: q, value: ""}]}]}]`,
			[]string{`spec.rules[0].matches[0].queryParams[0].value: Required value: must not be empty`}},
		{"unknown method",
			`  rules: [{matches: [{method: FETCH}]}]`,
			[]string{`spec.rules[0].matches[0].method: Unsupported value: "FETCH": supported values: "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"`}},
		{"CORS is not supported",
			`  rules: [{filters: [{type: CORS, cors: {allowOrigins: ["*"]}}]}]`,
			[]string{`spec.rules[0].filters[0].type: Invalid value: "CORS": filter type CORS is not supported by Skein`}},
		{"ExtensionRef is not supported",
			`  rules: [{filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Filter, name: f}}]}]`,
			[]string{`spec.rules[0].filters[0].type: Invalid value: "ExtensionRef": filter type ExtensionRef is not supported by Skein`}},
		{"unknown filter type",
			`  rules: [{filters: [{type: RateLimit}]}]`,
			[]string{`spec.rules[0].filters[0].type: Unsupported value: "RateLimit": supported values: "RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "RequestRedirect", "URLRewrite", "ExtensionRef", "CORS", "ExternalAuth"`}},
		{"filter member does not match the type",
			`  rules: [{filters: [{type: RequestHeaderModifier, requestRedirect: {statusCode: 301}}]}]`,
			[]string{
				`spec.rules[0].filters[0].requestRedirect: Invalid value: "": must not be set when type is "RequestHeaderModifier"`,
				`spec.rules[0].filters[0].requestHeaderModifier: Required value: must be set when type is "RequestHeaderModifier"`,
			}},
		{"repeated RequestHeaderModifier",
			`  rules: [{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: "1"}]}}, {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: b, value: "1"}]}}]}]`,
			[]string{`spec.rules[0].filters[1].type: Duplicate value: "RequestHeaderModifier": RequestHeaderModifier filter cannot be repeated (see filters[0])`}},
		{"redirect and rewrite together",
			`  rules: [{filters: [{type: RequestRedirect, requestRedirect: {hostname: a.example}}, {type: URLRewrite, urlRewrite: {hostname: b.example}}]}]`,
			[]string{`spec.rules[0].filters[1].type: Invalid value: "URLRewrite": may specify either RequestRedirect or URLRewrite, but not both (see filters[0])`}},
		{"redirect with backendRefs",
			`  rules: [{filters: [{type: RequestRedirect, requestRedirect: {hostname: a.example}}], backendRefs: [{name: web, port: 80}]}]`,
			[]string{`spec.rules[0].filters[0].type: Invalid value: "RequestRedirect": RequestRedirect filter must not be used together with backendRefs`}},
		{"ReplacePrefixMatch with an Exact match",
			`  rules: [{matches: [{path: {type: Exact, value: /a}}], filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]}]`,
			[]string{`spec.rules[0].filters[0].requestRedirect.path.replacePrefixMatch: Invalid value: "/b": ReplacePrefixMatch requires the rule to have exactly one match, of type PathPrefix`}},
		{"ReplacePrefixMatch with two matches",
			`  rules: [{matches: [{path: {value: /a}}, {path: {value: /c}}], filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]}]`,
			[]string{`spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch: Invalid value: "/b": ReplacePrefixMatch requires the rule to have exactly one match, of type PathPrefix`}},
		{"path modifier without its value",
			`  rules: [{filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replacePrefixMatch: /b}}}]}]`,
			[]string{
				`spec.rules[0].filters[0].urlRewrite.path.replaceFullPath: Required value: must be set when type is "ReplaceFullPath"`,
				`spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch: Invalid value: "/b": type must be "ReplacePrefixMatch" when replacePrefixMatch is set`,
			}},
		{"redirect status code and scheme",
			`  rules: [{filters: [{type: RequestRedirect, requestRedirect: {scheme: ftp, statusCode: 305, port: 0}}]}]`,
			[]string{
				`spec.rules[0].filters[0].requestRedirect.scheme: Unsupported value: "ftp": supported values: "http", "https"`,
				`spec.rules[0].filters[0].requestRedirect.port: Invalid value: 0: must be between 1 and 65535`,
				`spec.rules[0].filters[0].requestRedirect.statusCode: Unsupported value: 305: supported values: "301", "302", "303", "307", "308"`,
			}},
		{"redirect hostname must be precise",
			`  rules: [{filters: [{type: RequestRedirect, requestRedirect: {hostname: "*.example.com"}}]}]`,
			[]string{`spec.rules[0].filters[0].requestRedirect.hostname: Invalid value: "*.example.com": must be a lowercase RFC 1123 hostname`}},
		{"one action per header name, case-insensitive",
			`  rules: [{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-A, value: "1"}], remove: [x-a]}}]}]`,
			[]string{`spec.rules[0].filters[0].requestHeaderModifier.remove[0]: Duplicate value: "x-a": header already has an action at spec.rules[0].filters[0].requestHeaderModifier.set[0].name; only one action per header name is permitted (names are case-insensitive)`}},
		{"header value with a newline",
			`  rules: [{filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {add: [{name: x-a, value: "a\nb"}]}}]}]`,
			[]string{`spec.rules[0].filters[0].responseHeaderModifier.add[0].value: Invalid value: "a\nb": must consist of printable US-ASCII characters, optionally separated by single tabs or spaces`}},
		{"mirror percent and fraction",
			`  rules: [{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web, port: 80}, percent: 10, fraction: {numerator: 1}}}]}]`,
			[]string{`spec.rules[0].filters[0].requestMirror: Invalid value: "": only one of percent or fraction may be specified`}},
		{"mirror fraction above 1",
			`  rules: [{filters: [{type: RequestMirror, requestMirror: {backendRef: {name: web, port: 80}, fraction: {numerator: 3, denominator: 2}}}]}]`,
			[]string{`spec.rules[0].filters[0].requestMirror.fraction.numerator: Invalid value: 3: numerator must be less than or equal to denominator`}},
		{"Service backendRef without port",
			`  rules: [{backendRefs: [{name: web}]}]`,
			[]string{`spec.rules[0].backendRefs[0].port: Required value: must have port for Service reference`}},
		{"weight out of range",
			`  rules: [{backendRefs: [{name: web, port: 80, weight: 1000001}]}]`,
			[]string{`spec.rules[0].backendRefs[0].weight: Invalid value: 1000001: must be between 0 and 1000000`}},
		{"redirect in backendRefs filters is not supported",
			`  rules: [{backendRefs: [{name: web, port: 80, filters: [{type: RequestRedirect, requestRedirect: {hostname: a.example}}]}]}]`,
			[]string{`spec.rules[0].backendRefs[0].filters[0].type: Invalid value: "RequestRedirect": RequestRedirect in backendRefs[].filters is not supported by Skein`}},
		{"timeout format",
			`  rules: [{timeouts: {request: "10"}}]`,
			[]string{`spec.rules[0].timeouts.request: Invalid value: "10": must be a Gateway API duration (GEP-2257): 1 to 4 of <1-5 digits><h|m|s|ms>, e.g. 10s, 500ms, 1h30m`}},
		{"backendRequest longer than request",
			`  rules: [{timeouts: {request: 1s, backendRequest: 2s}}]`,
			[]string{`spec.rules[0].timeouts.backendRequest: Invalid value: "2s": backendRequest timeout cannot be longer than request timeout (1s)`}},
		{"retry",
			`  rules: [{retry: {codes: [302, 503, 503], attempts: 0, backoff: 1d}}]`,
			[]string{
				`spec.rules[0].retry.codes[0]: Invalid value: 302: must be between 400 and 599`,
				`spec.rules[0].retry.codes[2]: Duplicate value: 503`,
				`spec.rules[0].retry.attempts: Invalid value: 0: must be at least 1`,
				`spec.rules[0].retry.backoff: Invalid value: "1d": must be a Gateway API duration (GEP-2257): 1 to 4 of <1-5 digits><h|m|s|ms>, e.g. 10s, 500ms, 1h30m`,
			}},
		{"sessionPersistence is not supported",
			`  rules: [{sessionPersistence: {sessionName: s}}]`,
			[]string{`spec.rules[0].sessionPersistence: Invalid value: "": sessionPersistence is not supported by Skein`}},
		{"duplicate rule names",
			`  rules: [{name: a}, {name: a}]`,
			[]string{`spec.rules[1].name: Duplicate value: "a": rule names must be unique within a route`}},
		{"explicitly empty rules",
			`  rules: []`,
			[]string{`spec.rules: Required value: must have at least 1 rule; leave rules out for the default rule`}},
		{"invalid hostname",
			"  hostnames: [Web.Example.com]\n",
			[]string{`spec.hostnames[0]: Invalid value: "Web.Example.com": must be a lowercase RFC 1123 hostname, optionally prefixed with a wildcard label "*."`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, errorStrings(Validate(meshHTTPRoute(t, tt.spec))))
		})
	}
}

func TestValidateParentRefs(t *testing.T) {
	tests := []struct {
		name       string
		parentRefs string
		want       []string
	}{
		{"same parent twice",
			`[{group: "", kind: Service, name: web}, {group: "", kind: Service, name: web}]`,
			[]string{`spec.parentRefs[1]: Duplicate value: "web": references the same parent, sectionName and port as parentRefs[0]`}},
		{"same parent, port set on one only",
			`[{group: "", kind: Service, name: web, port: 80}, {group: "", kind: Service, name: web}]`,
			[]string{`spec.parentRefs[1]: Invalid value: "web": references the same parent as parentRefs[0]: sectionName or port must be specified by all of them`}},
		{"same parent, different ports",
			`[{group: "", kind: Service, name: web, port: 80}, {group: "", kind: Service, name: web, port: 8080}]`,
			nil},
		{"port out of range and bad namespace",
			`[{group: "", kind: Service, name: web, port: 70000, namespace: Shop}]`,
			[]string{
				`spec.parentRefs[0].namespace: Invalid value: "Shop": must be a lowercase RFC 1123 label`,
				`spec.parentRefs[0].port: Invalid value: 70000: must be between 1 and 65535`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			route := httpRoute(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: v, namespace: shop}
spec:
  parentRefs: `+tt.parentRefs+`
`)
			require.Equal(t, tt.want, errorStrings(Validate(route)))
		})
	}
}

func TestValidateGRPCRoute(t *testing.T) {
	tests := []struct {
		name string
		spec string
		want []string
	}{
		{"valid", `  rules: [{matches: [{method: {service: shop.v1.Cart, method: Get}, headers: [{name: x, value: "1"}]}], backendRefs: [{name: grpc, port: 9090}]}]`, nil},
		{"method match needs service or method",
			`  rules: [{matches: [{method: {type: Exact}}]}]`,
			[]string{`spec.rules[0].matches[0].method: Required value: one or both of service or method must be specified`}},
		{"exact service characters",
			`  rules: [{matches: [{method: {service: "shop/Cart"}}]}]`,
			[]string{`spec.rules[0].matches[0].method.service: Invalid value: "shop/Cart": must only contain valid characters (matching ^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$)`}},
		{"regex method",
			`  rules: [{matches: [{method: {type: RegularExpression, method: "Get["}}]}]`,
			[]string{"spec.rules[0].matches[0].method.method: Invalid value: \"Get[\": must be a valid RE2 regular expression (Go regexp syntax): error parsing regexp: missing closing ]: `[`"}},
		{"unknown method match type",
			`  rules: [{matches: [{method: {type: Prefix, service: shop}}]}]`,
			[]string{`spec.rules[0].matches[0].method.type: Unsupported value: "Prefix": supported values: "Exact", "RegularExpression"`}},
		{"ExtensionRef is not supported",
			`  rules: [{filters: [{type: ExtensionRef, extensionRef: {group: example.com, kind: Filter, name: f}}]}]`,
			[]string{`spec.rules[0].filters[0].type: Invalid value: "ExtensionRef": filter type ExtensionRef is not supported by Skein`}},
		{"URLRewrite is not a GRPCRoute filter",
			`  rules: [{filters: [{type: URLRewrite}]}]`,
			[]string{`spec.rules[0].filters[0].type: Unsupported value: "URLRewrite": supported values: "RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, errorStrings(Validate(meshGRPCRoute(t, tt.spec))))
		})
	}
}

func TestValidateScope(t *testing.T) {
	t.Run("a valid route has no errors", func(t *testing.T) {
		require.Nil(t, Validate(meshHTTPRoute(t, `
  rules:
  - name: all
    matches: [{path: {type: PathPrefix, value: /api}, method: GET, headers: [{name: x, type: RegularExpression, value: "v[0-9]"}], queryParams: [{name: q, value: "1"}]}]
    filters:
    - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: "1"}], add: [{name: b, value: "2"}], remove: [c]}}
    - {type: ResponseHeaderModifier, responseHeaderModifier: {set: [{name: a, value: "1"}]}}
    - {type: URLRewrite, urlRewrite: {hostname: api.internal, path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: web-v2, port: 80}, percent: 10}}
    backendRefs: [{name: web, port: 80, weight: 9}, {name: web-v2, port: 80, weight: 1}]
    timeouts: {request: 10s, backendRequest: 2s}
    retry: {codes: [500, 502, 503, 504], attempts: 2, backoff: 100ms}
`)))
	})
	t.Run("routes attached only to Gateways get schema checks only", func(t *testing.T) {
		route := httpRoute(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: v, namespace: shop}
spec:
  parentRefs: [{name: gw}]
  rules: [{filters: [{type: CORS, cors: {allowOrigins: ["*"]}}], sessionPersistence: {sessionName: s}}]
`)
		require.Nil(t, Validate(route), "CORS and sessionPersistence are another implementation's business")
		route.Spec.Rules[0].Filters[0].Type = "Bogus"
		require.Equal(t, []string{`spec.rules[0].filters[0].type: Unsupported value: "Bogus": supported values: "RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "RequestRedirect", "URLRewrite", "ExtensionRef", "CORS", "ExternalAuth"`},
			errorStrings(Validate(route)))
	})
	t.Run("at most 128 matches in all rules", func(t *testing.T) {
		matches := "["
		for i := range 43 {
			if i > 0 {
				matches += ", "
			}
			matches += "{path: {value: /m}}"
		}
		matches += "]"
		spec := "  rules: [{matches: " + matches + "}, {matches: " + matches + "}, {matches: " + matches + "}]"
		require.Equal(t, []string{`spec.rules: Invalid value: 129: the total number of matches across all rules of a route must be at most 128`},
			errorStrings(Validate(meshHTTPRoute(t, spec))))
		spec = "  rules: [{matches: " + matches + "}, {matches: " + matches + "}, {}]"
		require.Nil(t, Validate(meshHTTPRoute(t, spec)), "43+43+1 (the default match) is fine")
	})
	t.Run("other objects", func(t *testing.T) {
		require.Nil(t, Validate(&corev1.Service{}))
	})
}
