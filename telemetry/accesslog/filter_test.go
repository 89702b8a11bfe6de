package accesslog

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFilterKeep(t *testing.T) {
	type rec struct {
		code    int
		flagged bool
		sampled bool
		key     string
	}
	// A key this filter keeps at 1% and one it does not (checked below).
	in, out := "", ""
	f1, err := NewFilter(FilterConfig{SampleRate: 0.01})
	require.NoError(t, err)
	for i := 0; in == "" || out == ""; i++ {
		k := fmt.Sprintf("%032x", i)
		if f1.Keep(200, false, false, k) {
			in = k
		} else {
			out = k
		}
	}
	tests := []struct {
		name string
		cfg  FilterConfig
		rec  rec
		want bool
	}{
		{"a 5xx always", FilterConfig{}, rec{code: 503}, true},
		{"a response flag always", FilterConfig{}, rec{code: 200, flagged: true}, true},
		{"a failed TCP connection always", FilterConfig{}, rec{code: 0, flagged: true}, true},
		{"a 200 not by default", FilterConfig{}, rec{code: 200, key: in}, false},
		{"a 404 not by default", FilterConfig{}, rec{code: 404}, false},
		{"a chosen class", FilterConfig{StatusClasses: []string{"4xx"}}, rec{code: 404}, true},
		{"another class", FilterConfig{StatusClasses: []string{"4xx"}}, rec{code: 302}, false},
		{"everything at rate 1", FilterConfig{SampleRate: 1}, rec{code: 200}, true},
		{"TCP at rate 1", FilterConfig{SampleRate: 1}, rec{}, true},
		{"sampled in", FilterConfig{SampleRate: 0.01}, rec{code: 200, key: in}, true},
		{"sampled out", FilterConfig{SampleRate: 0.01}, rec{code: 200, key: out}, false},
		{"no key, no sample", FilterConfig{SampleRate: 0.5}, rec{code: 200}, false},
		{"a sampled trace when asked", FilterConfig{SampledTraces: true}, rec{code: 200, sampled: true, key: out}, true},
		{"a sampled trace when not asked", FilterConfig{}, rec{code: 200, sampled: true, key: out}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewFilter(tt.cfg)
			require.NoError(t, err)
			require.Equal(t, tt.want, f.Keep(tt.rec.code, tt.rec.flagged, tt.rec.sampled, tt.rec.key))
		})
	}
}

func TestFilterSampleRatio(t *testing.T) {
	for _, rate := range []float64{0, 0.01, 0.1, 0.5} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			f, err := NewFilter(FilterConfig{SampleRate: rate})
			require.NoError(t, err)
			const n = 200000
			kept := 0
			for i := 0; i < n; i++ {
				// Trace ids as the proxy makes them: random hex, here
				// sequential to stress the hash.
				if f.Keep(200, false, false, fmt.Sprintf("%032x", i)) {
					kept++
				}
			}
			require.InDelta(t, rate, float64(kept)/n, 0.005)
		})
	}
	t.Run("every hop of a request decides alike", func(t *testing.T) {
		a, _ := NewFilter(FilterConfig{SampleRate: 0.3})
		b, _ := NewFilter(FilterConfig{SampleRate: 0.3})
		for i := 0; i < 1000; i++ {
			k := fmt.Sprintf("4bf92f3577b34da6a3ce929d0e0e%04x", i)
			require.Equal(t, a.Keep(200, false, false, k), b.Keep(200, false, false, k))
		}
	})
}

func TestFilterRedact(t *testing.T) {
	tests := []struct {
		r           Redaction
		path, route string
		want        string
	}{
		{RedactNone, "/items?token=secret", "HTTPRoute shop/api rule 0", "/items?token=secret"},
		{RedactQuery, "/items?token=secret", "HTTPRoute shop/api rule 0", "/items"},
		{"", "/items?token=secret", "", "/items"},
		{RedactQuery, "/items", "", "/items"},
		{RedactRoute, "/users/4711/orders", "HTTPRoute shop/api rule 1", "HTTPRoute shop/api rule 1"},
		{RedactRoute, "/users/4711/orders", "", ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.r)+" "+tt.path, func(t *testing.T) {
			f, err := NewFilter(FilterConfig{Redaction: tt.r})
			require.NoError(t, err)
			require.Equal(t, tt.want, f.Redact(tt.path, tt.route))
		})
	}
}

func TestFilterConfigErrors(t *testing.T) {
	_, err := NewFilter(FilterConfig{StatusClasses: []string{"5xx", "6xx", "error"}, SampleRate: 1.5, Redaction: "all"})
	require.ErrorContains(t, err, `status class "6xx"`)
	require.ErrorContains(t, err, `status class "error"`)
	require.ErrorContains(t, err, "sample rate 1.5")
	require.ErrorContains(t, err, `path redaction "all"`)
}

func BenchmarkFilterKeep(b *testing.B) {
	f, err := NewFilter(FilterConfig{SampleRate: 0.01})
	require.NoError(b, err)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		f.Keep(200, false, false, "4bf92f3577b34da6a3ce929d0e0e4736")
	}
}
