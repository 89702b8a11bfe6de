package route

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// Validate checks one HTTPRoute or GRPCRoute the way [Compile] does and
// returns field errors naming the exact field, for example
//
//	spec.rules[0].matches[1].path.value: Invalid value: "api": must start with "/"
//
// It applies the Gateway API schema and its CEL rules (the checks the API
// server makes, which standalone mode has to make itself) and, for routes
// with at least one Service parentRef, Skein's own limits: features Skein
// does not implement are rejected with "not supported by Skein", never
// ignored. Routes attached only to Gateways are not Skein's and get only the
// schema checks. Object metadata is not checked here (the agent's model
// does that). Validate returns nil for an object of any other type.
func Validate(obj runtime.Object) field.ErrorList {
	var issues []issue
	switch o := obj.(type) {
	case *gatewayv1.HTTPRoute:
		issues = validateHTTPRoute(o)
	case *gatewayv1.GRPCRoute:
		issues = validateGRPCRoute(o)
	default:
		return nil
	}
	if len(issues) == 0 {
		return nil
	}
	errs := make(field.ErrorList, len(issues))
	for i := range issues {
		errs[i] = issues[i].err
	}
	return errs
}

// Spec limits (kubebuilder MaxItems/MaxLength markers of the API types).
const (
	maxParentRefs     = 32
	maxHostnames      = 16
	maxRules          = 16
	maxMatchesPerRule = 64
	maxMatchesTotal   = 128
	maxFilters        = 16
	maxBackendRefs    = 16
	maxConditions     = 16 // headers or query params per match, header actions per list
	maxPathLen        = 1024
	maxHeaderNameLen  = 256
	maxHeaderValueLen = 4096
	maxQueryValueLen  = 1024
	maxNameLen        = 253
	maxWeight         = 1000000
)

