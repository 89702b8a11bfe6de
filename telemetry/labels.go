package telemetry

// The labels of request metrics: Istio's standard set, so dashboards and
// Kiali-style graphs built for Istio map onto Skein's metrics.
var requestLabelNames = []string{
	"reporter",
	"source_workload", "source_namespace", "source_principal",
	"destination_service", "destination_workload", "destination_namespace",
	"request_protocol", "response_code", "grpc_status", "response_flags",
	"connection_security_policy",
}

// durationLabelNames are requestLabelNames without response_flags: the
// histograms would multiply their series by the flags for little use.
var durationLabelNames = []string{
	"reporter",
	"source_workload", "source_namespace", "source_principal",
	"destination_service", "destination_workload", "destination_namespace",
	"request_protocol", "response_code", "grpc_status",
	"connection_security_policy",
}

// RequestLabels describe one request for the request metrics. Values are
// bounded: workloads, namespaces, services, codes and flags; never pod IPs
// or paths.
type RequestLabels struct {
	Reporter             string // "source" or "destination"
	SourceWorkload       string
	SourceNamespace      string
	SourcePrincipal      string
	DestinationService   string // the Service's cluster DNS name, or "unknown"
	DestinationWorkload  string
	DestinationNamespace string
	RequestProtocol      string // "http", "http2", "grpc"
	ResponseCode         string
	GRPCStatus           string
	ResponseFlags        string // "-" when none
	SecurityPolicy       string // "mutual_tls" or "none"
}

func (l *RequestLabels) values() []string {
	return []string{
		l.Reporter,
		orUnknown(l.SourceWorkload), orUnknown(l.SourceNamespace), orUnknown(l.SourcePrincipal),
		orUnknown(l.DestinationService), orUnknown(l.DestinationWorkload), orUnknown(l.DestinationNamespace),
		l.RequestProtocol, l.ResponseCode, l.GRPCStatus, l.ResponseFlags, l.SecurityPolicy,
	}
}

func (l *RequestLabels) durationValues() []string {
	return []string{
		l.Reporter,
		orUnknown(l.SourceWorkload), orUnknown(l.SourceNamespace), orUnknown(l.SourcePrincipal),
		orUnknown(l.DestinationService), orUnknown(l.DestinationWorkload), orUnknown(l.DestinationNamespace),
		l.RequestProtocol, l.ResponseCode, l.GRPCStatus, l.SecurityPolicy,
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
