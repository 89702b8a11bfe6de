package spiffe

import (
	"strings"
	"testing"
)

// FuzzParse: a string either is a workload SPIFFE ID, which prints back to
// an equal ID with a DNS-safe SNI, or fails with ErrNotSPIFFE naming it.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"spiffe://cluster.local/ns/shop/sa/web", "spiffe://td/ns/a/sa/b/c", "spiffe://td/ns//sa/b",
		"http://td/ns/a/sa/b", "spiffe://u@td/ns/a/sa/b", "spiffe://td/ns/a%2Fb/sa/c", "spiffe://TD:80/ns/a/sa/b?x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			if !strings.Contains(err.Error(), ErrNotSPIFFE.Error()) {
				t.Fatalf("error %q does not say what is wrong", err)
			}
			return
		}
		if id.TrustDomain == "" || id.Namespace == "" || id.ServiceAccount == "" {
			t.Fatalf("%q parsed into an ID with an empty part: %#v", s, id)
		}
		again, err := Parse(id.String())
		if err != nil || again != id {
			t.Fatalf("%q -> %q -> %#v, %v: does not round-trip", s, id.String(), again, err)
		}
		if u := id.URL().String(); u != id.String() {
			// URL escapes what String does not: both must name the same ID.
			if back, err := Parse(u); err != nil || back != id {
				t.Fatalf("URL %q of %q parses to %#v, %v", u, s, back, err)
			}
		}
		if sni := id.SNI(); len(sni) != 32+len(".id.skein") || strings.ContainsAny(sni, "/:@ ") {
			t.Fatalf("SNI %q is not a DNS name", sni)
		}
	})
}
