package model

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// FuzzParsePorts: a port list either parses into ports 1 to 65535 that
// print and parse back to the same list, or fails naming the bad entry.
func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"", "80", "80, 443,8080", "0", "65536", "80,,x", " 22 ,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts(s)
		if err != nil {
			require.Contains(t, err.Error(), "is not a port")
			return
		}
		strs := make([]string, len(ports))
		for i, p := range ports {
			require.NotZero(t, p)
			strs[i] = strconv.Itoa(int(p))
		}
		again, err := ParsePorts(strings.Join(strs, ","))
		require.NoError(t, err)
		require.Equal(t, len(ports), len(again))
		for i := range ports {
			require.Equal(t, ports[i], again[i])
		}
	})
}

// FuzzValidateService: validating a Service built from arbitrary field
// values never panics, gives the same answer twice, and every error names
// a field of the object.
func FuzzValidateService(f *testing.F) {
	f.Add("web", "shop", "10.96.0.10", int32(80), "8080", "http", "http")
	f.Add("", "", "None", int32(0), "", "", "")
	f.Add("Web_", "shop", "10.96.0.300", int32(70000), "-1", "k8s.io/h2c", "x y")
	f.Fuzz(func(t *testing.T, name, ns, clusterIP string, port int32, target, portName, appProto string) {
		svc := &corev1.Service{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: []corev1.ServicePort{{
				Name: portName, Port: port, TargetPort: intstr.Parse(target), AppProtocol: &appProto,
			}}},
		}
		errs := Validate(svc)
		require.Equal(t, errs.ToAggregate() == nil, Validate(svc).ToAggregate() == nil, "deterministic")
		for _, e := range errs {
			require.True(t, strings.HasPrefix(e.Field, "metadata.") || strings.HasPrefix(e.Field, "spec."), "error names a field: %v", e)
			require.NotEmpty(t, e.Error())
		}
	})
}
