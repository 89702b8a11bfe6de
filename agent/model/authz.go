package model

import (
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// AuthorizationPolicy is the subset of Istio's security.istio.io/v1
// AuthorizationPolicy that Skein enforces, with Istio's field names so that
// existing manifests apply unchanged. Fields Skein does not enforce
// (requestPrincipals, ipBlocks, when, hosts, CUSTOM and AUDIT actions) are
// rejected by validation rather than silently ignored.
type AuthorizationPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              AuthorizationPolicySpec `json:"spec"`
}

// AuthorizationPolicySpec is the policy body.
type AuthorizationPolicySpec struct {
	// Selector picks the workloads (pods in the policy's namespace) the
	// policy applies to; nil: every workload in the namespace, or in the
	// mesh for a policy in the root namespace.
	Selector *WorkloadSelector `json:"selector,omitempty"`
	// Action is ALLOW (default) or DENY.
	Action string `json:"action,omitempty"`
	// Rules match requests; a policy with no rules matches nothing for
	// ALLOW (denies all) and nothing for DENY.
	Rules []AuthorizationRule `json:"rules,omitempty"`
}

// WorkloadSelector selects pods by labels.
type WorkloadSelector struct {
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
}

// AuthorizationRule matches when any from and any to match (empty lists match
// everything).
type AuthorizationRule struct {
	From []RuleFrom `json:"from,omitempty"`
	To   []RuleTo   `json:"to,omitempty"`
	When []any      `json:"when,omitempty"`
}

// RuleFrom wraps a source.
type RuleFrom struct {
	Source Source `json:"source"`
}

// Source matches the peer. Principals are "<trust-domain>/ns/<ns>/sa/<sa>",
// with a leading or trailing "*" allowed, as in Istio.
type Source struct {
	Principals        []string `json:"principals,omitempty"`
	NotPrincipals     []string `json:"notPrincipals,omitempty"`
	Namespaces        []string `json:"namespaces,omitempty"`
	NotNamespaces     []string `json:"notNamespaces,omitempty"`
	RequestPrincipals []string `json:"requestPrincipals,omitempty"`
	IPBlocks          []string `json:"ipBlocks,omitempty"`
	RemoteIPBlocks    []string `json:"remoteIpBlocks,omitempty"`
}

// RuleTo wraps an operation.
type RuleTo struct {
	Operation Operation `json:"operation"`
}

// Operation matches the request. Ports are strings, as in Istio. Methods and
// paths need HTTP: on a TCP connection a rule with them never matches.
type Operation struct {
	Hosts      []string `json:"hosts,omitempty"`
	NotHosts   []string `json:"notHosts,omitempty"`
	Ports      []string `json:"ports,omitempty"`
	NotPorts   []string `json:"notPorts,omitempty"`
	Methods    []string `json:"methods,omitempty"`
	NotMethods []string `json:"notMethods,omitempty"`
	Paths      []string `json:"paths,omitempty"`
	NotPaths   []string `json:"notPaths,omitempty"`
}

// Authorization actions.
const (
	ActionAllow = "ALLOW"
	ActionDeny  = "DENY"
)

// SecurityGroupVersions are the API versions the model reads the policy from.
var SecurityGroupVersions = []schema.GroupVersion{
	{Group: "security.istio.io", Version: "v1"},
	{Group: "security.istio.io", Version: "v1beta1"},
}

// AddSecurityToScheme registers AuthorizationPolicy with a scheme.
func AddSecurityToScheme(s *runtime.Scheme) error {
	for _, gv := range SecurityGroupVersions {
		s.AddKnownTypes(gv, &AuthorizationPolicy{}, &AuthorizationPolicyList{})
		metav1.AddToGroupVersion(s, gv)
	}
	return nil
}

// AuthorizationPolicyList is a list, for informers.
type AuthorizationPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AuthorizationPolicy `json:"items"`
}

