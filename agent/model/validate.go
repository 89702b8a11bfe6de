package model

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/skeinmesh/skein/l7proxy/route"
)

// FieldErrors are the problems found in one object, each naming a field.
type FieldErrors = field.ErrorList

func fieldErrors(errs ...*field.Error) FieldErrors { return errs }

func fieldDuplicate(path string, value any, detail string) *field.Error {
	e := field.Duplicate(field.NewPath(path), value)
	e.Detail = detail
	return e
}

// Validate checks an object the way the agent needs it. It returns nil for
// a valid object and for kinds the model does not keep.
func Validate(obj runtime.Object) FieldErrors {
	var errs FieldErrors
	switch o := obj.(type) {
	case *corev1.Node:
		errs = validateMeta(&o.ObjectMeta, false)
		for i, a := range o.Status.Addresses {
			if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
				errs = append(errs, validateIP(field.NewPath("status", "addresses").Index(i).Child("address"), a.Address)...)
			}
		}
	case *corev1.Namespace:
		errs = validateMeta(&o.ObjectMeta, false)
		errs = append(errs, validateMeshValue(field.NewPath("metadata", "labels").Key(MeshLabel), o.Labels)...)
		if v, ok := o.Labels[MTLSModeLabel]; ok && strings.ToUpper(v) != ModeStrict && strings.ToUpper(v) != ModePermissive {
			errs = append(errs, field.NotSupported(field.NewPath("metadata", "labels").Key(MTLSModeLabel), v, []string{ModeStrict, ModePermissive}))
		}
	case *corev1.Pod:
		errs = validatePod(o)
	case *corev1.Service:
		errs = validateService(o)
	case *discoveryv1.EndpointSlice:
		errs = validateEndpointSlice(o)
	case *gatewayv1.HTTPRoute:
		errs = append(validateMeta(&o.ObjectMeta, true), route.Validate(o)...)
	case *gatewayv1.GRPCRoute:
		errs = append(validateMeta(&o.ObjectMeta, true), route.Validate(o)...)
	case *AuthorizationPolicy:
		errs = append(validateMeta(&o.ObjectMeta, true), o.Validate()...)
	}
	return errs
}

func validateMeta(m *metav1.ObjectMeta, namespaced bool) FieldErrors {
	var errs FieldErrors
	p := field.NewPath("metadata")
	if m.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), "every object needs a name"))
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(m.Name) {
			errs = append(errs, field.Invalid(p.Child("name"), m.Name, msg))
		}
	}
	if namespaced && m.Namespace == "" {
		errs = append(errs, field.Required(p.Child("namespace"), "set the namespace the object belongs to"))
	}
	return errs
}

func validateMeshValue(p *field.Path, m map[string]string) FieldErrors {
	v, ok := m[MeshLabel]
	if !ok || v == MeshEnabled || v == MeshDisabled {
		return nil
	}
	return fieldErrors(field.NotSupported(p, v, []string{MeshEnabled, MeshDisabled}))
}

func validateIP(p *field.Path, s string) FieldErrors {
	if _, err := netip.ParseAddr(s); err != nil {
		return fieldErrors(field.Invalid(p, s, "must be an IPv4 or IPv6 address"))
	}
	return nil
}

func validatePod(o *corev1.Pod) FieldErrors {
	errs := validateMeta(&o.ObjectMeta, true)
	ann := field.NewPath("metadata", "annotations")
	errs = append(errs, validateMeshValue(ann.Key(MeshLabel), o.Annotations)...)
	if v, ok := o.Annotations[ExcludeOutboundPortsAnnotation]; ok {
		if _, err := ParsePorts(v); err != nil {
			errs = append(errs, field.Invalid(ann.Key(ExcludeOutboundPortsAnnotation), v, err.Error()))
		}
	}
	if o.Status.PodIP != "" {
		errs = append(errs, validateIP(field.NewPath("status", "podIP"), o.Status.PodIP)...)
	}
	for i, ip := range o.Status.PodIPs {
		errs = append(errs, validateIP(field.NewPath("status", "podIPs").Index(i).Child("ip"), ip.IP)...)
	}
	if o.Status.HostIP != "" {
		errs = append(errs, validateIP(field.NewPath("status", "hostIP"), o.Status.HostIP)...)
	}
	return errs
}

