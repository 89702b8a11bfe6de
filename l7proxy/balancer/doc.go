// Package balancer chooses, for every HTTP request, gRPC call or TCP
// connection the node proxy forwards, one endpoint of the destination
// service port, and keeps the passive health state that choice relies on:
// latency estimates, requests in flight, outlier ejection and circuit
// breaking. A [RetryBudget] keeps retries from amplifying an outage.
//
// The proxy keeps one [Balancer] per service port in a [Registry], so that
// state survives its table swaps; [Balancer.Update] applies EndpointSlice
// changes without losing the state of the endpoints that stay. Each request
// does [Balancer.Pick], sends to [Handle.Addr], and reports its [Result]
// with [Handle.Done]. Pick and Done take no lock and, once warm, do not
// allocate: endpoint lists are immutable and swapped atomically, per-endpoint
// state is in atomics, handles are pooled, and randomness comes from
// math/rand/v2's per-thread runtime generator. There are no timers or
// background goroutines: ejections expire when a Pick looks at them.
//
// # Policies
//
// The policy is chosen per Service with the skein.io/lb-policy annotation
// ([ParsePolicy]); each policy is a small [Selector].
//
//   - p2c-ewma (default), as Linkerd: power of two choices (Mitzenmacher,
//     "The Power of Two Choices in Randomized Load Balancing", 2001). Draw
//     two distinct selectable endpoints at random and take the one with the
//     lower cost = peak-EWMA latency * (requests in flight + 1). Two random
//     choices avoid the herding of "always the least loaded" while getting
//     almost all of its benefit, in O(1).
//   - round-robin: an atomic cursor over the selectable endpoints.
//   - random: uniform over the selectable endpoints.
//
// # Peak EWMA
//
// As in Finagle's PeakEwma and Linkerd's (tower's) peak_ewma, each endpoint
// has a latency estimate that
//
//   - starts at DefaultRTT (30ms), so a new endpoint gets traffic before it
//     has been measured, without being flooded;
//   - jumps to an observed latency at once when it is higher ("peak"), so a
//     slowing endpoint loses traffic within one response;
//   - otherwise moves toward the observation with weight 1-exp(-Δt/Decay),
//     Δt being the time since the last update: an EWMA for unevenly spaced
//     samples (Eckner, "Algorithms for Unevenly Spaced Time Series");
//   - decays toward zero with the time constant Decay (10s) while nothing
//     is observed, so an endpoint that lost all traffic is probed again and
//     recovers "cautiously" rather than never.
//
// Two departures, both deliberate. Finagle and tower write the decay back on
// every read, so their estimate depends on how often the balancer looks;
// here a read computes the decay without writing, and the estimate and its
// timestamp pack into one 64-bit word updated by compare-and-swap. And a
// failed request (5xx, connect failure, timeout) may raise the estimate but
// never lower it: a refusing endpoint answers fastest, and latency-aware
// balancers otherwise pour traffic into it. Set [Result.Latency] to the time
// to response headers (or the connect time for TCP) so that a long-lived
// stream does not read as a slow endpoint.
//
// # Outlier detection
//
// Passive, as Envoy's outlier detection with split local-origin errors:
// Consecutive5xx (5) responses with any 5xx status in a row, or
// ConsecutiveConnectFailures (5) connect failures or timeouts in a row,
// eject an endpoint for BaseEjection (30s) times the number of its
// ejections, capped at MaxEjection (300s); every BaseEjection spent back in
// service forgives one past ejection. A response resets the connect counter;
// a non-5xx response resets both. Results of requests sent before an
// ejection do not count. At most MaxEjectionPercent (50) of a service port's
// endpoints are ejected at once, rounded down but at least one when there
// are two or more (as Envoy), and never all: with one endpoint nothing is
// ejected, and if Updates leave only ejected endpoints, Pick ignores
// ejection (Envoy's panic mode) rather than fail.
//
// # Circuit breaking
//
// Per endpoint: an endpoint with MaxPending (1024) requests in flight is not
// selectable, and Pick returns [ErrOverflow] when none is (the proxy
// answers 503 with flag UO). [Handle.ReserveConn] caps open connections per
// endpoint at MaxConnections (1024). 1024 is Envoy's default; it is per
// endpoint here, a guard against one stuck endpoint soaking up requests
// rather than a capacity limit.
//
// # Retry budget
//
// [RetryBudget] is Finagle's and Linkerd's: over a sliding TTL window (10s,
// in ten buckets), retries may be at most MinRetriesPerSecond (10) * TTL
// plus Ratio (0.2) times the original requests. During an outage every
// request fails, so retries stay within 20% extra load instead of
// multiplying it. Gateway API's BackendTrafficPolicy retry constraint has
// the same defaults.
package balancer
