package balancer

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    Policy
		wantErr bool
	}{
		{in: "p2c-ewma", want: P2CEWMA},
		{in: "round-robin", want: RoundRobin},
		{in: "random", want: Random},
		{in: "  Round-Robin\n", want: RoundRobin},
		{in: "", want: P2CEWMA},
		{in: "least-request", wantErr: true},
		{in: "ROUND_ROBIN", wantErr: true},
		{in: "p2c", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePolicy(tt.in)
			if !tt.wantErr {
				require.NoError(t, err)
				require.Equal(t, tt.want, got)
				return
			}
			require.ErrorIs(t, err, ErrUnknownPolicy)
			msg := err.Error()
			require.Contains(t, msg, PolicyAnnotation, "the error names the annotation")
			require.Contains(t, msg, `"`+tt.in+`"`, "the error quotes the bad value")
			for _, valid := range []string{"p2c-ewma", "round-robin", "random"} {
				require.Contains(t, msg, valid, "the error lists the valid values")
			}
		})
	}
}

func TestPolicyText(t *testing.T) {
	for _, p := range []Policy{P2CEWMA, RoundRobin, Random} {
		t.Run(p.String(), func(t *testing.T) {
			b, err := json.Marshal(p)
			require.NoError(t, err)
			var back Policy
			require.NoError(t, json.Unmarshal(b, &back))
			require.Equal(t, p, back)
			got, err := ParsePolicy(p.String())
			require.NoError(t, err)
			require.Equal(t, p, got)
		})
	}
	_, err := Policy(9).MarshalText()
	require.ErrorIs(t, err, ErrUnknownPolicy)
	require.Equal(t, "Policy(9)", Policy(9).String())
	var p Policy
	require.ErrorIs(t, json.Unmarshal([]byte(`"weighted"`), &p), ErrUnknownPolicy)
}

func TestConfigDefaults(t *testing.T) {
	got := Config{}.WithDefaults()
	require.Equal(t, Config{
		Policy:     P2CEWMA,
		DefaultRTT: 30 * time.Millisecond,
		Decay:      10 * time.Second,
		Outlier: OutlierConfig{
			Consecutive5xx:             5,
			ConsecutiveConnectFailures: 5,
			BaseEjection:               30 * time.Second,
			MaxEjection:                300 * time.Second,
			MaxEjectionPercent:         50,
		},
		Breaker: BreakerConfig{MaxPending: 1024, MaxConnections: 1024},
	}, got)

	// Set fields and disabled detectors stay; MaxEjection follows a long base.
	in := Config{Policy: Random, Outlier: OutlierConfig{Consecutive5xx: -1, BaseEjection: 10 * time.Minute}}
	got = in.WithDefaults()
	require.Equal(t, Random, got.Policy)
	require.Equal(t, -1, got.Outlier.Consecutive5xx)
	require.Equal(t, 10*time.Minute, got.Outlier.MaxEjection)
}

func TestNewValidatesConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // every one must appear in the error
	}{
		{"unknown policy", Config{Policy: 7}, []string{"Policy 7"}},
		{"negative default RTT", Config{DefaultRTT: -time.Second}, []string{"DefaultRTT -1s"}},
		{"tiny decay", Config{Decay: time.Microsecond}, []string{"Decay 1µs", "at least 1ms"}},
		{"negative ejection", Config{Outlier: OutlierConfig{BaseEjection: -1}}, []string{"Outlier.BaseEjection"}},
		{"max below base", Config{Outlier: OutlierConfig{BaseEjection: time.Minute, MaxEjection: time.Second}},
			[]string{"Outlier.MaxEjection 1s", "below Outlier.BaseEjection 1m0s"}},
		{"max below default base", Config{Outlier: OutlierConfig{MaxEjection: time.Second}},
			[]string{"Outlier.MaxEjection 1s", "default Outlier.BaseEjection 30s"}},
		{"percent over 100", Config{Outlier: OutlierConfig{MaxEjectionPercent: 101}}, []string{"Outlier.MaxEjectionPercent 101"}},
		{"negative breaker", Config{Breaker: BreakerConfig{MaxPending: -1, MaxConnections: -2}},
			[]string{"Breaker.MaxPending -1", "Breaker.MaxConnections -2"}},
		{"all problems joined", Config{Policy: 9, Decay: -1, Outlier: OutlierConfig{MaxEjectionPercent: -5}},
			[]string{"Policy 9", "Decay -1ns", "Outlier.MaxEjectionPercent -5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(tt.cfg, nil)
			require.Error(t, err)
			require.Nil(t, b)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	b, err := New(Config{Outlier: OutlierConfig{Consecutive5xx: -1, ConsecutiveConnectFailures: -1}}, nil)
	require.NoError(t, err, "negative thresholds disable detectors")
	require.NotNil(t, b)
}

func TestMaxEjected(t *testing.T) {
	tests := []struct {
		n, percent, want int
	}{
		{0, 50, 0},
		{1, 100, 0}, // never the only endpoint
		{2, 50, 1},
		{2, 100, 1}, // never all
		{3, 50, 1},  // 1.5 rounds down
		{4, 50, 2},
		{5, 10, 1}, // 0.5 rounds down, but one may always be ejected
		{10, 10, 1},
		{10, 100, 9},
		{100, 50, 50},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, maxEjected(tt.n, tt.percent), "n=%d percent=%d", tt.n, tt.percent)
	}
}
