package model

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// NewScheme returns a scheme with every kind the model reads.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, discoveryv1.AddToScheme, gatewayv1.Install, AddSecurityToScheme,
	} {
		if err := add(s); err != nil {
			panic(fmt.Sprintf("build scheme: %v", err)) // a programming error, caught by every test
		}
	}
	return s
}
