package route

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// TestParseDuration uses the test vectors of GEP-2257.
func TestParseDuration(t *testing.T) {
	valid := []struct {
		in   string
		want time.Duration
	}{
		{"0h", 0},
		{"0s", 0},
		{"0h0m0s", 0},
		{"1h", time.Hour},
		{"30m", 30 * time.Minute},
		{"10s", 10 * time.Second},
		{"500ms", 500 * time.Millisecond},
		{"2h30m", 150 * time.Minute},
		{"150m", 150 * time.Minute},
		{"7230s", 2*time.Hour + 30*time.Second},
		{"1h30m10s", time.Hour + 30*time.Minute + 10*time.Second},
		{"10s30m1h", time.Hour + 30*time.Minute + 10*time.Second},
		{"100ms200ms300ms", 600 * time.Millisecond},
		{"01h", time.Hour},
		{"00060m", time.Hour},
		{"1h2h20m10m", 3*time.Hour + 30*time.Minute},
	}
	for _, tt := range valid {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	invalid := []string{
		"1",               // missing unit
		"1m1",             // missing unit
		"1d",              // days are not supported
		"1h30m10s20ms50h", // too many components
		"999999h",         // too many digits
		"1.5h",            // floating point
		"-15m",            // negative
		"",                // empty
		"10us",            // unit not in GEP-2257
		"1h ",             // trailing space
	}
	for _, in := range invalid {
		t.Run("invalid "+in, func(t *testing.T) {
			_, err := ParseDuration(in)
			require.ErrorIs(t, err, ErrInvalidDuration)
		})
	}
}

func TestTimeoutsAndRetry(t *testing.T) {
	tests := []struct {
		name     string
		rule     string
		timeouts Timeouts
		retry    *Retry
	}{
		{"none", `{}`, Timeouts{}, nil},
		{"request only", `{timeouts: {request: 10s}}`, Timeouts{Request: 10 * time.Second}, nil},
		{"both", `{timeouts: {request: 1m, backendRequest: 500ms}}`, Timeouts{Request: time.Minute, BackendRequest: 500 * time.Millisecond}, nil},
		{"0s disables", `{timeouts: {request: 0s, backendRequest: 1h}}`, Timeouts{BackendRequest: time.Hour}, nil},
		{"retry defaults", `{retry: {}}`, Timeouts{}, &Retry{Attempts: DefaultRetryAttempts, Backoff: DefaultRetryBackoff}},
		{"retry full", `{retry: {codes: [503, 500, 429], attempts: 3, backoff: 100ms}}`, Timeouts{},
			&Retry{Codes: []int{429, 500, 503}, Attempts: 3, Backoff: 100 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			route := httpRoute(t, `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: t, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules: [`+tt.rule+`]
`)
			tbl := mustCompile(t, defaultServices(), []*gatewayv1.HTTPRoute{route}, nil)
			rule := tbl.Match(shopWeb, "client", req("GET", "/")).Rule
			require.NotNil(t, rule)
			require.Equal(t, tt.timeouts, rule.Timeouts)
			require.Equal(t, tt.retry, rule.Retry)
		})
	}

	t.Run("RetryOn", func(t *testing.T) {
		r := &Retry{Codes: []int{500, 503}}
		require.True(t, r.RetryOn(503))
		require.False(t, r.RetryOn(502))
		require.False(t, r.RetryOn(200))
	})
}
