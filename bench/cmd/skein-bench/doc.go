// Command skein-bench is Skein's benchmark harness, run by `make bench`
// through scripts/bench.sh (see docs/benchmarks.md).
//
//	skein-bench run --bin-dir DIR [--doc docs/benchmarks.md] [--only matrix,profile,idle,scale,capture]
//
// run brings up a two-node lab (scripts/lab) with the CA, starts nginx,
// HAProxy and a plain Go reverse proxy in the nodes' namespaces, pins
// clients and backends to one CPU and every proxy to the other, measures
// every load against every topology in one run, then Skein alone at 10,000
// idle connections and 1,000 Services, the cost of eBPF capture against
// iptables REDIRECT, and the agents' profiles; it writes JSON, appends a
// markdown section, and tears the lab down whatever happens.
//
// The other commands are what run starts inside lab pods and nodes:
//
//	skein-bench serve --listen :8080 --size 1024          the HTTP/1.1 and h2c backend
//	skein-bench load --proto h1|h2c|grpc --target T --rate 1000 --conns 16 [--new-conn] [--watch-pid PID]...
//	skein-bench goproxy --listen A --upstream URL [--listen-tls] [--tls-dir D]
//	skein-bench connect --addr VIP:80 --count N          connect, one byte each way, close
//	skein-bench idle --target URL --conns 10000 --watch-pid PID
//	skein-bench poll --target URL --want-pod POD         until a route change shows
//
// Each prints JSON. load keeps an open-loop schedule: latencies count from
// each request's due time, not from when it was sent (no coordinated
// omission); its arithmetic lives in package bench.
package main
