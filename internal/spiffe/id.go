package spiffe

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ID is a workload's SPIFFE ID.
type ID struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// ErrNotSPIFFE is returned for a certificate or string that carries no
// Skein workload SPIFFE ID.
var ErrNotSPIFFE = errors.New("not a workload SPIFFE ID")

func (id ID) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL returns the ID as a URI SAN.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

// Principal is the ID as Istio's AuthorizationPolicy writes principals:
// "<trust-domain>/ns/<namespace>/sa/<service-account>".
func (id ID) Principal() string { return strings.TrimPrefix(id.String(), "spiffe://") }

// IsZero reports whether the ID is empty.
func (id ID) IsZero() bool { return id == ID{} }

// Parse parses spiffe://<td>/ns/<ns>/sa/<sa> with the SPIFFE ID
// specification's character sets: a trust domain of lower-case letters,
// digits, '.', '-' and '_', path segments of letters, digits, '.', '-' and
// '_', and nothing else (no port, user, query, fragment or
// percent-encoding, which would let two strings name one ID).
func Parse(s string) (ID, error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	td, path, _ := strings.Cut(rest, "/")
	if !ok || td == "" || !validChars(td, false) {
		return ID{}, fmt.Errorf("%w: %q: want spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, "+
			"the trust domain of lower-case letters, digits, '.', '-' and '_'", ErrNotSPIFFE, s)
	}
	parts := strings.Split(path, "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" || !validSegment(parts[1]) || !validSegment(parts[3]) {
		return ID{}, fmt.Errorf("%w: %q: want spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, "+
			"each of letters, digits, '.', '-' and '_'", ErrNotSPIFFE, s)
	}
	return ID{TrustDomain: td, Namespace: parts[1], ServiceAccount: parts[3]}, nil
}

func validSegment(s string) bool { return s != "" && s != "." && s != ".." && validChars(s, true) }

func validChars(s string, upper bool) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		case upper && c >= 'A' && c <= 'Z':
		default:
			return false
		}
	}
	return true
}

// FromCert returns the ID in a certificate's single URI SAN, as the SPIFFE
// X.509-SVID specification requires (exactly one URI SAN).
func FromCert(c *x509.Certificate) (ID, error) {
	if len(c.URIs) != 1 {
		return ID{}, fmt.Errorf("%w: certificate has %d URI SANs, an SVID has exactly one", ErrNotSPIFFE, len(c.URIs))
	}
	return Parse(c.URIs[0].String())
}

// SNI is the TLS server name a tunnel client sends to ask the peer node for
// the certificate of this workload identity: a hash, since SPIFFE IDs are
// not DNS names. The server computes the same for its local identities.
func (id ID) SNI() string {
	sum := sha256.Sum256([]byte(id.String()))
	return hex.EncodeToString(sum[:16]) + ".id.skein"
}
