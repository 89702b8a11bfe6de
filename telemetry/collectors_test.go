package telemetry

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"
)

type fakeAgent struct {
	maps    []MapFill
	mapsErr error
}

func (f *fakeAgent) MapFill() ([]MapFill, error) { return f.maps, f.mapsErr }
func (f *fakeAgent) CaptureVerdicts() (map[string]uint64, error) {
	return map[string]uint64{"redirected": 42, "fail_open": 3, "not_mesh_destination": 7}, nil
}
func (f *fakeAgent) StrictDrops() (uint64, error) { return 5, nil }
func (f *fakeAgent) RingbufLost() (uint64, error) { return 0, errors.New("ring buffer not loaded") }
func (f *fakeAgent) ConfigState() ConfigState {
	return ConfigState{Generation: 12, Rejected: 1, Updates: 12, RejectedUpdates: 2, Applied: time.Unix(1764108000, 250e6)}
}
func (f *fakeAgent) CertExpiries() map[string]time.Time {
	return map[string]time.Time{
		"spiffe://cluster.local/ns/shop/sa/product": time.Unix(1900000000, 0),
		"spiffe://cluster.local/ns/shop/sa/client":  time.Unix(1800000000, 0),
	}
}
func (f *fakeAgent) AuthzDecisions() (uint64, uint64) { return 100, 4 }

// fakeTCP serves two label sets: a source's connects over the tunnel, with
// both histograms, and a destination's accepted connections, which have no
// connect time.
type fakeTCP struct{ err error }

var testBounds = []float64{0.001, 0.01, 0.1}

func (f fakeTCP) TCPSeries() ([]TCPSeries, error) {
	if f.err != nil {
		return nil, f.err
	}
	return []TCPSeries{
		{
			Labels: TCPLabels{Reporter: "source", SourceWorkload: "client", SourceNamespace: "shop",
				DestinationService: "product.shop.svc.cluster.local", DestinationWorkload: "product", DestinationNamespace: "shop",
				SecurityPolicy: "mutual_tls"},
			Stats: TCPStats{Opened: 10, Closed: 9, Failed: 2, Retransmits: 3, ResetsSent: 1, ResetsReceived: 4,
				SentBytes: 5000, ReceivedBytes: 700,
				RTT:     Histogram{Bounds: testBounds, Counts: []uint64{2, 11, 12}, Count: 12, Sum: 0.0345},
				Connect: Histogram{Bounds: testBounds, Counts: []uint64{1, 9, 10}, Count: 10, Sum: 0.021}},
		},
		{
			Labels: TCPLabels{Reporter: "destination", DestinationWorkload: "product", DestinationNamespace: "shop",
				SecurityPolicy: "none"},
			Stats: TCPStats{Opened: 1, SentBytes: 20, ReceivedBytes: 30,
				RTT:     Histogram{Bounds: testBounds, Counts: []uint64{1, 1, 1}, Count: 1, Sum: 0.0002},
				Connect: Histogram{Bounds: testBounds, Counts: []uint64{0, 0, 0}}},
		},
	}, nil
}

// TestCollectorsGolden compares every agent-health collector with its
// golden file (testdata/<name>.prom); -update rewrites them.
func TestCollectorsGolden(t *testing.T) {
	f := &fakeAgent{maps: []MapFill{{Name: "members", Entries: 3, MaxEntries: 16384}, {Name: "sock_origin", Entries: -1, MaxEntries: 0},
		{Name: "flow_sk", Entries: 7, MaxEntries: 0, CountsLosses: true, InsertFailures: 2},
		{Name: "flow_live", Entries: 30, MaxEntries: 32768, CountsLosses: true, LRU: true, InsertFailures: 1, Evicted: 4}}}
	tcp := fakeTCP{}
	tests := []struct {
		name    string
		c       Collector
		metrics []string
	}{
		{"bpf_map_entries", NewBPFMapEntries(f), []string{"skein_bpf_map_entries", "skein_scrape_collector_success"}},
		{"bpf_map_max_entries", NewBPFMapMaxEntries(f), []string{"skein_bpf_map_max_entries"}},
		{"bpf_map_lost_entries", NewBPFMapLostEntries(f), []string{"skein_bpf_map_lost_entries_total"}},
		{"capture_connects", NewCaptureConnects(f), []string{"skein_capture_connects_total"}},
		{"strict_drops", NewStrictDrops(f), []string{"skein_strict_drops_total"}},
		{"ringbuf_lost_failing", NewRingbufLost(f), []string{"skein_ringbuf_lost_events_total", "skein_scrape_collector_success"}},
		{"config_generation", NewConfigGeneration(f), []string{"skein_config_generation"}},
		{"config_rejected", NewConfigRejected(f), []string{"skein_config_rejected_objects"}},
		{"config_updates", NewConfigUpdates(f), []string{"skein_config_updates_total"}},
		{"config_applied", NewConfigApplied(f), []string{"skein_config_applied_timestamp_seconds"}},
		{"certificate_expiry", NewCertificateExpiry(f), []string{"skein_certificate_expiry_timestamp_seconds"}},
		{"authz_decisions", NewAuthzDecisions(f), []string{"skein_authz_decisions_total"}},
		{"tcp_connections_opened", NewTCPConnectionsOpened(tcp), []string{"skein_tcp_connections_opened_total"}},
		{"tcp_connections_closed", NewTCPConnectionsClosed(tcp), []string{"skein_tcp_connections_closed_total"}},
		{"tcp_connections_failed", NewTCPConnectionsFailed(tcp), []string{"skein_tcp_connections_failed_total"}},
		{"tcp_sent_bytes", NewTCPSentBytes(tcp), []string{"skein_tcp_sent_bytes_total"}},
		{"tcp_received_bytes", NewTCPReceivedBytes(tcp), []string{"skein_tcp_received_bytes_total"}},
		{"tcp_retransmits", NewTCPRetransmits(tcp), []string{"skein_tcp_retransmits_total"}},
		{"tcp_resets", NewTCPResets(tcp), []string{"skein_tcp_resets_total"}},
		{"tcp_rtt", NewTCPRTT(tcp), []string{"skein_tcp_rtt_seconds"}},
		{"tcp_connect_duration", NewTCPConnectDuration(tcp), []string{"skein_tcp_connect_duration_seconds"}},
		{"tcp_failing", NewTCPRTT(fakeTCP{err: errors.New("flows not loaded")}), []string{"skein_tcp_rtt_seconds", "skein_scrape_collector_success"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			golden := filepath.Join("testdata", tt.name+".prom")
			node := NewNode(map[string]Collector{tt.name: tt.c})
			if os.Getenv("UPDATE_GOLDEN") != "" {
				out, err := testutil.CollectAndFormat(node, expfmt.TypeTextPlain, tt.metrics...)
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(golden, out, 0o644))
			}
			want, err := os.Open(golden)
			require.NoError(t, err)
			defer want.Close()
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(node)
			require.NoError(t, testutil.GatherAndCompare(reg, want, tt.metrics...))
		})
	}
	t.Run("build_info", func(t *testing.T) {
		// go_version varies with the toolchain: check the series.
		require.Equal(t, 1, testutil.CollectAndCount(BuildInfo{Version: "1.2.3", Commit: "abc"}, "skein_build_info"))
	})
}

