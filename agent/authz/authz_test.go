package authz

import (
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/agent/model"
	"github.com/skeinmesh/skein/l7proxy"
)

func pol(ns, name, action string, sel map[string]string, rules ...model.AuthorizationRule) *model.AuthorizationPolicy {
	p := &model.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: model.AuthorizationPolicySpec{Action: action, Rules: rules}}
	if sel != nil {
		p.Spec.Selector = &model.WorkloadSelector{MatchLabels: sel}
	}
	return p
}

func from(principals, namespaces []string) []model.RuleFrom {
	return []model.RuleFrom{{Source: model.Source{Principals: principals, Namespaces: namespaces}}}
}

func to(ports, methods, paths []string) []model.RuleTo {
	return []model.RuleTo{{Operation: model.Operation{Ports: ports, Methods: methods, Paths: paths}}}
}

func engine(ps ...*model.AuthorizationPolicy) *Engine {
	m := map[model.Key]*model.AuthorizationPolicy{}
	for _, p := range ps {
		m[model.KeyOf(p)] = p
	}
	return New(m, "skein-system")
}

func TestAuthorize(t *testing.T) {
	product := &l7proxy.Workload{Namespace: "shop", Name: "product", Labels: map[string]string{"app": "product"}}
	profile := &l7proxy.Workload{Namespace: "shop", Name: "profile", Labels: map[string]string{"app": "profile"}}
	client := "cluster.local/ns/shop/sa/client"
	evil := "cluster.local/ns/evil/sa/default"
	req := func(dst *l7proxy.Workload, principal, ns, method, path string) *l7proxy.AuthzRequest {
		return &l7proxy.AuthzRequest{Dest: dst, Principal: principal, Namespace: ns, Port: 8080,
			HTTP: method != "", Method: method, Path: path}
	}
	allowClientGET := pol("shop", "allow-client", model.ActionAllow, map[string]string{"app": "product"},
		model.AuthorizationRule{From: from([]string{client}, nil), To: to(nil, []string{"GET"}, []string{"/api/*"})})
	denyAdmin := pol("shop", "deny-admin", model.ActionDeny, nil,
		model.AuthorizationRule{To: to(nil, nil, []string{"/admin*"})})
	denyEvilNS := pol("skein-system", "deny-evil", model.ActionDeny, nil,
		model.AuthorizationRule{From: from(nil, []string{"evil"})})
	allowNothing := pol("shop", "allow-nothing", model.ActionAllow, map[string]string{"app": "profile"})
	tcpAllowWithPath := pol("shop", "tcp-allow", model.ActionAllow, map[string]string{"app": "product"},
		model.AuthorizationRule{To: to([]string{"8080"}, nil, []string{"/x"})})
	tcpDenyWithPath := pol("shop", "tcp-deny", model.ActionDeny, map[string]string{"app": "product"},
		model.AuthorizationRule{To: to([]string{"8080"}, nil, []string{"/x"})})

	tests := []struct {
		name   string
		e      *Engine
		r      *l7proxy.AuthzRequest
		allow  bool
		policy string
	}{
		{"no policy allows", engine(), req(product, client, "shop", "GET", "/"), true, ""},
		{"allow matches principal, method and path", engine(allowClientGET), req(product, client, "shop", "GET", "/api/items"), true, "shop/allow-client"},
		{"allow: wrong method", engine(allowClientGET), req(product, client, "shop", "POST", "/api/items"), false, "shop/allow-client (no ALLOW rule matched)"},
		{"allow: wrong path", engine(allowClientGET), req(product, client, "shop", "GET", "/other"), false, "shop/allow-client (no ALLOW rule matched)"},
		{"allow: wrong principal", engine(allowClientGET), req(product, evil, "evil", "GET", "/api/x"), false, "shop/allow-client (no ALLOW rule matched)"},
		{"allow: unauthenticated", engine(allowClientGET), req(product, "", "", "GET", "/api/x"), false, "shop/allow-client (no ALLOW rule matched)"},
		{"allow does not select another workload", engine(allowClientGET), req(profile, evil, "evil", "POST", "/"), true, ""},
		{"deny before allow", engine(allowClientGET, denyAdmin), req(product, client, "shop", "GET", "/admin/x"), false, "shop/deny-admin"},
		{"root namespace deny applies mesh-wide", engine(denyEvilNS), req(profile, evil, "evil", "GET", "/"), false, "skein-system/deny-evil"},
		{"root namespace deny spares others", engine(denyEvilNS), req(profile, client, "shop", "GET", "/"), true, ""},
		{"allow with no rules denies all", engine(allowNothing), req(profile, client, "shop", "GET", "/"), false, "shop/allow-nothing (no ALLOW rule matched)"},
		{"tcp: allow rule with a path never matches", engine(tcpAllowWithPath), req(product, client, "shop", "", ""), false, "shop/tcp-allow (no ALLOW rule matched)"},
		{"tcp: deny rule with a path matches on the rest", engine(tcpDenyWithPath), req(product, client, "shop", "", ""), false, "shop/tcp-deny"},
		{"http: deny rule with a path needs the path", engine(tcpDenyWithPath), req(product, client, "shop", "GET", "/y"), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.e.Authorize(tt.r)
			require.Equal(t, tt.allow, d.Allow)
			require.Equal(t, tt.policy, d.Policy)
		})
	}
}

func TestGlob(t *testing.T) {
	require.True(t, anyGlob([]string{"*"}, "x"))
	require.False(t, anyGlob([]string{"*"}, ""), "* needs an authenticated principal")
	require.True(t, anyGlob([]string{"cluster.local/ns/shop/*"}, "cluster.local/ns/shop/sa/a"))
	require.True(t, anyGlob([]string{"*/sa/a"}, "cluster.local/ns/shop/sa/a"))
	require.False(t, anyGlob([]string{"/api"}, "/api/x"), "exact by default")
}
