package telemetry

import "strconv"

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

// statusCodes are the response_code values of the status codes HTTP
// defines, made once: strconv allocates each time for codes from 100 up.
var statusCodes = func() (codes [600]string) {
	for c := 100; c < len(codes); c++ {
		codes[c] = strconv.Itoa(c)
	}
	return codes
}()

// ResponseCode is the response_code label value of an HTTP status code.
func ResponseCode(code int) string {
	if code >= 100 && code < len(statusCodes) {
		return statusCodes[code]
	}
	return strconv.Itoa(code)
}
