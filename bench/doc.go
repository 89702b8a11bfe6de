// Package bench holds the measuring parts of Skein's benchmark harness
// (bench/cmd/skein-bench, run by `make bench`): an open-loop request
// schedule whose latencies are taken from each request's intended send
// time, so that a stalled system cannot hide its stall by slowing the
// client down (coordinated omission); exact-sample percentiles; and the
// /proc readings (CPU seconds, peak RSS) of the proxy processes under test.
//
// The harness itself (lab topology, proxies, load matrix, report) lives in
// the command; this package is the part whose arithmetic must be right, and
// is unit-tested without privileges.
package bench
