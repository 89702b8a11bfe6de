package identity

import (
	"crypto/x509"

	"github.com/skeinmesh/skein/internal/spiffe"
)

// ID is a workload's SPIFFE ID.
type ID = spiffe.ID

// ErrNotSPIFFE is returned for a certificate or string that carries no
// workload SPIFFE ID.
var ErrNotSPIFFE = spiffe.ErrNotSPIFFE

// Parse parses spiffe://<td>/ns/<ns>/sa/<sa>.
func Parse(s string) (ID, error) { return spiffe.Parse(s) }

// FromCert returns the ID in a certificate's single URI SAN.
func FromCert(c *x509.Certificate) (ID, error) { return spiffe.FromCert(c) }