// Patterns of the API types (kubebuilder:validation:Pattern and CEL).
var (
	groupRE           = regexp.MustCompile(`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	kindRE            = regexp.MustCompile(`^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
	namespaceRE       = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	sectionNameRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	hostnameRE        = regexp.MustCompile(`^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	preciseHostnameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	headerNameRE      = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")
	headerValueRE     = regexp.MustCompile(`^[!-~]+([\t ]?[!-~]+)*$`)
	pathValueRE       = regexp.MustCompile(`^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$`)
	grpcServiceRE     = regexp.MustCompile(`^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`)
	grpcMethodRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z_0-9]*$`)
)

const (
	groupGateway = "gateway.networking.k8s.io"
	kindGateway  = "Gateway"
	kindService  = "Service"
)

// issue is a validation error with what Compile needs to know about it:
// which rule it invalidates (-1: the whole route) and the Accepted reason.
type issue struct {
	err    *field.Error
	rule   int
	reason gatewayv1.RouteConditionReason
}

type validator struct {
	// ours is set when the route has a Service parentRef: Skein's own
	// limits apply only to routes Skein implements.
	ours   bool
	rule   int
	issues []issue
}

func (v *validator) add(err *field.Error) {
	v.issues = append(v.issues, issue{err: err, rule: v.rule, reason: gatewayv1.RouteReasonUnsupportedValue})
}

// incompatible records an invalid combination of filters
// (HTTPRouteRule.Filters: "implementations may use the IncompatibleFilters
// reason").
func (v *validator) incompatible(err *field.Error) {
	v.issues = append(v.issues, issue{err: err, rule: v.rule, reason: gatewayv1.RouteReasonIncompatibleFilters})
}

// unsupported rejects a valid field that Skein does not implement.
func (v *validator) unsupported(p *field.Path, value any, what string) {
	if v.ours {
		v.add(field.Invalid(p, value, what+" is not supported by Skein"))
	}
}

func isServiceParent(ref *gatewayv1.ParentReference) bool {
	// ParentReference.Group: "When unspecified, gateway.networking.k8s.io is
	// inferred. To set the core API group (such as for a Service kind
	// referent), Group must be explicitly set to "" (empty string)."
	return ref.Group != nil && *ref.Group == "" && ref.Kind != nil && *ref.Kind == kindService
}

func hasServiceParent(refs []gatewayv1.ParentReference) bool {
	for i := range refs {
		if isServiceParent(&refs[i]) {
			return true
		}
	}
	return false
}

func validateHTTPRoute(r *gatewayv1.HTTPRoute) []issue {
	v := &validator{ours: hasServiceParent(r.Spec.ParentRefs), rule: -1}
	spec := field.NewPath("spec")
	v.parentRefs(spec.Child("parentRefs"), r.Spec.ParentRefs)
	v.hostnames(spec.Child("hostnames"), r.Spec.Hostnames)

	rules := spec.Child("rules")
	v.ruleList(rules, len(r.Spec.Rules), r.Spec.Rules != nil, func(i int) *gatewayv1.SectionName { return r.Spec.Rules[i].Name })
	total := 0
	for i := range r.Spec.Rules {
		total += max(1, len(r.Spec.Rules[i].Matches)) // an empty list defaults to one match
	}
	v.totalMatches(rules, total)
	for i := range r.Spec.Rules {
		v.rule = i
		v.httpRule(rules.Index(i), &r.Spec.Rules[i])
	}
	return v.issues
}

func validateGRPCRoute(r *gatewayv1.GRPCRoute) []issue {
	v := &validator{ours: hasServiceParent(r.Spec.ParentRefs), rule: -1}
	spec := field.NewPath("spec")
	v.parentRefs(spec.Child("parentRefs"), r.Spec.ParentRefs)
	v.hostnames(spec.Child("hostnames"), r.Spec.Hostnames)

	rules := spec.Child("rules")
	v.ruleList(rules, len(r.Spec.Rules), false, func(i int) *gatewayv1.SectionName { return r.Spec.Rules[i].Name })
	total := 0
	for i := range r.Spec.Rules {
		total += len(r.Spec.Rules[i].Matches)
	}
	v.totalMatches(rules, total)
	for i := range r.Spec.Rules {
		v.rule = i
		v.grpcRule(rules.Index(i), &r.Spec.Rules[i])
	}
	return v.issues
}

// ruleList checks the number of rules and the uniqueness of rule names.
// For HTTPRoute an explicitly empty list is invalid (MinItems=1; an absent
// list defaults to one rule).
func (v *validator) ruleList(p *field.Path, n int, explicitEmptyInvalid bool, name func(int) *gatewayv1.SectionName) {
	if explicitEmptyInvalid && n == 0 {
		v.add(field.Required(p, "must have at least 1 rule; leave rules out for the default rule"))
	}
	if n > maxRules {
		v.add(field.TooMany(p, n, maxRules))
	}
	seen := map[gatewayv1.SectionName]bool{}
	for i := 0; i < n; i++ {
		nm := name(i)
		if nm == nil {
			continue
		}
		np := p.Index(i).Child("name")
		v.pattern(np, string(*nm), sectionNameRE, "must be a lowercase RFC 1123 subdomain")
		if seen[*nm] {
			e := field.Duplicate(np, *nm)
			e.Detail = "rule names must be unique within a route"
			v.add(e)
		}
		seen[*nm] = true
	}
}

func (v *validator) totalMatches(p *field.Path, total int) {
	if total > maxMatchesTotal {
		v.add(field.Invalid(p, total, fmt.Sprintf("the total number of matches across all rules of a route must be at most %d", maxMatchesTotal)))
	}
}

// parentRefs checks each reference and the distinctness rule of
// CommonRouteSpec.ParentRefs.
func (v *validator) parentRefs(p *field.Path, refs []gatewayv1.ParentReference) {
	if len(refs) > maxParentRefs {
		v.add(field.TooMany(p, len(refs), maxParentRefs))
	}
	type key struct{ group, kind, ns, name string }
	seen := map[key][]int{}
	for j := range refs {
		ref := &refs[j]
		rp := p.Index(j)
		if ref.Group != nil {
			v.pattern(rp.Child("group"), string(*ref.Group), groupRE, "must be empty or a lowercase RFC 1123 subdomain")
		}
		if ref.Kind != nil {
			v.pattern(rp.Child("kind"), string(*ref.Kind), kindRE, "must be a Kubernetes kind")
		}
		if ref.Namespace != nil {
			v.pattern(rp.Child("namespace"), string(*ref.Namespace), namespaceRE, "must be a lowercase RFC 1123 label")
		}
		v.objectName(rp.Child("name"), string(ref.Name))
		if ref.SectionName != nil {
			v.pattern(rp.Child("sectionName"), string(*ref.SectionName), sectionNameRE, "must be a lowercase RFC 1123 subdomain")
		}
		if ref.Port != nil {
			v.port(rp.Child("port"), *ref.Port)
		}

		k := key{group: groupGateway, kind: kindGateway, name: string(ref.Name)}
		if ref.Group != nil {
			k.group = string(*ref.Group)
		}
		if ref.Kind != nil {
			k.kind = string(*ref.Kind)
		}
		if ref.Namespace != nil {
			k.ns = string(*ref.Namespace)
		}
		for _, i := range seen[k] {
			other := &refs[i]
			if isSet(ref.SectionName) != isSet(other.SectionName) || isSet(ref.Port) != isSet(other.Port) {
				v.add(field.Invalid(rp, ref.Name, fmt.Sprintf("references the same parent as parentRefs[%d]: sectionName or port must be specified by all of them", i)))
				continue
			}
			if derefOr(ref.SectionName, "") == derefOr(other.SectionName, "") && derefOr(ref.Port, 0) == derefOr(other.Port, 0) {
				e := field.Duplicate(rp, ref.Name)
				e.Detail = fmt.Sprintf("references the same parent, sectionName and port as parentRefs[%d]", i)
				v.add(e)
			}
		}
		seen[k] = append(seen[k], j)
	}
}

func (v *validator) hostnames(p *field.Path, hs []gatewayv1.Hostname) {
	if len(hs) > maxHostnames {
		v.add(field.TooMany(p, len(hs), maxHostnames))
	}
	for i, h := range hs {
		v.hostname(p.Index(i), string(h), hostnameRE, "must be a lowercase RFC 1123 hostname, optionally prefixed with a wildcard label \"*.\"")
	}
}

func (v *validator) hostname(p *field.Path, h string, re *regexp.Regexp, msg string) {
	if len(h) > maxNameLen {
		v.add(field.TooLong(p, h, maxNameLen))
		return
	}
	if h == "" {
		v.add(field.Required(p, "must not be empty"))
		return
	}
	v.pattern(p, h, re, msg)
}

func (v *validator) httpRule(p *field.Path, rule *gatewayv1.HTTPRouteRule) {
	mp := p.Child("matches")
	if len(rule.Matches) > maxMatchesPerRule {
		v.add(field.TooMany(mp, len(rule.Matches), maxMatchesPerRule))
	}
	for j := range rule.Matches {
		v.httpMatch(mp.Index(j), &rule.Matches[j])
	}

	v.httpFilters(p.Child("filters"), rule.Filters, false, len(rule.BackendRefs) > 0, singlePrefixMatch(rule.Matches))

	bp := p.Child("backendRefs")
	if len(rule.BackendRefs) > maxBackendRefs {
		v.add(field.TooMany(bp, len(rule.BackendRefs), maxBackendRefs))
	}
	for k := range rule.BackendRefs {
		b := &rule.BackendRefs[k]
		v.backendRef(bp.Index(k), &b.BackendRef)
		v.httpFilters(bp.Index(k).Child("filters"), b.Filters, true, true, singlePrefixMatch(rule.Matches))
	}

	if rule.Timeouts != nil {
		v.timeouts(p.Child("timeouts"), rule.Timeouts)
	}
	if rule.Retry != nil {
		v.retry(p.Child("retry"), rule.Retry)
	}
	if rule.SessionPersistence != nil {
		v.unsupported(p.Child("sessionPersistence"), "", "sessionPersistence")
	}
}

// singlePrefixMatch reports whether a rule has exactly one match and it is
// a PathPrefix, once defaults are applied: the condition the CEL rules put
// on ReplacePrefixMatch ("exactly one PathPrefix match must be specified").
func singlePrefixMatch(ms []gatewayv1.HTTPRouteMatch) bool {
	switch len(ms) {
	case 0:
		return true // the default match is PathPrefix "/"
	case 1:
		pm := ms[0].Path
		return pm == nil || pm.Type == nil || *pm.Type == gatewayv1.PathMatchPathPrefix
	}
	return false
}

var (
	pathMatchTypes   = []string{string(gatewayv1.PathMatchExact), string(gatewayv1.PathMatchPathPrefix), string(gatewayv1.PathMatchRegularExpression)}
	headerMatchTypes = []string{string(gatewayv1.HeaderMatchExact), string(gatewayv1.HeaderMatchRegularExpression)}
	httpMethods      = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)

func (v *validator) httpMatch(p *field.Path, m *gatewayv1.HTTPRouteMatch) {
	if m.Path != nil {
		pp := p.Child("path")
		t := derefOr(m.Path.Type, gatewayv1.PathMatchPathPrefix)
		val := derefOr(m.Path.Value, "/")
		vp := pp.Child("value")
		switch {
		case len(val) > maxPathLen:
			v.add(field.TooLong(vp, val, maxPathLen))
		case t == gatewayv1.PathMatchExact || t == gatewayv1.PathMatchPathPrefix:
			v.pathValue(vp, val)
		case t == gatewayv1.PathMatchRegularExpression:
			v.regex(vp, val)
		default:
			v.add(field.NotSupported(pp.Child("type"), t, pathMatchTypes))
		}
	}

	hp := p.Child("headers")
	if len(m.Headers) > maxConditions {
		v.add(field.TooMany(hp, len(m.Headers), maxConditions))
	}
	seen := map[gatewayv1.HTTPHeaderName]bool{}
	for k := range m.Headers {
		h := &m.Headers[k]
		ep := hp.Index(k)
		v.headerName(ep.Child("name"), string(h.Name))
		if seen[h.Name] {
			v.add(field.Duplicate(ep.Child("name"), h.Name))
		}
		seen[h.Name] = true
		v.conditionValue(ep, string(derefOr(h.Type, gatewayv1.HeaderMatchExact)), h.Value, maxHeaderValueLen, headerMatchTypes)
	}

	qp := p.Child("queryParams")
	if len(m.QueryParams) > maxConditions {
		v.add(field.TooMany(qp, len(m.QueryParams), maxConditions))
	}
	seenQ := map[gatewayv1.HTTPHeaderName]bool{}
	for k := range m.QueryParams {
		q := &m.QueryParams[k]
		ep := qp.Index(k)
		v.headerName(ep.Child("name"), string(q.Name))
		if seenQ[q.Name] {
			v.add(field.Duplicate(ep.Child("name"), q.Name))
		}
		seenQ[q.Name] = true
		v.conditionValue(ep, string(derefOr(q.Type, gatewayv1.QueryParamMatchExact)), q.Value, maxQueryValueLen, headerMatchTypes)
	}

	if m.Method != nil && !contains(httpMethods, string(*m.Method)) {
		v.add(field.NotSupported(p.Child("method"), *m.Method, httpMethods))
	}
}

// conditionValue checks the type and value of a header or query param
// match.
func (v *validator) conditionValue(p *field.Path, typ, value string, maxLen int, types []string) {
	vp := p.Child("value")
	switch {
	case value == "":
		v.add(field.Required(vp, "must not be empty"))
	case len(value) > maxLen:
		v.add(field.TooLong(vp, value, maxLen))
	case typ == "Exact":
	case typ == "RegularExpression":
		v.regex(vp, value)
	}
	if !contains(types, typ) {
		v.add(field.NotSupported(p.Child("type"), typ, types))
	}
}

// pathValue applies the CEL rules of HTTPPathMatch to an Exact or
// PathPrefix value.
func (v *validator) pathValue(p *field.Path, val string) {
	if !strings.HasPrefix(val, "/") {
		v.add(field.Invalid(p, val, `must start with "/"`))
	}
	for _, bad := range []string{"//", "/./", "/../", "%2f", "%2F", "#"} {
		if strings.Contains(val, bad) {
			v.add(field.Invalid(p, val, fmt.Sprintf("must not contain %q", bad)))
		}
	}
	for _, bad := range []string{"/..", "/."} {
		if strings.HasSuffix(val, bad) {
			v.add(field.Invalid(p, val, fmt.Sprintf("must not end with %q", bad)))
		}
	}
	if !pathValueRE.MatchString(val) {
		v.add(field.Invalid(p, val, "must only contain valid path characters (matching "+pathValueRE.String()+")"))
	}
}

// regex checks that a RegularExpression value compiles: Skein's dialect is
// Go's RE2 (regexp/syntax), matched against the whole value.
func (v *validator) regex(p *field.Path, val string) {
	if _, err := compileFull(val); err != nil {
		v.add(field.Invalid(p, val, "must be a valid RE2 regular expression (Go regexp syntax): "+err.Error()))
	}
}

// compileFull compiles a regular expression that must match a whole value.
func compileFull(expr string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	return regexp.Compile(`^(?:` + expr + `)$`)
}

func (v *validator) headerName(p *field.Path, name string) {
	switch {
	case name == "":
		v.add(field.Required(p, "must not be empty"))
	case len(name) > maxHeaderNameLen:
		v.add(field.TooLong(p, name, maxHeaderNameLen))
	default:
		v.pattern(p, name, headerNameRE, "must be a valid header name (RFC 7230 token)")
	}
}

var (
	httpFilterTypes = []string{
		string(gatewayv1.HTTPRouteFilterRequestHeaderModifier), string(gatewayv1.HTTPRouteFilterResponseHeaderModifier),
		string(gatewayv1.HTTPRouteFilterRequestMirror), string(gatewayv1.HTTPRouteFilterRequestRedirect),
		string(gatewayv1.HTTPRouteFilterURLRewrite), string(gatewayv1.HTTPRouteFilterExtensionRef),
		string(gatewayv1.HTTPRouteFilterCORS), string(gatewayv1.HTTPRouteFilterExternalAuth),
	}
	grpcFilterTypes = []string{
		string(gatewayv1.GRPCRouteFilterRequestHeaderModifier), string(gatewayv1.GRPCRouteFilterResponseHeaderModifier),
		string(gatewayv1.GRPCRouteFilterRequestMirror), string(gatewayv1.GRPCRouteFilterExtensionRef),
	}
	// noRepeat are the filter types a list may hold only once (the CEL
	// rules "... filter cannot be repeated").
	noRepeat = map[string]bool{"RequestHeaderModifier": true, "ResponseHeaderModifier": true, "RequestRedirect": true, "URLRewrite": true, "CORS": true}
)

// filterFields lists which union member of a filter is set, by type name.
func httpFilterFields(f *gatewayv1.HTTPRouteFilter) map[string]string {
	set := map[string]string{}
	if f.RequestHeaderModifier != nil {
		set["RequestHeaderModifier"] = "requestHeaderModifier"
	}
	if f.ResponseHeaderModifier != nil {
		set["ResponseHeaderModifier"] = "responseHeaderModifier"
	}
	if f.RequestMirror != nil {
		set["RequestMirror"] = "requestMirror"
	}
	if f.RequestRedirect != nil {
		set["RequestRedirect"] = "requestRedirect"
	}
	if f.URLRewrite != nil {
		set["URLRewrite"] = "urlRewrite"
	}
	if f.CORS != nil {
		set["CORS"] = "cors"
	}
	if f.ExternalAuth != nil {
		set["ExternalAuth"] = "externalAuth"
	}
	if f.ExtensionRef != nil {
		set["ExtensionRef"] = "extensionRef"
	}
	return set
}

var filterFieldName = map[string]string{
	"RequestHeaderModifier": "requestHeaderModifier", "ResponseHeaderModifier": "responseHeaderModifier",
	"RequestMirror": "requestMirror", "RequestRedirect": "requestRedirect", "URLRewrite": "urlRewrite",
	"CORS": "cors", "ExternalAuth": "externalAuth", "ExtensionRef": "extensionRef",
}

// filterUnion applies the union rules of a filter: the member named by the
// type is set and no other is.
func (v *validator) filterUnion(p *field.Path, typ string, set map[string]string) bool {
	ok := true
	for t, name := range set {
		if t != typ {
			v.add(field.Invalid(p.Child(name), "", fmt.Sprintf("must not be set when type is %q", typ)))
			ok = false
		}
	}
	if name, known := filterFieldName[typ]; known {
		if _, has := set[typ]; !has {
			v.add(field.Required(p.Child(name), fmt.Sprintf("must be set when type is %q", typ)))
			ok = false
		}
	}
	return ok
}

// httpFilters checks a rule's or a backendRef's filter list.
func (v *validator) httpFilters(p *field.Path, fs []gatewayv1.HTTPRouteFilter, backendLevel, hasBackends, singlePrefix bool) {
	if len(fs) > maxFilters {
		v.add(field.TooMany(p, len(fs), maxFilters))
	}
	first := map[string]int{}
	for j := range fs {
		f := &fs[j]
		fp := p.Index(j)
		typ := string(f.Type)
		tp := fp.Child("type")
		if !contains(httpFilterTypes, typ) {
			v.add(field.NotSupported(tp, f.Type, httpFilterTypes))
			continue
		}
		if i, dup := first[typ]; dup && noRepeat[typ] {
			e := field.Duplicate(tp, f.Type)
			e.Detail = fmt.Sprintf("%s filter cannot be repeated (see filters[%d])", typ, i)
			v.add(e)
		} else if !dup {
			first[typ] = j
		}
		if !v.filterUnion(fp, typ, httpFilterFields(f)) {
			continue
		}
		switch f.Type {
		case gatewayv1.HTTPRouteFilterRequestHeaderModifier:
			v.headerFilter(fp.Child("requestHeaderModifier"), f.RequestHeaderModifier)
		case gatewayv1.HTTPRouteFilterResponseHeaderModifier:
			v.headerFilter(fp.Child("responseHeaderModifier"), f.ResponseHeaderModifier)
		case gatewayv1.HTTPRouteFilterRequestMirror:
			v.mirror(fp.Child("requestMirror"), f.RequestMirror)
			if backendLevel {
				v.unsupported(tp, f.Type, "RequestMirror in backendRefs[].filters")
			}
		case gatewayv1.HTTPRouteFilterRequestRedirect:
			v.redirect(fp.Child("requestRedirect"), f.RequestRedirect, singlePrefix)
			switch {
			case backendLevel:
				v.unsupported(tp, f.Type, "RequestRedirect in backendRefs[].filters")
			case hasBackends:
				v.incompatible(field.Invalid(tp, f.Type, "RequestRedirect filter must not be used together with backendRefs"))
			}
		case gatewayv1.HTTPRouteFilterURLRewrite:
			v.rewrite(fp.Child("urlRewrite"), f.URLRewrite, singlePrefix)
			if backendLevel {
				v.unsupported(tp, f.Type, "URLRewrite in backendRefs[].filters")
			}
		case gatewayv1.HTTPRouteFilterCORS, gatewayv1.HTTPRouteFilterExternalAuth, gatewayv1.HTTPRouteFilterExtensionRef:
			v.unsupported(tp, f.Type, "filter type "+typ)
		}
	}
	// HTTPRouteRule.Filters: "the URLRewrite and RequestRedirect filters
	// ... may not be combined".
	if r, ok := first["RequestRedirect"]; ok {
		if w, ok := first["URLRewrite"]; ok {
			v.incompatible(field.Invalid(p.Index(max(r, w)).Child("type"), fs[max(r, w)].Type,
				fmt.Sprintf("may specify either RequestRedirect or URLRewrite, but not both (see filters[%d])", min(r, w))))
		}
	}
}

// headerFilter checks an HTTPHeaderFilter: names and values, and "Only one
// action for a given header name is permitted. Filters specifying multiple
// actions of the same or different type for any one header name are
// invalid." Header names are case-insensitive.
func (v *validator) headerFilter(p *field.Path, hf *gatewayv1.HTTPHeaderFilter) {
	seen := map[string]string{} // lower-case name -> path of its action
	claim := func(np *field.Path, name string) {
		l := strings.ToLower(name)
		if prev, dup := seen[l]; dup {
			e := field.Duplicate(np, name)
			e.Detail = "header already has an action at " + prev + "; only one action per header name is permitted (names are case-insensitive)"
			v.add(e)
			return
		}
		seen[l] = np.String()
	}
	for _, action := range []struct {
		name string
		hs   []gatewayv1.HTTPHeader
	}{{"set", hf.Set}, {"add", hf.Add}} {
		ap := p.Child(action.name)
		if len(action.hs) > maxConditions {
			v.add(field.TooMany(ap, len(action.hs), maxConditions))
		}
		for k := range action.hs {
			h := &action.hs[k]
			np := ap.Index(k).Child("name")
			v.headerName(np, string(h.Name))
			claim(np, string(h.Name))
			vp := ap.Index(k).Child("value")
			switch {
			case h.Value == "":
				v.add(field.Required(vp, "must not be empty"))
			case len(h.Value) > maxHeaderValueLen:
				v.add(field.TooLong(vp, h.Value, maxHeaderValueLen))
			case v.ours && !headerValueRE.MatchString(h.Value):
				v.add(field.Invalid(vp, h.Value, "must consist of printable US-ASCII characters, optionally separated by single tabs or spaces"))
			}
		}
	}
	rp := p.Child("remove")
	if len(hf.Remove) > maxConditions {
		v.add(field.TooMany(rp, len(hf.Remove), maxConditions))
	}
	for k, name := range hf.Remove {
		np := rp.Index(k)
		v.headerName(np, name)
		claim(np, name)
	}
}

var redirectStatusCodes = []string{"301", "302", "303", "307", "308"}

func (v *validator) redirect(p *field.Path, r *gatewayv1.HTTPRequestRedirectFilter, singlePrefix bool) {
	if r.Scheme != nil && *r.Scheme != "http" && *r.Scheme != "https" {
		v.add(field.NotSupported(p.Child("scheme"), *r.Scheme, []string{"http", "https"}))
	}
	if r.Hostname != nil {
		v.hostname(p.Child("hostname"), string(*r.Hostname), preciseHostnameRE, "must be a lowercase RFC 1123 hostname")
	}
	if r.Path != nil {
		v.pathModifier(p.Child("path"), r.Path, singlePrefix)
	}
	if r.Port != nil {
		v.port(p.Child("port"), *r.Port)
	}
	if r.StatusCode != nil && !contains(redirectStatusCodes, strconv.Itoa(*r.StatusCode)) {
		v.add(field.NotSupported(p.Child("statusCode"), *r.StatusCode, redirectStatusCodes))
	}
}

func (v *validator) rewrite(p *field.Path, r *gatewayv1.HTTPURLRewriteFilter, singlePrefix bool) {
	if r.Hostname != nil {
		v.hostname(p.Child("hostname"), string(*r.Hostname), preciseHostnameRE, "must be a lowercase RFC 1123 hostname")
	}
	if r.Path != nil {
		v.pathModifier(p.Child("path"), r.Path, singlePrefix)
	}
}

var pathModifierTypes = []string{string(gatewayv1.FullPathHTTPPathModifier), string(gatewayv1.PrefixMatchHTTPPathModifier)}

func (v *validator) pathModifier(p *field.Path, m *gatewayv1.HTTPPathModifier, singlePrefix bool) {
	full, prefix := p.Child("replaceFullPath"), p.Child("replacePrefixMatch")
	switch m.Type {
	case gatewayv1.FullPathHTTPPathModifier:
		if m.ReplaceFullPath == nil {
			v.add(field.Required(full, "must be set when type is \"ReplaceFullPath\""))
		}
		if m.ReplacePrefixMatch != nil {
			v.add(field.Invalid(prefix, *m.ReplacePrefixMatch, "type must be \"ReplacePrefixMatch\" when replacePrefixMatch is set"))
		}
	case gatewayv1.PrefixMatchHTTPPathModifier:
		if m.ReplacePrefixMatch == nil {
			v.add(field.Required(prefix, "must be set when type is \"ReplacePrefixMatch\""))
		} else if !singlePrefix {
			// HTTPPathModifier.ReplacePrefixMatch: "ReplacePrefixMatch is
			// only compatible with a PathPrefix HTTPRouteMatch", and the
			// rule's CEL: "exactly one PathPrefix match must be specified".
			v.incompatible(field.Invalid(prefix, *m.ReplacePrefixMatch, "ReplacePrefixMatch requires the rule to have exactly one match, of type PathPrefix"))
		}
		if m.ReplaceFullPath != nil {
			v.add(field.Invalid(full, *m.ReplaceFullPath, "type must be \"ReplaceFullPath\" when replaceFullPath is set"))
		}
	default:
		v.add(field.NotSupported(p.Child("type"), m.Type, pathModifierTypes))
	}
	for _, f := range []struct {
		p   *field.Path
		val *string
	}{{full, m.ReplaceFullPath}, {prefix, m.ReplacePrefixMatch}} {
		switch {
		case f.val == nil || *f.val == "":
		case len(*f.val) > maxPathLen:
			v.add(field.TooLong(f.p, *f.val, maxPathLen))
		case v.ours && !pathValueRE.MatchString(*f.val):
			v.add(field.Invalid(f.p, *f.val, "must only contain valid path characters (matching "+pathValueRE.String()+")"))
		}
	}
}

func (v *validator) mirror(p *field.Path, m *gatewayv1.HTTPRequestMirrorFilter) {
	v.backendObjectRef(p.Child("backendRef"), &m.BackendRef)
	if m.Percent != nil && m.Fraction != nil {
		v.add(field.Invalid(p, "", "only one of percent or fraction may be specified"))
	}
	if m.Percent != nil && (*m.Percent < 0 || *m.Percent > 100) {
		v.add(field.Invalid(p.Child("percent"), *m.Percent, "must be between 0 and 100"))
	}
	if f := m.Fraction; f != nil {
		fp := p.Child("fraction")
		den := derefOr(f.Denominator, 100)
		if f.Numerator < 0 {
			v.add(field.Invalid(fp.Child("numerator"), f.Numerator, "must be at least 0"))
		}
		if den < 1 {
			v.add(field.Invalid(fp.Child("denominator"), den, "must be at least 1"))
		}
		if f.Numerator > den {
			v.add(field.Invalid(fp.Child("numerator"), f.Numerator, "numerator must be less than or equal to denominator"))
		}
	}
}

func (v *validator) backendRef(p *field.Path, b *gatewayv1.BackendRef) {
	v.backendObjectRef(p, &b.BackendObjectReference)
	if b.Weight != nil && (*b.Weight < 0 || *b.Weight > maxWeight) {
		v.add(field.Invalid(p.Child("weight"), *b.Weight, fmt.Sprintf("must be between 0 and %d", maxWeight)))
	}
}

func (v *validator) backendObjectRef(p *field.Path, r *gatewayv1.BackendObjectReference) {
	if r.Group != nil {
		v.pattern(p.Child("group"), string(*r.Group), groupRE, "must be empty or a lowercase RFC 1123 subdomain")
	}
	if r.Kind != nil {
		v.pattern(p.Child("kind"), string(*r.Kind), kindRE, "must be a Kubernetes kind")
	}
	v.objectName(p.Child("name"), string(r.Name))
	if r.Namespace != nil {
		v.pattern(p.Child("namespace"), string(*r.Namespace), namespaceRE, "must be a lowercase RFC 1123 label")
	}
	if r.Port != nil {
		v.port(p.Child("port"), *r.Port)
	} else if derefOr(r.Group, "") == "" && derefOr(r.Kind, kindService) == kindService {
		// BackendObjectReference CEL: "Must have port for Service reference".
		v.add(field.Required(p.Child("port"), "must have port for Service reference"))
	}
}

func (v *validator) timeouts(p *field.Path, t *gatewayv1.HTTPRouteTimeouts) {
	var req, be time.Duration
	var reqOK, beOK bool
	if t.Request != nil {
		req, reqOK = v.duration(p.Child("request"), string(*t.Request))
	}
	if t.BackendRequest != nil {
		be, beOK = v.duration(p.Child("backendRequest"), string(*t.BackendRequest))
	}
	// HTTPRouteTimeouts CEL: "backendRequest timeout cannot be longer than
	// request timeout", unless the request timeout is 0s (disabled).
	if reqOK && beOK && req != 0 && be > req {
		v.add(field.Invalid(p.Child("backendRequest"), string(*t.BackendRequest),
			fmt.Sprintf("backendRequest timeout cannot be longer than request timeout (%s)", string(*t.Request))))
	}
}

func (v *validator) duration(p *field.Path, s string) (time.Duration, bool) {
	d, err := ParseDuration(s)
	if err != nil {
		v.add(field.Invalid(p, s, "must be a Gateway API duration (GEP-2257): 1 to 4 of <1-5 digits><h|m|s|ms>, e.g. 10s, 500ms, 1h30m"))
		return 0, false
	}
	return d, true
}

func (v *validator) retry(p *field.Path, r *gatewayv1.HTTPRouteRetry) {
	cp := p.Child("codes")
	seen := map[gatewayv1.HTTPRouteRetryStatusCode]bool{}
	for k, c := range r.Codes {
		// HTTPRouteRetryStatusCode: Minimum 400, Maximum 599.
		if c < 400 || c > 599 {
			v.add(field.Invalid(cp.Index(k), int(c), "must be between 400 and 599"))
		}
		if seen[c] {
			v.add(field.Duplicate(cp.Index(k), int(c)))
		}
		seen[c] = true
	}
	if r.Attempts != nil && *r.Attempts < 1 {
		v.add(field.Invalid(p.Child("attempts"), *r.Attempts, "must be at least 1"))
	}
	if r.Backoff != nil {
		v.duration(p.Child("backoff"), string(*r.Backoff))
	}
}

func (v *validator) grpcRule(p *field.Path, rule *gatewayv1.GRPCRouteRule) {
	mp := p.Child("matches")
	if len(rule.Matches) > maxMatchesPerRule {
		v.add(field.TooMany(mp, len(rule.Matches), maxMatchesPerRule))
	}
	for j := range rule.Matches {
		v.grpcMatch(mp.Index(j), &rule.Matches[j])
	}
	v.grpcFilters(p.Child("filters"), rule.Filters, false)
	bp := p.Child("backendRefs")
	if len(rule.BackendRefs) > maxBackendRefs {
		v.add(field.TooMany(bp, len(rule.BackendRefs), maxBackendRefs))
	}
	for k := range rule.BackendRefs {
		b := &rule.BackendRefs[k]
		v.backendRef(bp.Index(k), &b.BackendRef)
		v.grpcFilters(bp.Index(k).Child("filters"), b.Filters, true)
	}
	if rule.SessionPersistence != nil {
		v.unsupported(p.Child("sessionPersistence"), "", "sessionPersistence")
	}
}

var grpcMatchTypes = []string{string(gatewayv1.GRPCMethodMatchExact), string(gatewayv1.GRPCMethodMatchRegularExpression)}

func (v *validator) grpcMatch(p *field.Path, m *gatewayv1.GRPCRouteMatch) {
	if mm := m.Method; mm != nil {
		mp := p.Child("method")
		t := derefOr(mm.Type, gatewayv1.GRPCMethodMatchExact)
		svc, meth := derefOr(mm.Service, ""), derefOr(mm.Method, "")
		if svc == "" && meth == "" {
			// GRPCMethodMatch: "At least one of Service and Method MUST be a
			// non-empty string."
			v.add(field.Required(mp, "one or both of service or method must be specified"))
		}
		for _, f := range []struct {
			name, val string
			re        *regexp.Regexp
			msg       string
		}{
			{"service", svc, grpcServiceRE, "must only contain valid characters (matching " + grpcServiceRE.String() + ")"},
			{"method", meth, grpcMethodRE, "must only contain valid characters (matching " + grpcMethodRE.String() + ")"},
		} {
			fp := mp.Child(f.name)
			switch {
			case f.val == "":
			case len(f.val) > maxPathLen:
				v.add(field.TooLong(fp, f.val, maxPathLen))
			case t == gatewayv1.GRPCMethodMatchExact:
				v.pattern(fp, f.val, f.re, f.msg)
			case t == gatewayv1.GRPCMethodMatchRegularExpression:
				v.regex(fp, f.val)
			}
		}
		if !contains(grpcMatchTypes, string(t)) {
			v.add(field.NotSupported(mp.Child("type"), t, grpcMatchTypes))
		}
	}
	hp := p.Child("headers")
	if len(m.Headers) > maxConditions {
		v.add(field.TooMany(hp, len(m.Headers), maxConditions))
	}
	seen := map[gatewayv1.GRPCHeaderName]bool{}
	for k := range m.Headers {
		h := &m.Headers[k]
		ep := hp.Index(k)
		v.headerName(ep.Child("name"), string(h.Name))
		if seen[h.Name] {
			v.add(field.Duplicate(ep.Child("name"), h.Name))
		}
		seen[h.Name] = true
		v.conditionValue(ep, string(derefOr(h.Type, gatewayv1.GRPCHeaderMatchExact)), h.Value, maxHeaderValueLen, headerMatchTypes)
	}
}

func grpcFilterFields(f *gatewayv1.GRPCRouteFilter) map[string]string {
	set := map[string]string{}
	if f.RequestHeaderModifier != nil {
		set["RequestHeaderModifier"] = "requestHeaderModifier"
	}
	if f.ResponseHeaderModifier != nil {
		set["ResponseHeaderModifier"] = "responseHeaderModifier"
	}
	if f.RequestMirror != nil {
		set["RequestMirror"] = "requestMirror"
	}
	if f.ExtensionRef != nil {
		set["ExtensionRef"] = "extensionRef"
	}
	return set
}

func (v *validator) grpcFilters(p *field.Path, fs []gatewayv1.GRPCRouteFilter, backendLevel bool) {
	if len(fs) > maxFilters {
		v.add(field.TooMany(p, len(fs), maxFilters))
	}
	first := map[string]int{}
	for j := range fs {
		f := &fs[j]
		fp := p.Index(j)
		typ := string(f.Type)
		tp := fp.Child("type")
		if !contains(grpcFilterTypes, typ) {
			v.add(field.NotSupported(tp, f.Type, grpcFilterTypes))
			continue
		}
		if i, dup := first[typ]; dup && noRepeat[typ] {
			e := field.Duplicate(tp, f.Type)
			e.Detail = fmt.Sprintf("%s filter cannot be repeated (see filters[%d])", typ, i)
			v.add(e)
		} else if !dup {
			first[typ] = j
		}
		if !v.filterUnion(fp, typ, grpcFilterFields(f)) {
			continue
		}
		switch f.Type {
		case gatewayv1.GRPCRouteFilterRequestHeaderModifier:
			v.headerFilter(fp.Child("requestHeaderModifier"), f.RequestHeaderModifier)
		case gatewayv1.GRPCRouteFilterResponseHeaderModifier:
			v.headerFilter(fp.Child("responseHeaderModifier"), f.ResponseHeaderModifier)
		case gatewayv1.GRPCRouteFilterRequestMirror:
			v.mirror(fp.Child("requestMirror"), f.RequestMirror)
			if backendLevel {
				v.unsupported(tp, f.Type, "RequestMirror in backendRefs[].filters")
			}
		case gatewayv1.GRPCRouteFilterExtensionRef:
			v.unsupported(tp, f.Type, "filter type "+typ)
		}
	}
}

func (v *validator) pattern(p *field.Path, val string, re *regexp.Regexp, msg string) {
	if !re.MatchString(val) {
		v.add(field.Invalid(p, val, msg))
	}
}

func (v *validator) objectName(p *field.Path, name string) {
	switch {
	case name == "":
		v.add(field.Required(p, "must not be empty"))
	case len(name) > maxNameLen:
		v.add(field.TooLong(p, name, maxNameLen))
	}
}

func (v *validator) port(p *field.Path, port gatewayv1.PortNumber) {
	if port < 1 || port > 65535 {
		v.add(field.Invalid(p, port, "must be between 1 and 65535"))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

func isSet[T comparable](p *T) bool {
	var zero T
	return p != nil && *p != zero
}
