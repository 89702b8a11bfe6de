package authz

import (
	"sort"
	"strconv"
	"strings"

	"github.com/skeinmesh/skein/agent/model"
	"github.com/skeinmesh/skein/l7proxy"
)

// Engine holds the compiled policies. It is immutable: build a new one on
// every configuration change.
type Engine struct {
	rootNamespace string
	byNamespace   map[string][]*policy // namespace -> policies in it
	root          []*policy
}

var _ l7proxy.Authorizer = (*Engine)(nil)

type policy struct {
	name     string // "namespace/name"
	deny     bool
	selector map[string]string // nil: every workload in scope
	rules    []model.AuthorizationRule
}

// New compiles the policies of a snapshot. rootNamespace holds mesh-wide
// policies (Istio's istio-system; Skein's skein-system by default).
func New(policies map[model.Key]*model.AuthorizationPolicy, rootNamespace string) *Engine {
	e := &Engine{rootNamespace: rootNamespace, byNamespace: map[string][]*policy{}}
	keys := make([]model.Key, 0, len(policies))
	for k := range policies {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for _, k := range keys {
		ap := policies[k]
		p := &policy{name: k.String(), deny: ap.Spec.Action == model.ActionDeny, rules: ap.Spec.Rules}
		if ap.Spec.Selector != nil {
			p.selector = ap.Spec.Selector.MatchLabels
		}
		if k.Namespace == rootNamespace {
			e.root = append(e.root, p)
		} else {
			e.byNamespace[k.Namespace] = append(e.byNamespace[k.Namespace], p)
		}
	}
	return e
}

// Len returns the number of policies.
func (e *Engine) Len() int {
	n := len(e.root)
	for _, ps := range e.byNamespace {
		n += len(ps)
	}
	return n
}

// Authorize implements l7proxy.Authorizer.
func (e *Engine) Authorize(r *l7proxy.AuthzRequest) l7proxy.Decision {
	if r.Dest == nil {
		return l7proxy.Decision{Allow: true}
	}
	var allows []*policy
	for _, group := range [][]*policy{e.root, e.byNamespace[r.Dest.Namespace]} {
		for _, p := range group {
			if !selects(p.selector, r.Dest.Labels) {
				continue
			}
			if p.deny {
				if p.matches(r, true) {
					return l7proxy.Decision{Allow: false, Policy: p.name}
				}
				continue
			}
			allows = append(allows, p)
		}
	}
	if len(allows) == 0 {
		return l7proxy.Decision{Allow: true}
	}
	for _, p := range allows {
		if p.matches(r, false) {
			return l7proxy.Decision{Allow: true, Policy: p.name}
		}
	}
	return l7proxy.Decision{Allow: false, Policy: allows[0].name + " (no ALLOW rule matched)"}
}

func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// matches reports whether any rule of the policy matches. deny selects the
// TCP treatment of HTTP-only conditions.
func (p *policy) matches(r *l7proxy.AuthzRequest, deny bool) bool {
	for i := range p.rules {
		if ruleMatches(&p.rules[i], r, deny) {
			return true
		}
	}
	return false
}

func ruleMatches(rule *model.AuthorizationRule, r *l7proxy.AuthzRequest, deny bool) bool {
	if len(rule.From) > 0 {
		ok := false
		for _, f := range rule.From {
			if sourceMatches(&f.Source, r) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(rule.To) > 0 {
		ok := false
		for _, t := range rule.To {
			if operationMatches(&t.Operation, r, deny) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func sourceMatches(s *model.Source, r *l7proxy.AuthzRequest) bool {
	if len(s.Principals) > 0 && (r.Principal == "" || !anyGlob(s.Principals, r.Principal)) {
		return false
	}
	if len(s.NotPrincipals) > 0 && r.Principal != "" && anyGlob(s.NotPrincipals, r.Principal) {
		return false
	}
	if len(s.Namespaces) > 0 && (r.Namespace == "" || !anyGlob(s.Namespaces, r.Namespace)) {
		return false
	}
	if len(s.NotNamespaces) > 0 && r.Namespace != "" && anyGlob(s.NotNamespaces, r.Namespace) {
		return false
	}
	return true
}

func operationMatches(o *model.Operation, r *l7proxy.AuthzRequest, deny bool) bool {
	port := strconv.Itoa(int(r.Port))
	if len(o.Ports) > 0 && !contains(o.Ports, port) {
		return false
	}
	if len(o.NotPorts) > 0 && contains(o.NotPorts, port) {
		return false
	}
	httpOnly := len(o.Methods)+len(o.NotMethods)+len(o.Paths)+len(o.NotPaths) > 0
	if !r.HTTP {
		// TCP: an ALLOW rule that needs HTTP never matches; a DENY rule
		// matches on the rest (Istio's rule: never allow more on TCP).
		return !httpOnly || deny
	}
	if len(o.Methods) > 0 && !anyGlob(o.Methods, r.Method) {
		return false
	}
	if len(o.NotMethods) > 0 && anyGlob(o.NotMethods, r.Method) {
		return false
	}
	if len(o.Paths) > 0 && !anyGlob(o.Paths, r.Path) {
		return false
	}
	if len(o.NotPaths) > 0 && anyGlob(o.NotPaths, r.Path) {
		return false
	}
	return true
}

// anyGlob matches Istio's string forms: exact, "*", "prefix*", "*suffix".
func anyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		switch {
		case p == "*":
			if s != "" {
				return true
			}
		case strings.HasSuffix(p, "*"):
			if strings.HasPrefix(s, p[:len(p)-1]) {
				return true
			}
		case strings.HasPrefix(p, "*"):
			if strings.HasSuffix(s, p[1:]) {
				return true
			}
		case p == s:
			return true
		}
	}
	return false
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
