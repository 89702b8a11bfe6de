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

// Parse parses spiffe://<td>/ns/<ns>/sa/<sa>.
func Parse(s string) (ID, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "spiffe" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return ID{}, fmt.Errorf("%w: %q", ErrNotSPIFFE, s)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" || parts[1] == "" || parts[3] == "" {
		return ID{}, fmt.Errorf("%w: %q: want spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>", ErrNotSPIFFE, s)
	}
	return ID{TrustDomain: u.Host, Namespace: parts[1], ServiceAccount: parts[3]}, nil
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
