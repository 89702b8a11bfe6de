package route

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// ErrInvalidDuration is returned (wrapped) by [ParseDuration] for a string
// that is not a Gateway API duration.
var ErrInvalidDuration = errors.New("invalid Gateway API duration")

// durationRE is the GEP-2257 grammar: "MUST match the regular expression
// ^([0-9]{1,5}(h|m|s|ms)){1,4}$".
var durationRE = regexp.MustCompile(`^([0-9]{1,5}(h|m|s|ms)){1,4}$`)

// ParseDuration parses a Gateway API duration (GEP-2257): one to four
// components of one to five decimal digits followed by h, m, s or ms, such
// as "10s", "500ms", "1h30m". Components add up, so "1h2h20m10m" is 3h30m.
// A GEP-2257 duration "MUST be interpreted as specified by Golang's
// time.ParseDuration" once it matches the grammar, which is what this does.
func ParseDuration(s string) (time.Duration, error) {
	if !durationRE.MatchString(s) {
		return 0, fmt.Errorf("%w %q: want 1 to 4 of <1-5 digits><h|m|s|ms>, e.g. 10s, 500ms, 1h30m", ErrInvalidDuration, s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w %q: %w", ErrInvalidDuration, s, err)
	}
	return d, nil
}
