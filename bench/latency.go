package bench

import (
	"math"
	"slices"
	"time"
)

// Schedule is a fixed-rate, open-loop send schedule: request i (from 0) is
// due at Due(i) after the start, whatever happened to the requests before
// it. A request's latency is measured from its due time, so time a request
// spends waiting for a free connection counts against the system under test.
type Schedule struct {
	// Rate is the number of requests per second; it must be positive.
	Rate int
}

// Due returns when request i is due, relative to the start. It is computed
// from i, never by adding intervals, so that rounding never accumulates.
func (s Schedule) Due(i int) time.Duration {
	return time.Duration(int64(i) * int64(time.Second) / int64(s.Rate))
}

// Count returns how many requests are due in [0, d).
func (s Schedule) Count(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	// The smallest i with Due(i) >= d.
	n := (int64(d)*int64(s.Rate) + int64(time.Second) - 1) / int64(time.Second)
	for n > 0 && s.Due(int(n-1)) >= d {
		n--
	}
	for s.Due(int(n)) < d {
		n++
	}
	return int(n)
}

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, which must be in ascending order: the smallest sample such that at
// least p percent of the samples are at or below it. It returns 0 for no
// samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// p*n/100 in floating point can land a hair above an integer (99.9% of
	// 41000 is 40959.00000000001), which would skip a rank: round to 1e-9
	// of a rank first.
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Summary describes a set of latency samples, in microseconds.
type Summary struct {
	Count int     `json:"count"`
	Min   float64 `json:"minUs"`
	Mean  float64 `json:"meanUs"`
	P50   float64 `json:"p50Us"`
	P90   float64 `json:"p90Us"`
	P99   float64 `json:"p99Us"`
	P999  float64 `json:"p999Us"`
	Max   float64 `json:"maxUs"`
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Summarize sorts samples in place and summarizes them.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, s := range samples {
		sum += s
	}
	return Summary{
		Count: len(samples),
		Min:   us(samples[0]),
		Mean:  us(sum / time.Duration(len(samples))),
		P50:   us(Percentile(samples, 50)),
		P90:   us(Percentile(samples, 90)),
		P99:   us(Percentile(samples, 99)),
		P999:  us(Percentile(samples, 99.9)),
		Max:   us(samples[len(samples)-1]),
	}
}

// Recorder collects latency samples from concurrent workers without locks:
// each worker owns one Lane.
type Recorder struct {
	lanes []*Lane
}

// Lane is one worker's samples.
type Lane struct {
	// Latency is measured from the due time (coordinated-omission free);
	// Service from the moment the request was actually sent.
	Latency, Service []time.Duration
	Errors           int
	FirstError       error
}

// NewRecorder returns a recorder with one lane per worker, each with room
// for capacity samples.
func NewRecorder(workers, capacity int) *Recorder {
	r := &Recorder{lanes: make([]*Lane, workers)}
	for i := range r.lanes {
		r.lanes[i] = &Lane{Latency: make([]time.Duration, 0, capacity), Service: make([]time.Duration, 0, capacity)}
	}
	return r
}

// Lane returns worker i's lane.
func (r *Recorder) Lane(i int) *Lane { return r.lanes[i] }

// Record adds one successful request: due is when it was due, sent when it
// went out, done when its answer was complete.
func (l *Lane) Record(due, sent, done time.Time) {
	l.Latency = append(l.Latency, done.Sub(due))
	l.Service = append(l.Service, done.Sub(sent))
}

// Fail counts one failed request.
func (l *Lane) Fail(err error) {
	l.Errors++
	if l.FirstError == nil {
		l.FirstError = err
	}
}

// Merge returns every lane's samples together, and the errors.
func (r *Recorder) Merge() (latency, service []time.Duration, errors int, first error) {
	for _, l := range r.lanes {
		latency = append(latency, l.Latency...)
		service = append(service, l.Service...)
		errors += l.Errors
		if first == nil {
			first = l.FirstError
		}
	}
	return latency, service, errors, first
}
