// Package accesslog writes, keeps and serves the node proxy's access logs:
// one JSON line per HTTP request or TCP connection, with the trace and span
// ids of the proxy hop, the source and destination workloads, the route,
// the outcome (code, gRPC status, response flags), durations and bytes.
//
// The pieces, in the order a record meets them:
//
//   - [Filter] decides on the proxy goroutine whether a record is kept:
//     failures (5xx, or any response flag) and chosen status classes always,
//     records of sampled traces when asked, a consistent share of the rest
//     (decided by trace id, so every hop of a request agrees).
//   - [Logger.Record] enqueues the kept [Entry] into one bounded queue per
//     sink without ever blocking: a full queue drops the entry and counts it
//     (skein_accesslog_records_dropped_total{sink}).
//   - Each sink runs on its own goroutine: the [Store] encodes entries with
//     zap's JSON encoder into segment files on the node's disk, capped in
//     size and age, oldest segment deleted first, reopened by the next agent;
//     the optional [OTLPSink] exports the same records as OTLP logs.
//   - [Store.Query] answers `agentctl logs` (through the admin API) by
//     workload, trace id, status class and time range, also for pods that
//     are long gone and across agent restarts.
//
// The package knows nothing of the proxy: the agent converts its request
// and connection records into entries.
package accesslog