// Validate checks the fields Skein enforces and rejects those it does not.
func (p *AuthorizationPolicy) Validate() FieldErrors {
	var errs FieldErrors
	spec := field.NewPath("spec")
	switch p.Spec.Action {
	case "", ActionAllow, ActionDeny:
	default:
		errs = append(errs, field.NotSupported(spec.Child("action"), p.Spec.Action, []string{ActionAllow, ActionDeny}))
	}
	for i, r := range p.Spec.Rules {
		rp := spec.Child("rules").Index(i)
		if len(r.When) > 0 {
			errs = append(errs, field.Forbidden(rp.Child("when"), "conditions are not supported by Skein; express them with from and to"))
		}
		for j, f := range r.From {
			sp := rp.Child("from").Index(j).Child("source")
			if len(f.Source.RequestPrincipals) > 0 {
				errs = append(errs, field.Forbidden(sp.Child("requestPrincipals"), "JWT principals are not supported by Skein"))
			}
			if len(f.Source.IPBlocks) > 0 || len(f.Source.RemoteIPBlocks) > 0 {
				errs = append(errs, field.Forbidden(sp.Child("ipBlocks"), "Skein authorizes by identity, not by IP; use principals or namespaces"))
			}
			for k, pr := range append(append([]string{}, f.Source.Principals...), f.Source.NotPrincipals...) {
				if strings.Count(pr, "*") > 1 || (strings.Contains(pr, "*") && !strings.HasPrefix(pr, "*") && !strings.HasSuffix(pr, "*")) {
					errs = append(errs, field.Invalid(sp.Child("principals").Index(k), pr, "only a leading or trailing * is allowed"))
				}
			}
		}
		for j, t := range r.To {
			op := rp.Child("to").Index(j).Child("operation")
			if len(t.Operation.Hosts) > 0 || len(t.Operation.NotHosts) > 0 {
				errs = append(errs, field.Forbidden(op.Child("hosts"), "host matching is not supported by Skein; attach the policy to the destination workload instead"))
			}
			for k, port := range append(append([]string{}, t.Operation.Ports...), t.Operation.NotPorts...) {
				if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
					errs = append(errs, field.Invalid(op.Child("ports").Index(k), port, "must be a port number from 1 to 65535"))
				}
			}
		}
	}
	return errs
}

// DeepCopyObject implements runtime.Object.
func (p *AuthorizationPolicy) DeepCopyObject() runtime.Object {
	if p == nil {
		return nil
	}
	out := &AuthorizationPolicy{TypeMeta: p.TypeMeta}
	p.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if p.Spec.Selector != nil {
		out.Spec.Selector = &WorkloadSelector{MatchLabels: copyMap(p.Spec.Selector.MatchLabels)}
	}
	out.Spec.Action = p.Spec.Action
	for _, r := range p.Spec.Rules {
		nr := AuthorizationRule{When: append([]any(nil), r.When...)}
		for _, f := range r.From {
			s := f.Source
			nr.From = append(nr.From, RuleFrom{Source: Source{
				Principals: copyStrings(s.Principals), NotPrincipals: copyStrings(s.NotPrincipals),
				Namespaces: copyStrings(s.Namespaces), NotNamespaces: copyStrings(s.NotNamespaces),
				RequestPrincipals: copyStrings(s.RequestPrincipals), IPBlocks: copyStrings(s.IPBlocks),
				RemoteIPBlocks: copyStrings(s.RemoteIPBlocks),
			}})
		}
		for _, t := range r.To {
			o := t.Operation
			nr.To = append(nr.To, RuleTo{Operation: Operation{
				Hosts: copyStrings(o.Hosts), NotHosts: copyStrings(o.NotHosts),
				Ports: copyStrings(o.Ports), NotPorts: copyStrings(o.NotPorts),
				Methods: copyStrings(o.Methods), NotMethods: copyStrings(o.NotMethods),
				Paths: copyStrings(o.Paths), NotPaths: copyStrings(o.NotPaths),
			}})
		}
		out.Spec.Rules = append(out.Spec.Rules, nr)
	}
	return out
}

// DeepCopyObject implements runtime.Object.
func (l *AuthorizationPolicyList) DeepCopyObject() runtime.Object {
	if l == nil {
		return nil
	}
	out := &AuthorizationPolicyList{TypeMeta: l.TypeMeta}
	l.ListMeta.DeepCopyInto(&out.ListMeta)
	for i := range l.Items {
		out.Items = append(out.Items, *l.Items[i].DeepCopyObject().(*AuthorizationPolicy))
	}
	return out
}

func copyStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append([]string(nil), s...)
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
