package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEchoCallPropagatesTraceHeaders(t *testing.T) {
	downstream := startEcho(t) // answers as product-v1
	front := httptest.NewServer(withLabRoutes(echoHandler{pod: "frontend", call: downstream + "/", client: &http.Client{Timeout: 5 * time.Second}}))
	t.Cleanup(front.Close)

	c := &http.Client{Timeout: 5 * time.Second}
	resp, body := get(t, c, front.URL+"/hello",
		"Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Tracestate", "vendor=x",
		"B3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
		"X-B3-Traceid", "4bf92f3577b34da6a3ce929d0e0e4736",
		"X-B3-Spanid", "00f067aa0ba902b7",
		"X-B3-Sampled", "1",
		"X-Request-Id", "req-1",
		"X-Secret", "not for downstream")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var r echoReply
	require.NoError(t, json.Unmarshal(body, &r), "%s", body)
	require.Equal(t, "frontend", r.Pod)
	require.Equal(t, http.StatusOK, r.DownstreamStatus)
	var down echoReply
	require.NoError(t, json.Unmarshal(r.Downstream, &down), "%s", r.Downstream)
	require.Equal(t, "product-v1", down.Pod)
	for k, v := range map[string]string{
		"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "Tracestate": "vendor=x",
		"B3": "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", "X-B3-Traceid": "4bf92f3577b34da6a3ce929d0e0e4736",
		"X-B3-Spanid": "00f067aa0ba902b7", "X-B3-Sampled": "1", "X-Request-Id": "req-1",
	} {
		require.Equal(t, v, down.Headers[k], k)
	}
	require.NotContains(t, down.Headers, "X-Secret", "only trace headers are propagated")
}

func TestEchoCallFailure(t *testing.T) {
	front := httptest.NewServer(withLabRoutes(echoHandler{pod: "frontend", call: "http://127.0.0.1:1/", client: &http.Client{Timeout: 2 * time.Second}}))
	t.Cleanup(front.Close)
	resp, body := get(t, &http.Client{Timeout: 5 * time.Second}, front.URL+"/")
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	var r echoReply
	require.NoError(t, json.Unmarshal(body, &r))
	require.Contains(t, r.DownstreamError, "connection refused")
	require.Empty(t, r.Downstream)
}
