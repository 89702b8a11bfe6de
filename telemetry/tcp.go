package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
)

// tcpLabelNames are the labels of the skein_tcp_* families: Istio's L4 set.
// skein_tcp_resets_total adds direction.
var tcpLabelNames = []string{
	"reporter",
	"source_workload", "source_namespace",
	"destination_service", "destination_workload", "destination_namespace",
	"connection_security_policy",
}

// TCPLabels are one label set of the TCP families: a pair of workloads as
// one side of their connections saw it. Values are bounded (workloads,
// namespaces, services); never pod IPs or ports.
type TCPLabels struct {
	// Reporter is "source" for the connects the node's pods made and
	// "destination" for the connections they accepted.
	Reporter             string
	SourceWorkload       string
	SourceNamespace      string
	DestinationService   string // the Service's cluster DNS name, or "unknown"
	DestinationWorkload  string
	DestinationNamespace string
	// SecurityPolicy is "mutual_tls", "none" or "unknown"; see the package
	// documentation for what each means for the TCP families.
	SecurityPolicy string
}

func (l *TCPLabels) values() []string {
	return []string{
		l.Reporter,
		orUnknown(l.SourceWorkload), orUnknown(l.SourceNamespace),
		orUnknown(l.DestinationService), orUnknown(l.DestinationWorkload), orUnknown(l.DestinationNamespace),
		orUnknown(l.SecurityPolicy),
	}
}

// Histogram is a histogram with cumulative bucket counts, as the kernel's
// flow aggregates keep them.
type Histogram struct {
	// Bounds are the upper bounds in seconds, ascending, +Inf left out.
	Bounds []float64
	// Counts are cumulative: Counts[i] samples were <= Bounds[i].
	Counts []uint64
	// Count is every sample, including those above the last bound.
	Count uint64
	// Sum is the sum of the samples in seconds.
	Sum float64
}

// buckets is the bucket map prometheus.NewConstHistogram takes.
func (h *Histogram) buckets() map[float64]uint64 {
	m := make(map[float64]uint64, len(h.Bounds))
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			m[b] = h.Counts[i]
		}
	}
	return m
}

// TCPStats are the figures of one label set. Counters only grow.
type TCPStats struct {
	// Opened counts connections established; Closed those that ended
	// after being established; Failed connects that never were.
	Opened, Closed, Failed uint64
	// Retransmits counts retransmitted segments of the reporter's side.
	Retransmits uint64
	// ResetsSent counts RST segments the reporter's pod sent, ResetsReceived
	// those it received.
	ResetsSent, ResetsReceived uint64
	// SentBytes is payload from the destination to the source (responses),
	// ReceivedBytes payload from the source to the destination (requests),
	// whichever side reports: Istio's istio_tcp_sent_bytes_total and
	// istio_tcp_received_bytes_total.
	SentBytes, ReceivedBytes uint64
	// RTT samples the smoothed round-trip time; Connect the time from SYN
	// to established (the source's connects only).
	RTT, Connect Histogram
}

// TCPSeries is one label set with its figures.
type TCPSeries struct {
	Labels TCPLabels
	Stats  TCPStats
}

// TCPSource gives the TCP figures of the node's pods, computed at scrape
// time.
type TCPSource interface {
	TCPSeries() ([]TCPSeries, error)
}

// tcpCounter is the shared body of the TCP counter families: one series
// per label set, the value picked by value.
func tcpCounter(ch chan<- prometheus.Metric, src TCPSource, desc *prometheus.Desc, value func(*TCPStats) uint64) error {
	series, err := src.TCPSeries()
	if err != nil {
		return err
	}
	for i := range series {
		s := &series[i]
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(value(&s.Stats)), s.Labels.values()...)
	}
	return nil
}

// tcpHistogram is the shared body of the TCP histogram families; label sets
// without a sample are left out (inbound flows have no connect time).
func tcpHistogram(ch chan<- prometheus.Metric, src TCPSource, desc *prometheus.Desc, hist func(*TCPStats) *Histogram) error {
	series, err := src.TCPSeries()
	if err != nil {
		return err
	}
	for i := range series {
		s := &series[i]
		h := hist(&s.Stats)
		if h.Count == 0 {
			continue
		}
		ch <- prometheus.MustNewConstHistogram(desc, h.Count, h.Sum, h.buckets(), s.Labels.values()...)
	}
	return nil
}