func validateService(o *corev1.Service) FieldErrors {
	errs := validateMeta(&o.ObjectMeta, true)
	spec := field.NewPath("spec")
	if ip := o.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		errs = append(errs, validateIP(spec.Child("clusterIP"), ip)...)
	}
	for i, ip := range o.Spec.ClusterIPs {
		if ip != corev1.ClusterIPNone {
			errs = append(errs, validateIP(spec.Child("clusterIPs").Index(i), ip)...)
		}
	}
	_, annErrs := BalancerConfig(o.Annotations)
	for _, key := range sortedErrKeys(annErrs) {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "annotations").Key(key), o.Annotations[key], annErrs[key].Error()))
	}
	names := map[string]bool{}
	for i, port := range o.Spec.Ports {
		p := spec.Child("ports").Index(i)
		for _, msg := range validation.IsValidPortNum(int(port.Port)) {
			errs = append(errs, field.Invalid(p.Child("port"), port.Port, msg))
		}
		if len(o.Spec.Ports) > 1 && port.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), "name every port of a Service with more than one port"))
		}
		if names[port.Name] {
			errs = append(errs, field.Duplicate(p.Child("name"), port.Name))
		}
		names[port.Name] = true
		switch port.Protocol {
		case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			errs = append(errs, field.NotSupported(p.Child("protocol"), port.Protocol, []string{"TCP", "UDP", "SCTP"}))
		}
		if tp := port.TargetPort; tp.IntVal != 0 {
			for _, msg := range validation.IsValidPortNum(int(tp.IntVal)) {
				errs = append(errs, field.Invalid(p.Child("targetPort"), tp.IntVal, msg))
			}
		}
		if port.AppProtocol != nil {
			if _, ok := ParseAppProtocol(*port.AppProtocol); !ok {
				errs = append(errs, field.NotSupported(p.Child("appProtocol"), *port.AppProtocol, KnownAppProtocols()))
			}
		}
	}
	return errs
}

func validateEndpointSlice(o *discoveryv1.EndpointSlice) FieldErrors {
	errs := validateMeta(&o.ObjectMeta, true)
	if o.Labels[discoveryv1.LabelServiceName] == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "labels").Key(discoveryv1.LabelServiceName),
			"label the slice with the name of its Service"))
	}
	switch o.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
	default:
		errs = append(errs, field.NotSupported(field.NewPath("addressType"), o.AddressType, []string{"IPv4", "IPv6", "FQDN"}))
	}
	for i, ep := range o.Endpoints {
		p := field.NewPath("endpoints").Index(i)
		if len(ep.Addresses) == 0 {
			errs = append(errs, field.Required(p.Child("addresses"), "an endpoint needs an address"))
		}
		if o.AddressType == discoveryv1.AddressTypeFQDN {
			continue
		}
		for j, a := range ep.Addresses {
			ap := p.Child("addresses").Index(j)
			ip, err := netip.ParseAddr(a)
			switch {
			case err != nil:
				errs = append(errs, field.Invalid(ap, a, "must be an IP address"))
			case o.AddressType == discoveryv1.AddressTypeIPv4 && !ip.Is4():
				errs = append(errs, field.Invalid(ap, a, "must be an IPv4 address (addressType is IPv4)"))
			case o.AddressType == discoveryv1.AddressTypeIPv6 && !ip.Is6():
				errs = append(errs, field.Invalid(ap, a, "must be an IPv6 address (addressType is IPv6)"))
			}
		}
	}
	for i, port := range o.Ports {
		if port.Port != nil {
			for _, msg := range validation.IsValidPortNum(int(*port.Port)) {
				errs = append(errs, field.Invalid(field.NewPath("ports").Index(i).Child("port"), *port.Port, msg))
			}
		}
	}
	return errs
}

func sortedErrKeys(m map[string]error) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ParsePorts parses a comma-separated list of ports, as in the
// exclude-outbound-ports annotation.
func ParsePorts(s string) ([]uint16, error) {
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a port: list ports from 1 to 65535, separated by commas", f)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}