func TestRequestMetrics(t *testing.T) {
	m := NewRequestMetrics()
	l := &RequestLabels{Reporter: "source", SourceWorkload: "client", SourceNamespace: "shop",
		SourcePrincipal: "spiffe://cluster.local/ns/shop/sa/client", DestinationService: "product.shop.svc.cluster.local",
		DestinationWorkload: "product", DestinationNamespace: "shop", RequestProtocol: "http", ResponseCode: "200",
		ResponseFlags: "-", SecurityPolicy: "mutual_tls"}
	for i := 0; i < 3; i++ {
		m.Observe(l, 3*time.Millisecond, 10, 1000)
	}
	bad := *l
	bad.ResponseCode, bad.ResponseFlags, bad.DestinationWorkload = "503", "UH", ""
	m.Observe(&bad, time.Millisecond, 0, 20)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m.Collectors()...)
	golden := filepath.Join("testdata", "requests.prom")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		var b strings.Builder
		for _, mf := range mfs {
			_, err := expfmtWrite(&b, mf)
			require.NoError(t, err)
		}
		require.NoError(t, os.WriteFile(golden, []byte(b.String()), 0o644))
	}
	want, err := os.Open(golden)
	require.NoError(t, err)
	defer want.Close()
	require.NoError(t, testutil.GatherAndCompare(reg, want))
	require.Equal(t, 2, testutil.CollectAndCount(m.Total, "skein_requests_total"), "one series per label set")
}

// TestPromtoolCheckMetrics lints the whole exposition with promtool.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (scripts/deps.sh installs Debian's prometheus package)")
	}
	f := &fakeAgent{maps: []MapFill{{Name: "members", Entries: 3, MaxEntries: 16384}}}
	reg := prometheus.NewPedanticRegistry()
	m := NewRequestMetrics()
	m.Observe(&RequestLabels{Reporter: "source", RequestProtocol: "http", ResponseCode: "200", ResponseFlags: "-", SecurityPolicy: "none"}, time.Millisecond, 1, 1)
	reg.MustRegister(m.Collectors()...)
	reg.MustRegister(NewNode(map[string]Collector{
		"bpf_map_entries": NewBPFMapEntries(f), "bpf_map_max_entries": NewBPFMapMaxEntries(f),
		"bpf_map_lost_entries": NewBPFMapLostEntries(f), "capture_connects": NewCaptureConnects(f), "strict_drops": NewStrictDrops(f),
		"config_generation": NewConfigGeneration(f), "config_rejected": NewConfigRejected(f),
		"config_updates": NewConfigUpdates(f), "config_applied": NewConfigApplied(f), "certificate_expiry": NewCertificateExpiry(f),
		"authz_decisions": NewAuthzDecisions(f), "ringbuf_lost": NewRingbufLost(f),
		"tcp_connections_opened": NewTCPConnectionsOpened(fakeTCP{}), "tcp_connections_closed": NewTCPConnectionsClosed(fakeTCP{}),
		"tcp_connections_failed": NewTCPConnectionsFailed(fakeTCP{}), "tcp_sent_bytes": NewTCPSentBytes(fakeTCP{}),
		"tcp_received_bytes": NewTCPReceivedBytes(fakeTCP{}), "tcp_retransmits": NewTCPRetransmits(fakeTCP{}),
		"tcp_resets": NewTCPResets(fakeTCP{}), "tcp_rtt": NewTCPRTT(fakeTCP{}), "tcp_connect_duration": NewTCPConnectDuration(fakeTCP{}),
	}), BuildInfo{Version: "1", Commit: "c"})
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var b strings.Builder
	for _, mf := range mfs {
		_, err := expfmtWrite(&b, mf)
		require.NoError(t, err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(b.String())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
}

func TestResponseCode(t *testing.T) {
	for _, c := range []int{0, 99, 100, 200, 404, 499, 503, 599, 600, 1000} {
		require.Equal(t, strconv.Itoa(c), ResponseCode(c))
	}
}
