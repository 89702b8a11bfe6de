package telemetry

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

type accessLogDrops map[string]uint64

func (d accessLogDrops) AccessLogDropped() map[string]uint64 { return d }

func TestAccessLogDropped(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewNode(map[string]Collector{"accesslog_dropped": NewAccessLogDropped(accessLogDrops{"store": 3, "otlp": 0})}))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP skein_accesslog_records_dropped_total Access-log records dropped because a sink's queue was full or the sink failed, by sink (store or otlp); requests are never held for logging.
# TYPE skein_accesslog_records_dropped_total counter
skein_accesslog_records_dropped_total{sink="otlp"} 0
skein_accesslog_records_dropped_total{sink="store"} 3
`), "skein_accesslog_records_dropped_total"))
	require.Zero(t, testutil.CollectAndCount(NewNode(map[string]Collector{"accesslog_dropped": NewAccessLogDropped(accessLogDrops{})}),
		"skein_accesslog_records_dropped_total"), "no sink, no series")
}
