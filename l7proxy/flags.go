package l7proxy

// Response flags, as in Envoy and Istio access logs and metrics, so that
// dashboards and habits carry over.
const (
	FlagNone               = "-"
	FlagNoRoute            = "NR" // no route or service for the destination
	FlagNoHealthyUpstream  = "UH" // the service has no (healthy) endpoint
	FlagUpstreamConnect    = "UF" // connecting to the endpoint failed
	FlagUpstreamTimeout    = "UT" // the endpoint did not answer in time
	FlagUpstreamOverflow   = "UO" // circuit breaker open
	FlagUpstreamReset      = "UR" // the endpoint reset the connection
	FlagDownstreamClosed   = "DC" // the client went away first
	FlagNotCaptured        = "NC" // the connection was not steered by capture
	FlagUnauthorized       = "UAEX"
	FlagRateLimited        = "RL"
	FlagDownstreamProtocol = "DPE" // the client sent something that is not the protocol
)
