package route

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// ReasonConflicted is the Accepted reason of a route that lost, on every
// port of its parent, to a route of another kind attached to the same
// Service port. GEP-1294 ("Route types"): "If multiple routes with different
// types both bind to the same Service and Port pair, only a single route
// type should be applied. The rejected routes should be ignored and have the
// RouteConditionAccepted status set to the (new) reason
// RouteReasonConflicted", GRPCRoute winning over HTTPRoute.
const ReasonConflicted gatewayv1.RouteConditionReason = "Conflicted"

// Status is the outcome of [Compile] for one route: the conditions to
// publish for each of its parentRefs that Skein is responsible for (those
// with group "" and kind Service). A route with no such parentRef is not
// Skein's and has no Parents.
type Status struct {
	// Route is the route.
	Route RouteID
	// Generation is the route's metadata.generation, also set as
	// ObservedGeneration on every condition.
	Generation int64
	// Parents has one entry per Service parentRef, in spec order.
	Parents []ParentStatus
}

// ParentStatus is the status of a route for one Service parentRef.
type ParentStatus struct {
	// ParentRef is the parentRef as written in the route's spec.
	ParentRef gatewayv1.ParentReference
	// Conditions are Accepted, ResolvedRefs and, when some rules were
	// dropped, PartiallyInvalid. LastTransitionTime is left zero: the writer
	// of the status sets it when a condition's status changes, which keeps
	// Compile a pure function.
	Conditions []metav1.Condition
}

// Condition returns the condition of type t, or nil.
func (p *ParentStatus) Condition(t gatewayv1.RouteConditionType) *metav1.Condition {
	for i := range p.Conditions {
		if p.Conditions[i].Type == string(t) {
			return &p.Conditions[i]
		}
	}
	return nil
}

// RouteParentStatus converts p to the API's form, as the controller
// controllerName writes it.
func (p *ParentStatus) RouteParentStatus(controllerName gatewayv1.GatewayController) gatewayv1.RouteParentStatus {
	return gatewayv1.RouteParentStatus{
		ParentRef:      p.ParentRef,
		ControllerName: controllerName,
		Conditions:     append([]metav1.Condition(nil), p.Conditions...),
	}
}

func condition(t gatewayv1.RouteConditionType, ok bool, reason gatewayv1.RouteConditionReason, msg string, gen int64) metav1.Condition {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	// metav1.Condition.Message has a maximum length of 32768.
	if len(msg) > 32768 {
		msg = msg[:32765] + "..."
	}
	return metav1.Condition{Type: string(t), Status: st, Reason: string(reason), Message: msg, ObservedGeneration: gen}
}
